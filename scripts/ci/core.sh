#!/usr/bin/env bash
# C++ scoring core: configure, build and run ctest twice, a normal Release build in
# build/core and an ASan+UBSan build in build/core-sanitize. Fails on any error.
# Needs cmake and g++ (.ci/run installs them).
#   scripts/ci/core.sh         build and test
#   scripts/ci/core.sh stamp   refresh the csrc-sha256 stamp in engine/core.cc (the go
#                              command's cache does not see files core.cc includes)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

stamp=$(LC_ALL=C; cat csrc/*.h csrc/*.cc | sha256sum | cut -c1-64)
if [ "${1:-}" = stamp ]; then
  sed -i "s|^// csrc-sha256: .*|// csrc-sha256: $stamp|" engine/core.cc
  echo "engine/core.cc stamp: $stamp"
  exit 0
fi
if ! grep -q "^// csrc-sha256: $stamp\$" engine/core.cc; then
  echo "engine/core.cc: csrc-sha256 stamp is stale (csrc/ changed); run scripts/ci/core.sh stamp" >&2
  exit 1
fi

for cfg in "core:-DPREDICTD_SANITIZE=OFF" "core-sanitize:-DPREDICTD_SANITIZE=ON"; do
  dir=build/${cfg%%:*}
  flag=${cfg#*:}
  echo "--- $dir ($flag)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$flag" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure
done
