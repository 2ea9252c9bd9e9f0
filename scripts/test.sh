#!/usr/bin/env bash
# The whole test suite: the README's test command, and what CI runs (.ci/run installs the
# system packages first). Needs: go, g++, cmake, redis-server, npm (to fetch ONNX Runtime).
#   scripts/test.sh           everything
#   FUZZTIME=30s scripts/test.sh   longer fuzzing (default 10s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}

step() { printf '\n=== %s\n' "$*"; }

step "ONNX Runtime (fetched once into third_party/)"
scripts/fetch-ort.sh
export ORT_LIB=${ORT_LIB:-$PWD/third_party/onnxruntime/lib/libonnxruntime.so.1}

step "C++ core: ctest, C consumer, ASan+UBSan"
scripts/ci/core.sh

step "go vet"
go vet ./...

step "go test"
go test -count=1 -timeout 30m ./...

step "pure-Go build (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -o /dev/null ./cmd/predictd

step "fuzz targets, ${FUZZTIME} each"
scripts/ci/fuzz.sh "$FUZZTIME"

echo; echo "all tests passed"
