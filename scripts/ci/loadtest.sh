#!/usr/bin/env bash
# Load generator (loadtest/, cmd/predictd-loadtest) helpers for CI and for people.
#   scripts/ci/loadtest.sh smoke              the smoke suite against a real sidecar (go test;
#                                             also part of scripts/test.sh's go test ./...)
#   scripts/ci/loadtest.sh deps               install wrk (Debian), needed only by the benchmarks
#   scripts/ci/loadtest.sh bench              generator benchmarks: fidelity vs wrk, own limit
#   scripts/ci/loadtest.sh noisy-models DIR   a model repository with models "quiet" (a
#                                             copy of the demo model) and "flooded" (the
#                                             demo model's trees repeated HEAVY times,
#                                             default 50: a model that costs 50x as much
#                                             per row) for the noisy-neighbor scenario
#   scripts/ci/loadtest.sh feature-models DIR [redis PORT | snapshot]
#                                             a model repository with models "homepage" and
#                                             "stores" (the demo model's trees, renamed
#                                             columns) whose features come from the feature
#                                             groups store_stats (key store_id) and user_stats
#                                             (key user_id), for homepage-recs and
#                                             redis-degraded; "redis PORT" starts a
#                                             redis-server on PORT (its dir DIR-redis; stop it
#                                             with redis-cli -p PORT shutdown nosave) and loads
#                                             the groups into it, "snapshot" loads them into
#                                             DIR/features.snap (predictd serve
#                                             --features-snapshot). STORES (default 1000000)
#                                             and USERS (100000) set how many entities exist
#   scripts/ci/loadtest.sh compare-trials N DIR
#                                             how often compare is right on this machine:
#                                             N trials, each three sides of REPS (default
#                                             3) runs of regression-gate (model A, model
#                                             B, model A again; their runs alternate) where
#                                             A is the demo model's trees HEAVY times
#                                             (default 40) and B has MORE (default 30)
#                                             percent more trees: about 20% more sidecar
#                                             CPU per prediction at 500 candidates, as
#                                             each trial prints (the per-request costs
#                                             do not grow with the trees);
#                                             prints each trial's verdicts, unpaired and
#                                             compare --paired, for A vs A' (should be
#                                             clean) and A vs B, A' vs B (should be
#                                             flagged), and the tallies
#   scripts/ci/loadtest.sh compare-trials-interleaved N DIR
#                                             the same models, each comparison one
#                                             run --interleave of REPS repeats (two fresh
#                                             sidecars, every other request to each):
#                                             A vs A' (should be clean) and A vs B
#                                             (should be flagged), compare --paired
#   scripts/ci/loadtest.sh named-forms N DIR [wide|ranker]
#                                             what naming features costs end to end: N
#                                             rounds, each named-dense on one sidecar and
#                                             named-proto, then named-json, on a second
#                                             sidecar at the same time (the two swap each
#                                             round), so that the VM's drift falls on both;
#                                             prints each pair's sidecar CPU per 1,000
#                                             predictions and its ratio, then the medians.
#                                             The demo model; with "wide" the
#                                             100-feature XGBoost fixture (300 trees) with
#                                             ranker-style names; with "ranker" an XGBoost
#                                             model of 500 trees over 80 named features,
#                                             trained by loadtest/models/gen_ranker.py
#                                             (DIR/models)
#   scripts/ci/loadtest.sh steady-sysmon N DIR [SCENARIO...]
#                                             what --steady-sysmon saves: N rounds of
#                                             each scenario (default named-dense,
#                                             named-proto, named-json) on two sidecars of
#                                             the demo model at the same time, one with
#                                             --steady-sysmon=false; prints each pair's
#                                             sidecar CPU per 1,000 predictions, the
#                                             ratio steady / runtime default, the medians
#   scripts/ci/loadtest.sh profile SCENARIO [ARGS...]
#                                             (SCENARIO: a name in loadtest/scenarios/ or a
#                                             .yaml file) build predictd and
#                                             predictd-loadtest into bin/,
#                                             start predictd --pprof on a Unix socket (extra
#                                             ARGS go to predictd serve), run the scenario into
#                                             profiles/ (LOADTEST_LABEL labels the machine,
#                                             LOADTEST_RUN_ID names the run), stop predictd
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Helpers of the paired modes (named-forms, steady-sysmon): two sidecars measured at the
# same time, so that the VM's drift falls on both sides of each ratio.
live=""
# pair_sidecar K DIR ARGS...: start sidecar K (1 or 2) on a fresh Unix socket with serve
# ARGS, logging to DIR/sidecar.log; its socket in $sK, its pid in $pK (and in $live, which
# the EXIT trap stops)
pair_sidecar() {
  local k=$1 dir=$2 sock
  shift 2
  sock=$(mktemp -u /tmp/predictd-pair.XXXXXX.sock) # short: a socket path has ~108 bytes
  eval "s$k=$sock"
  bin/predictd serve --listen "" --unix "$sock" --watch=false "$@" >>"$dir/sidecar.log" 2>&1 &
  eval "p$k=$!"
  live="$live $!"
  for i in $(seq 101); do
    if curl -sf --unix-socket "$sock" http://sidecar/readyz >/dev/null 2>&1; then return; fi
    if [ "$i" = 101 ]; then echo "$cmd: the sidecar on $sock is not ready (see $dir/sidecar.log)" >&2; exit 1; fi
    sleep 0.1
  done
}
# pair_cpu RUNDIR: the run's sidecar CPU-ms per 1,000 predictions
pair_cpu() {
  local v
  v=$(awk '/"cpu_seconds_per_1k_predictions"/ { gsub(/[^0-9.eE-]/, "", $2); printf "%.3f", 1000 * $2; exit }' "$(ls -d "$1"/*/*/ | tail -1)result.json")
  if [ -z "$v" ] || [ "$v" = 0.000 ]; then echo "$cmd: no sidecar CPU figure in $1 (see its log)" >&2; exit 1; fi
  echo "$v"
}
# pair_run SCENARIO_A A OUT_A SCENARIO_B B OUT_B: the two scenarios at once, A and B
# the sidecars (1 or 2); exits when either run fails
pair_run() {
  local lp rc=0 sa pa sb pb
  sa=$(eval echo "\$s$2") pa=$(eval echo "\$p$2") sb=$(eval echo "\$s$5") pb=$(eval echo "\$p$5")
  mkdir -p "$(dirname "$3")" "$(dirname "$6")"
  bin/predictd-loadtest run --scenario "loadtest/scenarios/$1.yaml" --progress=false \
    --target "unix:$sa" --sidecar-pid "$pa" --out "$3" >"$3.log" 2>&1 &
  lp=$!
  live="$live $lp"
  bin/predictd-loadtest run --scenario "loadtest/scenarios/$4.yaml" --progress=false \
    --target "unix:$sb" --sidecar-pid "$pb" --out "$6" >"$6.log" 2>&1 || rc=$?
  wait "$lp" || rc=$?
  live="${live% $lp}"
  if [ "$rc" != 0 ]; then echo "$cmd: a run failed (rc=$rc): see $3.log and $6.log" >&2; exit 1; fi
}
# pair_median WHAT: the median and range of the ratios on stdin, one a line, as "median
# Rx WHAT (N rounds, LOW to HIGH)"
pair_median() {
  sort -n | awk -v what="$1" '{ v[NR] = $1 } END { printf "median %.3fx %s (%d rounds, %.3f to %.3f)", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, what, NR, v[1], v[NR] }'
}

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
  heavy=${HEAVY:-50}
  for m in quiet flooded; do
    mkdir -p "$dir/$m"
    rm -rf "${dir:?}/$m/1"
    cp -r examples/models/claims/1 "$dir/$m/1"
  done
  # flooded: every tree of the demo model HEAVY times over, renumbered; tree_sizes is
  # dropped, as it would no longer match (LightGBM and predictd read the trees without it).
  awk -v k="$heavy" '
    /^tree_sizes=/ { next }
    /^Tree=/ { intree = 1; cur = n++; body[cur] = ""; next }
    /^end of trees/ {
      for (r = 0; r < k; r++) for (i = 0; i < n; i++) printf "Tree=%d\n%s", r * n + i, body[i]
      intree = 0
    }
    intree { body[cur] = body[cur] $0 "\n"; next }
    { print }' examples/models/claims/1/model.txt >"$dir/flooded/1/model.txt"
  echo "$dir: models quiet and flooded ($heavy x the demo model's trees) (predictd serve --models $dir)"
  ;;
feature-models)
  dir=${1:?usage: loadtest.sh feature-models DIR [redis PORT | snapshot]}
  backend=${2:-}
  stores=${STORES:-1000000}
  users=${USERS:-100000}
  mkdir -p "$dir"
  cat >"$dir/store_stats.group.yaml" <<'YAML'
name: store_stats
key: store_id
ttl: 2s
max_stale: 1h
features:
  - {name: rating, type: float32, default: 4}
  - {name: orders_7d, type: int64, default: 0}
  - {name: revenue_7d, type: float64}
  - {name: eta_min, type: float32, default: 30}
  - {name: distance_km, type: float32}
  - {name: price_level, type: int64, default: 2}
  - {name: reviews, type: int64, default: 0}
  - {name: cancel_rate, type: float32, default: 0.05}
YAML
  cat >"$dir/user_stats.group.yaml" <<'YAML'
name: user_stats
key: user_id
ttl: 2s
max_stale: 1h
features:
  - {name: affinity, type: float32, default: 0}
  - {name: orders_30d, type: int64, default: 0}
YAML
  # ttl 2s: the scenarios cycle a pool of 32 request bodies, so with a long TTL every
  # entity would be cached after the first pass and Redis never read again.
  # The demo model (9 columns) with its columns renamed: 2 request (context) features
  # and 7 store-backed ones for homepage, 1 and 8 for stores.
  for m in homepage stores; do
    rm -rf "${dir:?}/$m/1"
    mkdir -p "$dir/$m/1"
    cp examples/models/claims/1/model.txt "$dir/$m/1/model.txt"
  done
  s() { echo "{name: $1, group: store_stats, key: store_id}"; }
  cat >"$dir/homepage/1/model.yaml" <<YAML
format: lightgbm
file: model.txt
features: [hour, day_of_week, $(s rating), $(s orders_7d), $(s eta_min), $(s distance_km), $(s price_level),
  {name: affinity, group: user_stats, key: user_id}, {name: orders_30d, group: user_stats, key: user_id}]
YAML
  cat >"$dir/stores/1/model.yaml" <<YAML
format: lightgbm
file: model.txt
features: [hour, $(s rating), $(s orders_7d), $(s revenue_7d), $(s eta_min), $(s distance_km), $(s price_level),
  $(s reviews), $(s cancel_rate)]
YAML
  awk -v n="$stores" 'BEGIN { print "store_id,rating,orders_7d,revenue_7d,eta_min,distance_km,price_level,reviews,cancel_rate"
    for (i = 0; i < n; i++) printf "%d,%.2f,%d,%.2f,%d,%.1f,%d,%d,%.3f\n", i, 1 + (i * 7919 % 400) / 100, i * 31 % 900,
      (i * 104729 % 1000000) / 10, 10 + i % 50, (i * 13 % 250) / 10, 1 + i % 4, i * 17 % 5000, (i % 97) / 1000 }' >"$dir/stores.csv"
  awk -v n="$users" 'BEGIN { print "user_id,affinity,orders_30d"
    for (i = 0; i < n; i++) printf "%d,%.3f,%d\n", i, (i * 7 % 1000) / 1000, i % 60 }' >"$dir/users.csv"
  mkdir -p bin
  go build -o bin/predictd ./cmd/predictd
  bin/predictd check "$dir"
  case "$backend" in
  redis)
    port=${3:?usage: loadtest.sh feature-models DIR redis PORT}
    rdir="${dir%/}-redis"
    mkdir -p "$rdir"
    # A hash stays a listpack (the compact layout) only below these bounds.
    redis-server --port "$port" --save '' --appendonly no --daemonize yes --dir "$(cd "$rdir" && pwd)" \
      --hash-max-listpack-value 1024 --hash-max-listpack-entries 512
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    dest=(--redis "127.0.0.1:$port")
    ;;
  snapshot) rm -f "$dir/features.snap"; dest=(--snapshot "$dir/features.snap") ;;
  "") dest=() ;;
  *) echo "loadtest.sh feature-models: backend must be redis PORT or snapshot" >&2; exit 2 ;;
  esac
  if [ ${#dest[@]} -gt 0 ]; then
    bin/predictd features load --quiet --groups "$dir" --group store_stats --file "$dir/stores.csv" "${dest[@]}"
    bin/predictd features load --quiet --groups "$dir" --group user_stats --file "$dir/users.csv" "${dest[@]}"
  fi
  echo "$dir: models homepage and stores; serve with predictd serve --models $dir and" \
    "${backend:+${dest[*]/--snapshot/--features-snapshot}}"
  ;;
named-forms)
  n=${1:?usage: loadtest.sh named-forms N DIR [wide|ranker]}
  dir=${2:?usage: loadtest.sh named-forms N DIR [wide|ranker]}
  mkdir -p bin "$dir"
  go build -o bin/predictd ./cmd/predictd
  go build -o bin/predictd-loadtest ./cmd/predictd-loadtest
  models=()
  if [ "${3:-}" = wide ]; then
    m="$dir/models/wide/1"
    mkdir -p "$m"
    gzip -dc engine/testdata/xgboost/gen_regression_nan/model.json.gz >"$m/model.json"
    names=$(awk 'BEGIN { split("user item query ctx", src); split("ctr cvr dwell views score", sig)
      for (i = 0; i < 100; i++) printf "%s%s_%s_%02d_7d", i ? ", " : "", src[i % 4 + 1], sig[int(i / 4) % 5 + 1], i }')
    printf 'format: xgboost\nfile: model.json\noutput: transformed\nfeatures: [%s]\n' "$names" >"$m/model.yaml"
    models=(--models "$dir/models")
  elif [ "${3:-}" = ranker ]; then
    # The shape the targets are set on: XGBoost, 500 trees, 80 named features, trained
    # here (loadtest/models/gen_ranker.py, about a minute) unless DIR has it already.
    if [ ! -f "$dir/models/ranker/1/model.json" ]; then
      if ! /usr/bin/python3 -c 'import xgboost, numpy' 2>/dev/null; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-xgboost python3-numpy
      fi
      /usr/bin/python3 loadtest/models/gen_ranker.py "$dir/models"
    fi
    models=(--models "$dir/models")
  fi
  trap 'kill -INT $live 2>/dev/null || true' EXIT
  pair_sidecar 1 "$dir" ${models[@]+"${models[@]}"}
  pair_sidecar 2 "$dir" ${models[@]+"${models[@]}"}
  for form in proto json; do
    ratios=()
    for r in $(seq "$n"); do
      if ((r % 2)); then a=1 b=2; else a=2 b=1; fi
      out="$dir/$form-$r"
      rm -rf "$out"
      pair_run named-dense "$a" "$out/dense" "named-$form" "$b" "$out/$form"
      d=$(pair_cpu "$out/dense") f=$(pair_cpu "$out/$form")
      ratio=$(awk -v d="$d" -v f="$f" 'BEGIN { printf "%.3f", f / d }')
      ratios+=("$ratio")
      echo "named-$form round $r: dense $d ms, $form $f ms per 1,000 predictions: ${ratio}x"
    done
    echo "named-$form: $(printf '%s\n' "${ratios[@]}" | pair_median "the CPU of the dense rows")"
  done
  ;;
steady-sysmon)
  n=${1:?usage: loadtest.sh steady-sysmon N DIR [SCENARIO...]}
  dir=${2:?usage: loadtest.sh steady-sysmon N DIR [SCENARIO...]}
  shift 2
  scenarios=("$@")
  if [ ${#scenarios[@]} = 0 ]; then scenarios=(named-dense named-proto named-json); fi
  mkdir -p bin "$dir"
  go build -o bin/predictd ./cmd/predictd
  go build -o bin/predictd-loadtest ./cmd/predictd-loadtest
  trap 'kill -INT $live 2>/dev/null || true' EXIT
  pair_sidecar 1 "$dir" --steady-sysmon=false
  pair_sidecar 2 "$dir" --steady-sysmon=true
  for sc in "${scenarios[@]}"; do
    ratios=()
    for r in $(seq "$n"); do
      out="$dir/$sc-$r"
      rm -rf "$out"
      pair_run "$sc" 1 "$out/default" "$sc" 2 "$out/steady"
      d=$(pair_cpu "$out/default") st=$(pair_cpu "$out/steady")
      ratio=$(awk -v d="$d" -v s="$st" 'BEGIN { printf "%.3f", s / d }')
      ratios+=("$ratio")
      echo "$sc round $r: runtime default $d ms, steady $st ms per 1,000 predictions: ${ratio}x"
    done
    echo "$sc: steady sysmon $(printf '%s\n' "${ratios[@]}" | pair_median "the CPU of the runtime default")"
  done
  ;;
compare-trials | compare-trials-interleaved)
  n=${1:?usage: loadtest.sh $cmd N DIR}
  dir=${2:?usage: loadtest.sh $cmd N DIR}
  heavy=${HEAVY:-40}
  mkdir -p bin "$dir"
  go build -o bin/predictd ./cmd/predictd
  go build -o bin/predictd-loadtest ./cmd/predictd-loadtest
  # Two repositories of one model "ranker": A = the demo trees HEAVY times, B = MORE
  # percent more trees (default 30: about 20% more sidecar CPU per prediction).
  for side in A B; do
    k=$heavy
    if [ "$side" = B ]; then k=$((heavy * (100 + ${MORE:-30}) / 100)); fi
    HEAVY=$k "$0" noisy-models "$dir/models-$side" >/dev/null
    rm -rf "${dir:?}/models-$side/quiet"
    mv "$dir/models-$side/flooded" "$dir/models-$side/ranker"
  done
  reps=${REPS:-3}
  # serve REPO SOCK [ARGS]: start a sidecar serving repository REPO on SOCK; its pid in
  # $pid, and in $live until it is stopped (the trap stops what is left on any exit)
  live=""
  trap 'kill -INT $live 2>/dev/null || true' EXIT
  serve() {
    bin/predictd serve --listen "" --unix "$2" --watch=false --models "$dir/models-$1" "${@:3}" >>"$dir/sidecar.log" 2>&1 &
    pid=$!
    live="$live $pid"
    for _ in $(seq 100); do
      if curl -sf --unix-socket "$2" http://sidecar/readyz >/dev/null 2>&1; then break; fi
      sleep 0.1
    done
  }
  # stop PID...: stop sidecars
  stop() {
    kill -INT "$@"
    wait "$@" 2>/dev/null || true
    live=""
  }
  if [ "$cmd" = compare-trials-interleaved ]; then
    # pair X Y RUN: REPS interleaved runs of regression-gate, side a serving repository X
    # and side b Y, two fresh sidecars, into RUN/a and RUN/b
    pair() {
      sa=$(mktemp -u /tmp/predictd-trials.XXXXXX.sock)
      sb=$(mktemp -u /tmp/predictd-trials.XXXXXX.sock)
      serve "$1" "$sa"
      pa=$pid
      serve "$2" "$sb"
      pb=$pid
      bin/predictd-loadtest run --scenario loadtest/scenarios/regression-gate.yaml --progress=false \
        --target "unix:$sa" --sidecar-pid "$pa" --interleave "unix:$sb" --interleave-pid "$pb" \
        --repeat "$reps" --out "$dir/profiles" --run-id "$3" >"$dir/loadtest-$3.log" 2>&1
      stop "$pa" "$pb"
    }
    clean=0 caught=0
    for i in $(seq "$n"); do
      pair A A "same$i"
      pair A B "slow$i"
      rc=0
      bin/predictd-loadtest compare --paired "$dir/profiles/regression-gate/same$i/a" "$dir/profiles/regression-gate/same$i/b" \
        >"$dir/compare-same$i.txt" 2>&1 || rc=$?
      case $rc in 0) same=clean clean=$((clean + 1)) ;; 1) same=flagged ;; *) same="error(rc=$rc)" ;; esac
      rc=0
      bin/predictd-loadtest compare --paired "$dir/profiles/regression-gate/slow$i/a" "$dir/profiles/regression-gate/slow$i/b" \
        >"$dir/compare-slow$i.txt" 2>&1 || rc=$?
      case $rc in 0) slow=clean ;; 1) slow=flagged caught=$((caught + 1)) ;; *) slow="error(rc=$rc)" ;; esac
      same_cpu=$(awk '/cpu_ms_per_1k_predictions/ && match($0, /[+-][0-9.]+%/) { printf "%s%s", sep, substr($0, RSTART, RLENGTH); sep = " " }' "$dir/compare-same$i.txt")
      slow_cpu=$(awk '/cpu_ms_per_1k_predictions/ && match($0, /[+-][0-9.]+%/) { printf "%s%s", sep, substr($0, RSTART, RLENGTH); sep = " " }' "$dir/compare-slow$i.txt")
      echo "trial $i ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg)): A vs A' $same (CPU per prediction by step: $same_cpu); A vs B $slow ($slow_cpu)"
    done
    echo "$reps interleaved runs per comparison: identical builds clean: $clean/$n; heavier build flagged: $caught/$n"
    exit 0
  fi
  # one run of regression-gate against a fresh sidecar serving repository $1, into run $2
  runside() {
    sock=$(mktemp -u /tmp/predictd-trials.XXXXXX.sock)
    serve "$1" "$sock" --pprof
    bin/predictd-loadtest run --scenario loadtest/scenarios/regression-gate.yaml --target "unix:$sock" \
      --sidecar-pid "$pid" --out "$dir/profiles" --run-id "$2" >"$dir/loadtest.log" 2>&1
    stop "$pid"
  }
  # verdict A B [--paired]: compare's verdict on runs A and B
  verdict() {
    out="$dir/compare-$1-$2${3:-}.txt"
    rc=0
    bin/predictd-loadtest compare ${3:-} "$dir/profiles/regression-gate/$1" "$dir/profiles/regression-gate/$2" \
      >"$out" 2>&1 || rc=$?
    case $rc in 0) echo clean ;; 1) echo flagged ;; *) echo "error(rc=$rc, $out)" ;; esac
  }
  clean=0 caught1=0 caught2=0 pclean=0 pcaught1=0 pcaught2=0
  for i in $(seq "$n"); do
    # The runs of the three sides alternate, so a slow minute on the machine falls on all
    # of them rather than on one side's runs, and each run of B has a run of A and of A'
    # beside it in time (compare --paired).
    for r in $(seq "$reps"); do
      runside A "a$i/rep-$r"
      runside B "b$i/rep-$r"
      runside A "c$i/rep-$r"
    done
    same=$(verdict "a$i" "c$i")
    slow1=$(verdict "a$i" "b$i")
    slow2=$(verdict "c$i" "b$i")
    psame=$(verdict "a$i" "c$i" --paired)
    pslow1=$(verdict "a$i" "b$i" --paired)
    pslow2=$(verdict "c$i" "b$i" --paired)
    [ "$same" = clean ] && clean=$((clean + 1))
    [ "$slow1" = flagged ] && caught1=$((caught1 + 1))
    [ "$slow2" = flagged ] && caught2=$((caught2 + 1))
    [ "$psame" = clean ] && pclean=$((pclean + 1))
    [ "$pslow1" = flagged ] && pcaught1=$((pcaught1 + 1))
    [ "$pslow2" = flagged ] && pcaught2=$((pcaught2 + 1))
    # B's measured cost: the change of CPU per prediction at each step, A vs B, paired
    cpu=$(awk '/cpu_ms_per_1k_predictions/ && match($0, /[+-][0-9.]+%/) { printf "%s%s", sep, substr($0, RSTART, RLENGTH); sep = " " }' "$dir/compare-a$i-b$i--paired.txt")
    echo "trial $i ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg)): unpaired: A vs A' $same; A vs B $slow1; A' vs B $slow2;" \
      "paired: $psame; $pslow1; $pslow2; B's CPU per prediction by step: $cpu"
  done
  echo "$reps runs per side; unpaired: identical builds clean: $clean/$n; heavier build flagged: $caught1/$n (A vs B), $caught2/$n (A' vs B)"
  echo "$reps runs per side; paired: identical builds clean: $pclean/$n; heavier build flagged: $pcaught1/$n (A vs B), $pcaught2/$n (A' vs B)"
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
  case "$scenario" in *.yaml) file=$scenario ;; *) file="loadtest/scenarios/$scenario.yaml" ;; esac
  bin/predictd-loadtest run --scenario "$file" --target "unix:$sock" \
    --sidecar-pid "$pid" --out profiles --label "${LOADTEST_LABEL:-$(hostname)}" \
    ${LOADTEST_RUN_ID:+--run-id "$LOADTEST_RUN_ID"}
  ;;
*)
  sed -n '2,30p' "$0"
  exit 2
  ;;
esac
