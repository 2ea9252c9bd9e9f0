package onnx

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// Benchmarks of the ~7.3M-parameter MLP (512→2048→2048→1024→1), generated on demand by
// scripts/gen_onnx_models.py --big (not checked in: 29 MB). Settings, all optional:
//
//	ONNX_BENCH_MODEL    the model file (default .cache/onnx/mlp_7m.onnx, generated if missing)
//	ONNX_BENCH_DEVICES  comma-separated devices to measure (default cpu; the GPU run: cpu,cuda)
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
	m, err := Load(path, Config{Output: OutputConfig{Name: "score"}, Device: device, Batching: batching}, benchFeatureNames())
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

// BenchmarkMLP7M scores one batch per op: raw ONNX Runtime, the engine (pinned zero-copy
// input, the path PredictF32 takes for this model) and the engine copying the input into
// its C buffers (the path of models with a feature mapping or int64 inputs).
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
				for b.Loop() {
					if err := sess.Run(ins, outs); err != nil {
						b.Fatal(err)
					}
				}
				reportRows(b, n)
			})
			for _, zeroCopy := range []bool{true, false} {
				name := "engine"
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
					for b.Loop() {
						if err := m.PredictF32(rows, n, out, false); err != nil {
							b.Fatal(err)
						}
					}
					reportRows(b, n)
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
				if st := m.BatchStats(); st.Batches > 0 {
					b.ReportMetric(float64(st.Rows)/float64(st.Batches), "rows/batch")
				}
			})
		}
	}
}
