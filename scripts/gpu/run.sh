#!/usr/bin/env bash
# run.sh: runs ON THE GPU HOST (no Go, no network), from the repository root, with
# .cache/gpu-onnx/ carried (see README.md beside this file). One shot, about 3-5 minutes:
#   1. the engine/onnx tests with ONNX_TEST_DEVICE=cuda (every model on the GPU, compared
#      with ONNX Runtime on CPU within 1e-3; SIGTERM with the CUDA EP loaded), then on cpu
#      (which runs TestCUDA);
#   2. benchmarks with the CPU baseline in the same run: the ~7.3M-param MLP at batch 1, 256,
#      1024, 8192 on cpu and cuda (raw ONNX Runtime vs the engine), and 64 clients x 128 rows
#      with dynamic batching on and off;
#   3. summary.txt: the ratios the GPU targets are about (docs/benchmarks.md).
# Results go to $OUT, else /tmp/gpu-out.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
b=$root/.cache/gpu-onnx
main() {
echo "== host"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi failed"
nproc; uname -r

echo "== unpack"
eval "$("$b/ort/unpack" /tmp/ort)"
echo "ORT_LIB=$ORT_LIB"
xz -dc "$b/onnx.test.xz" > /tmp/onnx.test && chmod +x /tmp/onnx.test
python3 scripts/gen_onnx_models.py --big /tmp/onnx-models || echo "model generation failed"
model=/tmp/onnx-models/mlp_7m.onnx

cd engine/onnx # the tests read testdata/ relative to the package
echo "== tests, device cuda"
ONNX_TEST_DEVICE=cuda timeout 180 /tmp/onnx.test -test.v -test.count=1 > "$out/test-cuda.txt" 2>&1
echo "exit $?" >> "$out/test-cuda.txt"
grep -E '^(--- |ok|FAIL|PASS|exit)' "$out/test-cuda.txt"
echo "== tests, device cpu (TestCUDA runs here)"
timeout 120 /tmp/onnx.test -test.v -test.count=1 > "$out/test-cpu.txt" 2>&1
echo "exit $?" >> "$out/test-cpu.txt"
grep -E '^(--- |ok|FAIL|PASS|exit)' "$out/test-cpu.txt"

echo "== benchmarks"
# 20 timed runs per batch size; 1280 requests = 20 rounds
# of 64 clients. GPU_CHECK_QUICK=1 (a local dry run of this script) takes 1 and 64.
runs=20x; requests=1280x; devices=${GPU_CHECK_DEVICES:-cpu,cuda}
if [[ -n ${GPU_CHECK_QUICK:-} ]]; then runs=1x; requests=64x; fi
ONNX_BENCH_MODEL=$model ONNX_BENCH_DEVICES=$devices timeout 300 /tmp/onnx.test \
  -test.run '^$' -test.bench 'BenchmarkMLP7M$' -test.benchtime $runs > "$out/bench.txt" 2>&1
ONNX_BENCH_MODEL=$model ONNX_BENCH_DEVICES=$devices timeout 240 /tmp/onnx.test \
  -test.run '^$' -test.bench 'BenchmarkMLP7MConcurrent' -test.benchtime $requests >> "$out/bench.txt" 2>&1
echo "exit $?" >> "$out/bench.txt"
grep -E '^Benchmark|exit' "$out/bench.txt"

echo "== summary"
awk -f "$root/scripts/gpu/summary.awk" "$out/bench.txt" | { read -r header; echo "$header"; sort; } | tee "$out/summary.txt"
}

# tee in a pipeline (not exec > >(tee)) so run.log is complete when the script exits.
main 2>&1 | tee "$out/run.log"
