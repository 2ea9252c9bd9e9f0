#!/usr/bin/env bash
# C++ scoring core: configure, build and run ctest twice, a normal Release build in
# build/core and an ASan+UBSan build in build/core-sanitize. Fails on any error.
# Needs cmake and g++ (.ci/run installs them). CMake compiles the same sources cgo does
# (every .cc file in csrc/); the go command tracks them itself (package csrc).
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

for cfg in "core:-DPREDICTD_SANITIZE=OFF" "core-sanitize:-DPREDICTD_SANITIZE=ON"; do
  dir=build/${cfg%%:*}
  flag=${cfg#*:}
  echo "--- $dir ($flag)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$flag" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure
done
