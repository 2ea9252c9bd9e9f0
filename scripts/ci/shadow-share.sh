#!/usr/bin/env bash
# shadow-share.sh: the primaries' p99 beside busy neighbours with a heavy shadow scored
# (a) not at all, (b) at idle priority only, (c) within --shadow-cpu-share SHARE
# (docs/benchmarks.md, "Shadow CPU share"). Prints one line per configuration: the
# primary's p50/p99 and what the shadow mirrored.
#
#   scripts/ci/shadow-share.sh [SHARE]      (default 0.2; RATE, DURATION, CANDIDATES,
#                                            NEIGHBOURS, REPEAT override the load;
#                                            SKIP_IDLE=1 leaves out configuration b,
#                                            SHADOW_WORKERS sets --shadow-workers)
set -euo pipefail
cd "$(dirname "$0")/../.."
share=${1:-0.2}
rate=${RATE:-100}
duration=${DURATION:-20s}
candidates=${CANDIDATES:-200}
neighbours=${NEIGHBOURS:-2}
repeat=${REPEAT:-1}
work=$(mktemp -d /tmp/shadow-share.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p bin
go build -o bin/predictd ./cmd/predictd
go build -o bin/predictd-loadtest ./cmd/predictd-loadtest
# quiet: the demo model; flooded: its trees 50 times over (a shadow 50x as costly per row).
scripts/ci/loadtest.sh noisy-models "$work/plain" >/dev/null
cp -r "$work/plain" "$work/shadowed"
printf 'shadows: [{model: flooded}]\n' >>"$work/shadowed/quiet/1/model.yaml"

cat >"$work/scenario.yaml" <<YAML
name: shadow-share
description: the quiet model at a fixed rate, a heavy shadow beside it, busy neighbours
protocol: protobuf
arrival: poisson
warmup: 3s
window: 1s
timeout: 2s
steps:
  - {rate: $rate, duration: $duration}
workloads:
  - {name: quiet, model: quiet, candidates: $candidates, features: {from_model: true}, pool: 16}
YAML

for _ in $(seq "$neighbours"); do
  sh -c 'while :; do :; done' &
  pids+=($!)
done

run() { # NAME MODELS [serve args...]
  local name=$1 models=$2
  shift 2
  local sock="$work/$name.sock"
  bin/predictd serve --listen "" --unix "$sock" --watch=false --models "$models" \
    --shadow-workers "${SHADOW_WORKERS:-1}" "$@" 2>"$work/$name.log" &
  local pid=$!
  for _ in $(seq 200); do
    curl -sf --unix-socket "$sock" http://sidecar/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  bin/predictd-loadtest run --scenario "$work/scenario.yaml" --target "unix:$sock" --sidecar-pid "$pid" \
    --out "$work/profiles" --run-id "$name" --progress=false >/dev/null
  local models_json
  models_json=$(curl -sf --unix-socket "$sock" http://sidecar/v1/models/quiet)
  kill -INT "$pid"
  wait "$pid" || true
  python3 - "$work/profiles/shadow-share/$name/result.json" "$name" "$models_json" "$work/summary" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
lat = res["steps"][0]["latency"]
line = f"{sys.argv[2]:<12} p50 {lat['p50_ms']:6.2f} ms  p99 {lat['p99_ms']:6.2f} ms  achieved {res['steps'][0]['achieved_rps']:.0f}/s"
for v in json.loads(sys.argv[3])["versions"]:
    for s in v.get("shadows") or []:
        line += (f"  shadow: mirrored {s['requests']}/{s['primary_requests']}, dropped {s['dropped']},"
                 f" sampled out {s['sampled_out']}, normal {s['normal_priority']} idle {s['idle_priority']},"
                 f" cpu {s['cpu_seconds_normal'] + s['cpu_seconds_idle']:.2f} s")
print(line)
with open(sys.argv[4], "a") as f:
    f.write(f"{sys.argv[2].rsplit('-', 1)[0]} {lat['p50_ms']} {lat['p99_ms']}\n")
PY
}

for r in $(seq "$repeat"); do
  run "none-$r" "$work/plain"
  [ -n "${SKIP_IDLE:-}" ] || run "idle-$r" "$work/shadowed"
  run "share-$r" "$work/shadowed" --shadow-cpu-share "$share"
done
# Medians over the repeats: the runs of the three configurations are interleaved, so a
# burst of other load on the host touches all of them alike.
python3 - "$work/summary" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(p50), float(p99)))
for name, v in rows.items():
    print(f"median of {len(v)}: {name:<6} p50 {statistics.median(x for x, _ in v):6.2f} ms  p99 {statistics.median(y for _, y in v):6.2f} ms")
PY
