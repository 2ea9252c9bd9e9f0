#!/usr/bin/env bash
# Load generator (loadtest/, cmd/predictd-loadtest) helpers for CI and for people.
#   scripts/ci/loadtest.sh smoke              the smoke suite against a real sidecar (go test;
#                                             also part of scripts/test.sh's go test ./...)
#   scripts/ci/loadtest.sh deps               install wrk (Debian), needed only by the benchmarks
#   scripts/ci/loadtest.sh bench              generator benchmarks: fidelity vs wrk, own limit
#   scripts/ci/loadtest.sh noisy-models DIR   a model repository with models "quiet" and
#                                             "flooded" (copies of the demo model) for the
#                                             noisy-neighbor scenario
#   scripts/ci/loadtest.sh profile SCENARIO [ARGS...]
#                                             build predictd and predictd-loadtest into bin/,
#                                             start predictd --pprof on a Unix socket (extra
#                                             ARGS go to predictd serve), run the scenario into
#                                             profiles/ (LOADTEST_LABEL labels the machine,
#                                             LOADTEST_RUN_ID names the run), stop predictd
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

cmd=${1:-smoke}
shift || true
case "$cmd" in
smoke)
  go test -count=1 -run 'TestSmokeAgainstSidecar' -v ./loadtest
  ;;
deps)
  if ! command -v wrk >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk
  fi
  ;;
bench)
  "$0" deps
  go test -count=1 -run '^$' -bench 'LatencyVsWrk|GeneratorLimit|BuildBodies' -benchtime=1x -v ./loadtest
  ;;
noisy-models)
  dir=${1:?usage: loadtest.sh noisy-models DIR}
  for m in quiet flooded; do
    mkdir -p "$dir/$m"
    rm -rf "$dir/$m/1"
    cp -r examples/models/claims/1 "$dir/$m/1"
  done
  echo "$dir: models quiet and flooded (predictd serve --models $dir)"
  ;;
profile)
  scenario=${1:?usage: loadtest.sh profile SCENARIO [predictd serve args...]}
  shift
  mkdir -p bin
  go build -o bin/predictd ./cmd/predictd
  go build -o bin/predictd-loadtest ./cmd/predictd-loadtest
  sock=$(mktemp -u /tmp/predictd-loadtest.XXXXXX.sock)
  bin/predictd serve --listen "" --unix "$sock" --pprof --watch=false "$@" &
  pid=$!
  trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    if curl -sf --unix-socket "$sock" http://sidecar/readyz >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  bin/predictd-loadtest run --scenario "loadtest/scenarios/$scenario.yaml" --target "unix:$sock" \
    --sidecar-pid "$pid" --out profiles --label "${LOADTEST_LABEL:-$(hostname)}" \
    ${LOADTEST_RUN_ID:+--run-id "$LOADTEST_RUN_ID"}
  ;;
*)
  sed -n '2,15p' "$0"
  exit 2
  ;;
esac
