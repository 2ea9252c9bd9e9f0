#!/usr/bin/env bash
# The whole test suite: the README's test command, and what CI runs (.ci/run).
# It installs what is missing (scripts/ci/deps.sh: g++, cmake, redis-server, npm, curl, promtool;
# scripts/fetch-ort.sh: ONNX Runtime 1.29.0 into third_party/), then runs the C++ core's
# ctest (normal and ASan+UBSan), go vet, every Go test (real redis-server processes, the
# real ONNX Runtime on CPU, real HTTP), again under the race detector, the CGO_ENABLED=0
# build, the direct path's tests on the Go versions of its assembly (-tags purego) and
# every Fuzz* target.
#   scripts/test.sh                   everything
#   FUZZTIME=60s scripts/test.sh      longer fuzzing (default 10s per target)
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
scripts/ci/deps.sh

step "ONNX Runtime 1.29.0 (cached in third_party/)"
eval "$(scripts/fetch-ort.sh)"
export ORT_LIB

step "C++ core: ctest, C consumer, ASan+UBSan"
scripts/ci/core.sh

step "go vet"
go vet ./...

# The shadow CPU-share tests start busy-loop processes to load the machine on purpose; run
# beside other packages (go test runs packages in parallel) they starve the load
# generator's fidelity tests. They run alone, after the rest.
alone='^(TestShadowShareUnderBusyNeighbours|TestShadowWithoutShareReportsCoverage|TestShadowShareBoundsAndThins)$'

step "go test"
# The load generator's fidelity tests hold the generator to its offered rates and timings:
# beside the other packages (go test runs packages in parallel) a starved generator reads
# as a failing target, so the loadtest package runs on its own, after the rest.
go test -count=1 -timeout 40m -skip "$alone" $(go list ./... | grep -v '/loadtest$')
go test -count=1 -timeout 20m ./loadtest
go test -count=1 -timeout 10m -run "$alone" ./sidecar

step "go test -race"
# Every package but loadtest, whose fidelity tests hold the generator to its offered rate
# (1,000 requests/s within 1%), which the race detector's slowdown makes impossible.
go test -race -count=1 -timeout 40m -skip "$alone" $(go list ./... | grep -v '/loadtest$')
go test -race -count=1 -timeout 10m -run "$alone" ./sidecar

step "pure-Go build (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -o /dev/null ./cmd/predictd ./cmd/predictd-loadtest

step "the Go versions of the assembly (-tags purego): the direct path's tests"
# What other architectures run in place of sidecar/wordrun_amd64.s (its Go version
# wordRunGo, also compared with the assembly by TestWordRunAsm and FuzzWordRun).
go vet -tags purego ./sidecar
go test -tags purego -count=1 -run 'Named|LayoutRun|Allocs|Direct|PythonSeparators' ./sidecar

step "fuzz targets, ${FUZZTIME} each"
scripts/ci/fuzz.sh "$FUZZTIME"

printf '\nall tests passed\n'
