package onnx

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// Benchmarks of the ~7.3M-parameter MLP (512→2048→2048→1024→1), generated on demand by
// scripts/gen_onnx_models.py --big (not checked in: 29 MB). Settings, all optional:
//
//	ONNX_BENCH_MODEL    the model file (default .cache/onnx/mlp_7m.onnx, generated if missing)
//	ONNX_BENCH_DEVICES  comma-separated devices to measure (default cpu; the GPU run: cpu,cuda)
//	ONNX_BENCH_THREADS  intra_op_threads for the engine and the raw baseline (default 0:
//	                    ONNX Runtime's default, one per physical core)
//
// Every engine benchmark sits beside its baseline in the same run: BenchmarkMLP7M/.../raw is
// onnxruntime_go alone on preallocated tensors, the floor the engine's overhead is measured
// against; BenchmarkMLP7MConcurrent/unbatched is the same clients without dynamic batching.
// Compare ratios, not absolute numbers, across machines.

func benchModel(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("ONNX_BENCH_MODEL"); p != "" {
		return p
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(root, ".cache", "onnx")
	p := filepath.Join(dir, "mlp_7m.onnx")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	python := "/usr/bin/python3" // Debian's, which has python3-onnx; another python3 may not
	if _, err := os.Stat(python); err != nil {
		python = "python3"
	}
	out, err := exec.Command(python, filepath.Join(root, "scripts", "gen_onnx_models.py"), "--big", dir).CombinedOutput()
	if err != nil {
		b.Fatalf("generating %s: %v\n%s(needs python3-onnx and python3-numpy, or set ONNX_BENCH_MODEL)", p, err, out)
	}
	return p
}

func benchThreads(b *testing.B) int {
	s := os.Getenv("ONNX_BENCH_THREADS")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		b.Fatalf("ONNX_BENCH_THREADS=%q: want a thread count", s)
	}
	return n
}

func benchDevices() []string {
	if s := os.Getenv("ONNX_BENCH_DEVICES"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"cpu"}
}

const benchFeatures = 512

func benchFeatureNames() []string {
	names := make([]string, benchFeatures)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	return names
}

func benchRows(n int) []float32 {
	rng := rand.New(rand.NewPCG(uint64(n), 2))
	rows := make([]float32, n*benchFeatures)
	for i := range rows {
		rows[i] = float32(rng.NormFloat64())
	}
	return rows
}

func loadBench(b *testing.B, path, device string, batching *BatchingConfig) *Model {
	b.Helper()
	cfg := Config{Output: OutputConfig{Name: "score"}, Device: device, IntraOpThreads: benchThreads(b), Batching: batching}
	m, err := Load(path, cfg, benchFeatureNames())
	if err != nil {
		b.Fatal(err)
	}
	if device != "cpu" && !strings.HasPrefix(m.Device(), "cuda") {
		m.Close()
		b.Fatalf("device %s requested, runs on %s", device, m.Device())
	}
	return m
}

// rawSession is the baseline: onnxruntime_go with the same session settings as the engine
// and tensors allocated once, so a run is just Run.
func rawSession(b *testing.B, path, device string, n int) (*ort.DynamicAdvancedSession, []ort.Value, []ort.Value) {
	b.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		b.Fatal(err)
	}
	if n := benchThreads(b); n > 0 {
		if err := opts.SetIntraOpNumThreads(n); err != nil {
			b.Fatal(err)
		}
	}
	if cuda, gpu, _ := parseDevice(device); cuda {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			b.Fatal(err)
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": fmt.Sprint(gpu)}); err != nil {
			b.Fatal(err)
		}
		if err := opts.AppendExecutionProviderCUDA(co); err != nil {
			b.Fatal(err)
		}
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{"x"}, []string{"score"}, opts)
	if err != nil {
		b.Fatal(err)
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), benchFeatures), benchRows(n))
	if err != nil {
		b.Fatal(err)
	}
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
	if err != nil {
		b.Fatal(err)
	}
	return sess, []ort.Value{in}, []ort.Value{out}
}

func reportRows(b *testing.B, rows int) {
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// minTimer tracks the fastest op: on a shared machine the mean carries the neighbours'
// load, the minimum much less of it.
// loop runs fn once per b.Loop iteration, timing each call; an error fails the benchmark.
func (mt *minTimer) loop(b *testing.B, fn func() error) {
	for b.Loop() {
		mt.begin()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		mt.end()
	}
}

type minTimer struct {
	start time.Time
	min   time.Duration
}

func (t *minTimer) begin() { t.start = time.Now() }

func (t *minTimer) end() {
	if d := time.Since(t.start); t.min == 0 || d < t.min {
		t.min = d
	}
}

func (t *minTimer) report(b *testing.B) {
	b.ReportMetric(float64(t.min.Nanoseconds())/1e6, "min-ms/op")
}

// BenchmarkMLP7M scores one batch per op: raw ONNX Runtime, the engine as configured (it
// lends the caller's rows, pinned, from pinMinValues values up: batch 8 and more here) and
// the engine always copying into its C buffers (the path of models with a feature mapping
// or int64 inputs).
func BenchmarkMLP7M(b *testing.B) {
	path := benchModel(b)
	for _, device := range benchDevices() {
		for _, n := range []int{1, 256, 1024, 8192} {
			rows := benchRows(n)
			b.Run(fmt.Sprintf("%s/batch=%d/raw", device, n), func(b *testing.B) {
				sess, ins, outs := rawSession(b, path, device, n)
				defer func() {
					sess.Destroy()
					ins[0].Destroy()
					outs[0].Destroy()
				}()
				if err := sess.Run(ins, outs); err != nil { // warm-up
					b.Fatal(err)
				}
				b.SetBytes(int64(n * benchFeatures * 4))
				b.ReportAllocs()
				b.ResetTimer()
				var mt minTimer
				mt.loop(b, func() error { return sess.Run(ins, outs) })
				reportRows(b, n)
				mt.report(b)
			})
			for _, zeroCopy := range []bool{true, false} {
				name := "engine" // the engine's choice: pinned from pinMinValues values up
				if !zeroCopy {
					name = "engine-copy"
				}
				b.Run(fmt.Sprintf("%s/batch=%d/%s", device, n, name), func(b *testing.B) {
					m := loadBench(b, path, device, nil)
					defer m.Close()
					m.zeroCopy = zeroCopy
					out := make([]float64, n)
					if err := m.PredictF32(rows, n, out, false); err != nil {
						b.Fatal(err)
					}
					b.SetBytes(int64(n * benchFeatures * 4))
					b.ReportAllocs()
					b.ResetTimer()
					var mt minTimer
					mt.loop(b, func() error { return m.PredictF32(rows, n, out, false) })
					reportRows(b, n)
					mt.report(b)
				})
			}
		}
	}
}

// BenchmarkMLP7MConcurrent: 64 clients each send 128-row requests as fast as they are
// answered; an op is one request. batched merges them (max_batch 8192 = 64 × 128),
// unbatched runs each on its own.
func BenchmarkMLP7MConcurrent(b *testing.B) {
	const (
		clients = 64
		rowsPer = 128
	)
	path := benchModel(b)
	for _, device := range benchDevices() {
		for _, batched := range []bool{false, true} {
			name := "unbatched"
			var bc *BatchingConfig
			if batched {
				name = "batched"
				bc = &BatchingConfig{MaxBatch: clients * rowsPer, MaxQueueDelayUs: 500, QueueSize: clients}
			}
			b.Run(fmt.Sprintf("%s/clients=%d/rows=%d/%s", device, clients, rowsPer, name), func(b *testing.B) {
				m := loadBench(b, path, device, bc)
				defer m.Close()
				rows := benchRows(rowsPer)
				if err := m.PredictF32(rows, rowsPer, make([]float64, rowsPer), false); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				start := time.Now()
				var (
					left atomic.Int64
					wg   sync.WaitGroup
					errs = make(chan error, clients)
				)
				left.Store(int64(b.N))
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						out := make([]float64, rowsPer)
						for left.Add(-1) >= 0 {
							if err := m.PredictF32(rows, rowsPer, out, false); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				b.ReportMetric(float64(rowsPer*b.N)/time.Since(start).Seconds(), "rows/s")
				// CPU time per 1000 rows: the work done, which a shared machine's load does
				// not inflate the way it inflates wall time (ONNX Runtime's spinning counts).
				b.ReportMetric((processCPU()-cpu0).Seconds()*1000/(float64(rowsPer*b.N)/1000), "cpu-ms/krow")
				if st := m.BatchStats(); st.Batches > 0 {
					b.ReportMetric(float64(st.Rows)/float64(st.Batches), "rows/batch")
				}
			})
		}
	}
}

// BenchmarkSmallMLPOverhead measures what the engine adds per call, on the checked-in
// 8→16→1 MLP whose run costs microseconds: raw onnxruntime_go on preallocated tensors vs
// the engine's pinned path, its copying path, and a batched call (queue + runner handoff).
func BenchmarkSmallMLPOverhead(b *testing.B) {
	features := mlpCase().cfg.Inputs[0].Features
	for _, n := range []int{1, 64} {
		rows := make([]float32, n*8)
		for i := range rows {
			rows[i] = float32(i%17) / 17
		}
		b.Run(fmt.Sprintf("batch=%d/raw", n), func(b *testing.B) {
			sess, err := ort.NewDynamicAdvancedSession(modelPath("mlp"), []string{"x"}, []string{"score"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Destroy()
			in, err := ort.NewTensor(ort.NewShape(int64(n), 8), rows)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Destroy()
			out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Destroy()
			ins, outs := []ort.Value{in}, []ort.Value{out}
			b.ReportAllocs()
			var mt minTimer
			mt.loop(b, func() error { return sess.Run(ins, outs) })
			mt.report(b)
		})
		for _, mode := range []string{"engine-pinned", "engine-copy", "engine-batched"} {
			b.Run(fmt.Sprintf("batch=%d/%s", n, mode), func(b *testing.B) {
				cfg := Config{Output: OutputConfig{Name: "score"}}
				if mode == "engine-batched" {
					cfg.Batching = &BatchingConfig{}
				}
				m, err := Load(modelPath("mlp"), cfg, features)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				m.zeroCopy = mode == "engine-pinned"
				m.pinMinValues = 0
				out := make([]float64, n)
				b.ReportAllocs()
				var mt minTimer
				mt.loop(b, func() error { return m.PredictF32(rows, n, out, false) })
				mt.report(b)
			})
		}
	}
}

// processCPU returns the process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
