#!/usr/bin/env bash
# What CI needs for engine/onnx: ONNX Runtime 1.29.0 (CPU) in third_party/onnxruntime/, via
# scripts/fetch-ort.sh (which needs npm), and ORT_LIB pointing at it.
#
#   . scripts/ci/onnx.sh        # sourced: installs, then exports ORT_LIB into the caller
#   scripts/ci/onnx.sh          # executed: installs, then prints the export line
#
# The tests need nothing else: the small models and their expected outputs are checked in
# (engine/onnx/testdata). Benchmarks also need python3-onnx and python3-numpy to generate
# the big model (scripts/gen_onnx_models.py --big); CI does not run them.
_onnx_ci_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_onnx_ci() (
  set -euo pipefail
  if ! command -v npm >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends npm >&2
  fi
  "$_onnx_ci_root/scripts/fetch-ort.sh"
)
if _onnx_ci_line=$(_onnx_ci); then
  eval "$_onnx_ci_line"
  export ORT_LIB
  if [[ ${BASH_SOURCE[0]} == "$0" ]]; then echo "$_onnx_ci_line"; fi
else
  echo "scripts/ci/onnx.sh: installing ONNX Runtime failed" >&2
  # shellcheck disable=SC2317 # exit when executed, return when sourced
  return 1 2>/dev/null || exit 1
fi
unset -f _onnx_ci
unset _onnx_ci_root _onnx_ci_line
