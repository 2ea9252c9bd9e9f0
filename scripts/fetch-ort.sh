#!/usr/bin/env bash
# fetch-ort.sh [--gpu]: installs ONNX Runtime 1.29.0 for Linux x86-64 into the git-ignored
# third_party/onnxruntime/ and prints the ORT_LIB line to use it:
#
#   eval "$(scripts/fetch-ort.sh)"          # core library (CPU EP + CUDA provider bridge)
#   eval "$(scripts/fetch-ort.sh --gpu)"    # plus the CUDA 13 execution provider
#
# Sources are npm registry packages (official ONNX Runtime 1.29.0 release builds), fetched
# with `npm pack` and checked against the pinned sha512 integrity below:
#   onnxruntime-node@1.29.0                          bin/napi-v6/linux/x64/libonnxruntime.so.1
#   com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 Plugins/Linux/x64/libonnxruntime_providers_{cuda,shared}.so
# The CUDA EP libraries must sit beside the core library, and their versions must match.
#
# Idempotent: tarballs are cached in ${ORT_CACHE:-~/.cache/predictd-ort}; a library already in
# place is not extracted again. Needs npm, tar, and (for the integrity check) base64, od + sha512sum.
set -euo pipefail

gpu=0
for arg in "$@"; do
  case $arg in
    --gpu) gpu=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "fetch-ort.sh: unknown argument $arg (want --gpu)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/third_party/onnxruntime/lib
cache=${ORT_CACHE:-$HOME/.cache/predictd-ort}
mkdir -p "$dest" "$cache"

core_spec=onnxruntime-node@1.29.0
core_sri=sha512-WjiVVB72riILz8HbYvxvmjKyE/WmkYoSfKY++axo5jAR609HQg8MwiG/HhShpTcJfmmAdzxxmB+MMST3A+SiPA==
gpu_spec=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
gpu_sri=sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==

# fetch SPEC SRI: prints the path of the verified tarball in the cache.
fetch() {
  local spec=$1 sri=$2 tgz
  tgz=$cache/${spec//@/-}.tgz
  if [[ ! -s $tgz ]] || ! check "$tgz" "$sri"; then
    rm -f "$tgz"
    local tmp
    tmp=$(mktemp -d "$cache/pack.XXXXXX")
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null) >&2
    mv "$tmp"/*.tgz "$tgz"
    rmdir "$tmp"
    if ! check "$tgz" "$sri"; then
      echo "fetch-ort.sh: $spec does not match the pinned integrity $sri" >&2
      exit 1
    fi
  fi
  echo "$tgz"
}

check() { # check FILE SRI: the npm "sha512-<base64>" integrity of FILE equals SRI
  local want
  want=$(printf '%s' "${2#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  [[ $(sha512sum "$1" | cut -d' ' -f1) == "$want" ]]
}

# extract TGZ MEMBER NAME: puts the tarball member at $dest/NAME unless it is already there.
extract() {
  local tgz=$1 member=$2 name=$3
  [[ -s $dest/$name ]] && return 0
  local tmp
  tmp=$(mktemp -d)
  tar xzf "$tgz" -C "$tmp" "$member"
  mv "$tmp/$member" "$dest/$name.partial"
  mv "$dest/$name.partial" "$dest/$name"
  rm -rf "$tmp"
}

core_tgz=$(fetch "$core_spec" "$core_sri")
extract "$core_tgz" package/bin/napi-v6/linux/x64/libonnxruntime.so.1 libonnxruntime.so.1
if ((gpu)); then
  gpu_tgz=$(fetch "$gpu_spec" "$gpu_sri")
  extract "$gpu_tgz" package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so libonnxruntime_providers_cuda.so
  extract "$gpu_tgz" package/Plugins/Linux/x64/libonnxruntime_providers_shared.so libonnxruntime_providers_shared.so
fi
echo "export ORT_LIB=$dest/libonnxruntime.so.1"
