//go:build cgo && linux

package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmitryikh/leaves"
	"github.com/predictd/predictd/examples"

	"github.com/predictd/predictd/internal/cputime"
)

// Benchmarks of the C++ core against its peers on the same rows, one thread:
// XGBoost's own C predictor (XGBoosterPredictFromDense, nthread=1; -tags xgboost),
// github.com/dmitryikh/leaves (LightGBM models), the pure-Go backend, and the core's own
// kernels forced one by one (avx512, avx2, the same two with the tree walks instead of leaf
// tables — the previous design —, scalar, generic). One command prints a table
// with ratios at the end (docs/benchmarks.md, "Scoring core"):
//
//	go test -tags xgboost -run '^$' -bench 'Core' -benchtime 1s ./engine
//
// Inputs: the lightgbm-oracle NYC_taxi and airline models and inputs and the largest
// XGBoost fixture (gen_bench_rank_pairwise) from testdata/, rows tiled to 10,000. The
// in-repo gen_bench_rank_pairwise keeps 400 of the upstream 2,000 input rows and a model
// file without the per-node training statistics (same trees, same predictions;
// testdata/README.md); with PREDICTD_FIXTURES set to a full copy of the fixture set, the
// benchmark reads every model and input from there instead. Batches start at a rotating
// row so a batch of one does not score the same row every time.
//
// The table reports the benchmark thread's CPU time (its CPU clock, internal/cputime; the goroutine
// locked to its thread), not wall time: on a shared 2-vCPU VM wall time mostly measures the
// scheduler. Every backend here runs on the calling thread (XGBoost with nthread=1, leaves
// with nThreads=1). The usual ns/op stays in the raw output.

type coreBenchModel struct {
	name   string
	format Format
	model  string // relative to testdata/
	input  string
	header bool // the CSV starts with a header row
	// fullModel and fullInput are the same files in a full copy of the fixture set
	// (PREDICTD_FIXTURES).
	fullModel, fullInput string
}

var coreBenchModels = []coreBenchModel{
	{"NYC_taxi", FormatLightGBM, "lightgbm/lleaves_NYC_taxi/model.txt", "lightgbm-oracle/NYC_taxi/inputs.csv", true,
		"lightgbm-oracle/NYC_taxi/model.txt", "lightgbm-oracle/NYC_taxi/inputs.csv"},
	{"airline", FormatLightGBM, "lightgbm/lleaves_airline/model.txt", "lightgbm-oracle/airline/inputs.csv", true,
		"lightgbm-oracle/airline/model.txt", "lightgbm-oracle/airline/inputs.csv"},
	{"xgb_rank_pairwise", FormatXGBoost, "xgboost/gen_bench_rank_pairwise/model.json", "xgboost/gen_bench_rank_pairwise/input.csv", false,
		"xgboost/gen_bench_rank_pairwise/model.json", "xgboost/gen_bench_rank_pairwise/input.csv"},
}

// coreBenchFiles returns bm's model and input: from the full fixture set when
// PREDICTD_FIXTURES names one, else from testdata/ (readFixture).
func coreBenchFiles(b *testing.B, bm coreBenchModel) (model, input []byte) {
	dir := os.Getenv("PREDICTD_FIXTURES")
	if dir == "" {
		return readFixture(b, bm.model), readFixture(b, bm.input)
	}
	var err error
	if model, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(bm.fullModel))); err != nil {
		b.Fatalf("PREDICTD_FIXTURES: %v", err)
	}
	if input, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(bm.fullInput))); err != nil {
		b.Fatalf("PREDICTD_FIXTURES: %v", err)
	}
	return model, input
}

var coreBenchBatches = []int{1, 100, 1000, 10000}

const coreBenchRows = 10000

// coreBenchCSV parses a CSV of floats (empty field = NaN) and tiles it to n rows.
func coreBenchCSV(b *testing.B, name string, data []byte, header bool, ncols, n int) []float64 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var rows []float64
	first := true
	for sc.Scan() {
		if first && header {
			first = false
			continue
		}
		fields := strings.Split(sc.Text(), ",")
		if len(fields) != ncols {
			b.Fatalf("%s: %d fields, the model takes %d", name, len(fields), ncols)
		}
		for _, s := range fields {
			v := math.NaN()
			if s != "" {
				var err error
				if v, err = strconv.ParseFloat(s, 64); err != nil {
					b.Fatalf("%s: %v", name, err)
				}
			}
			rows = append(rows, v)
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	have := len(rows) / ncols
	for len(rows) < n*ncols {
		rows = append(rows, rows[:min(have*ncols, n*ncols-len(rows))]...)
	}
	return rows[:n*ncols]
}

// coreBenchResult is ns per batch of one (model, batch, backend).
type coreBenchKey struct {
	model   string
	batch   int
	backend string
}

var (
	coreBenchMu      sync.Mutex
	coreBenchResults = map[coreBenchKey]float64{}
)

// coreBenchBackend scores rows[lo:lo+n] (row indices) into out.
type coreBenchBackend struct {
	name  string
	score func(lo, n int, out []float64) error
	close func()
}

func BenchmarkCore(b *testing.B) {
	trees := map[string]int{}
	for _, bm := range coreBenchModels {
		model, input := coreBenchFiles(b, bm)
		ens, err := Parse(bm.format, model)
		if err != nil {
			b.Fatalf("%s: %v", bm.name, err)
		}
		trees[bm.name] = ens.NumTrees()
		nf, nk := ens.NumFeatures, ens.NumOutputs
		rows := coreBenchCSV(b, bm.name+" input", input, bm.header, nf, coreBenchRows)
		rows32 := make([]float32, len(rows))
		for i, v := range rows {
			rows32[i] = float32(v)
		}
		// XGBoost models are float32 models: every backend gets float32 rows, as XGBoost does.
		xgb := bm.format == FormatXGBoost

		var backends []coreBenchBackend
		for _, k := range []string{"avx512", "avx2", "avx512-walk", "avx2-walk", "scalar", "generic"} {
			sc, err := newCScorerKernel(ens, k)
			if err != nil {
				b.Logf("%s: kernel %s skipped: %v", bm.name, k, err)
				continue
			}
			backends = append(backends, coreBenchBackend{"c/" + k, func(lo, n int, out []float64) error {
				if xgb {
					return sc.predictF32(rows32[lo*nf:(lo+n)*nf], n, out)
				}
				return sc.predictF64(rows[lo*nf:(lo+n)*nf], n, out)
			}, sc.close})
		}
		gs, err := newGoScorer(ens)
		if err != nil {
			b.Fatal(err)
		}
		backends = append(backends, coreBenchBackend{"go", func(lo, n int, out []float64) error {
			if xgb {
				return gs.predictF32(rows32[lo*nf:(lo+n)*nf], n, out)
			}
			return gs.predictF64(rows[lo*nf:(lo+n)*nf], n, out)
		}, func() {}})
		if !xgb {
			lv, err := leaves.LGEnsembleFromReader(bufio.NewReader(bytes.NewReader(model)), false)
			if err != nil {
				b.Fatal(err)
			}
			backends = append(backends, coreBenchBackend{"leaves", func(lo, n int, out []float64) error {
				return lv.PredictDense(rows[lo*nf:(lo+n)*nf], n, nf, out, 0, 1)
			}, func() {}})
		} else if xgbPeerAvailable {
			// XGBoost loads a model from a file: the decompressed copy.
			modelPath := filepath.Join(b.TempDir(), "model.json")
			if err := os.WriteFile(modelPath, model, 0o600); err != nil {
				b.Fatal(err)
			}
			xp, err := newXGBPeer(modelPath, nk, rows32, nf)
			if err != nil {
				b.Fatal(err)
			}
			// The peer holds one C copy of the rows and scores from row 0 (lo is ignored).
			backends = append(backends, coreBenchBackend{"xgboost", func(lo, n int, out []float64) error {
				return xp.predict(n, out)
			}, xp.close})
		} else {
			b.Logf("%s: XGBoost's predictor not linked (run with -tags xgboost)", bm.name)
		}

		// Before timing, every backend must agree with the core's generic walk on the first
		// 1,000 rows: exactly for the core's kernels and the Go scorer, within the fixture
		// tolerance (5e-5 relative) for leaves and XGBoost, which is only logged.
		var ref []float64
		for _, be := range backends {
			got := make([]float64, 1000*nk)
			if err := be.score(0, 1000, got); err != nil {
				b.Fatalf("%s %s: %v", bm.name, be.name, err)
			}
			if be.name == "c/generic" {
				ref = got
			}
		}
		for _, be := range backends {
			got := make([]float64, 1000*nk)
			_ = be.score(0, 1000, got)
			exact := strings.HasPrefix(be.name, "c/") || be.name == "go"
			for i := range got {
				if exact && got[i] != ref[i] {
					b.Fatalf("%s: %s output %d = %v, generic %v", bm.name, be.name, i, got[i], ref[i])
				}
				if d := math.Abs(got[i] - ref[i]); d > 5e-5*math.Max(1, math.Abs(ref[i])) {
					b.Logf("%s: %s differs from the core at output %d: %v vs %v", bm.name, be.name, i, got[i], ref[i])
					break
				}
			}
		}

		for _, batch := range coreBenchBatches {
			out := make([]float64, batch*nk)
			for _, be := range backends {
				b.Run(fmt.Sprintf("%s/batch=%d/%s", bm.name, batch, be.name), func(b *testing.B) {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					b.ReportAllocs()
					cpu0 := coreBenchThreadCPU()
					span := coreBenchRows - batch + 1
					for i := 0; i < b.N; i++ {
						lo := 0
						if be.name != "xgboost" {
							lo = ((i % 64) * batch * 7919) % span // rotate over 64 start rows
						}
						if err := be.score(lo, batch, out); err != nil {
							b.Fatal(err)
						}
					}
					ns := float64((coreBenchThreadCPU() - cpu0).Nanoseconds()) / float64(b.N)
					b.ReportMetric(ns/float64(batch), "cpu-ns/row")
					if ens.NumTrees() > 0 {
						b.ReportMetric(ns/float64(batch*ens.NumTrees()), "cpu-ns/tree·row")
					}
					coreBenchMu.Lock()
					coreBenchResults[coreBenchKey{bm.name, batch, be.name}] = ns
					coreBenchMu.Unlock()
				})
			}
		}
		for _, be := range backends {
			be.close()
		}
	}
	coreBenchTable(os.Stdout, trees)
}

// coreBenchThreadCPU is the calling thread's CPU time (user + system).
func coreBenchThreadCPU() time.Duration { return cputime.Thread() }

// coreBenchTable prints, per model and batch, ns/row of each backend and its ratio to the
// core's default kernel (ratio > 1: the core is that many times faster).
func coreBenchTable(w *os.File, trees map[string]int) {
	coreBenchMu.Lock()
	defer coreBenchMu.Unlock()
	if len(coreBenchResults) == 0 {
		return
	}
	def := "c/" + strings.TrimPrefix(func() string {
		sc, err := newCScorer(&Ensemble{NumFeatures: 1, NumOutputs: 1, BaseScore: []float64{0}, NodeStart: []int32{0}, LeafStart: []int32{0}})
		if err != nil {
			return "avx2"
		}
		defer sc.close()
		return sc.name()
	}(), "c/")
	order := []string{"c/avx512", "c/avx2", "c/avx512-walk", "c/avx2-walk", "c/scalar", "c/generic", "go", "leaves", "xgboost"}
	fmt.Fprintf(w, "\nScoring core, single thread: CPU ns per row (ratio = backend time / %s time)\n\n", def)
	fmt.Fprintf(w, "| model | batch | %s ns/tree·row |", def)
	for _, be := range order {
		fmt.Fprintf(w, " %s |", be)
	}
	fmt.Fprintf(w, "\n|---|---|---|")
	for range order {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w)
	models := map[string]bool{}
	for k := range coreBenchResults {
		models[k.model] = true
	}
	for _, bm := range coreBenchModels {
		if !models[bm.name] {
			continue
		}
		batches := []int{}
		for k := range coreBenchResults {
			if k.model == bm.name && k.backend == def {
				batches = append(batches, k.batch)
			}
		}
		sort.Ints(batches)
		for _, batch := range batches {
			base := coreBenchResults[coreBenchKey{bm.name, batch, def}]
			fmt.Fprintf(w, "| %s (%d trees) | %d | %.2f |", bm.name, trees[bm.name], batch, base/float64(batch*max(1, trees[bm.name])))
			for _, be := range order {
				ns, ok := coreBenchResults[coreBenchKey{bm.name, batch, be}]
				if !ok {
					fmt.Fprintf(w, " – |")
					continue
				}
				fmt.Fprintf(w, " %.1f (%.2f×) |", ns/float64(batch), ns/base)
			}
			fmt.Fprintln(w)
		}
	}
}

// BenchmarkCoreOverhead: the cost of one cgo crossing, a 1-row predict on a 1-tree stump,
// beside the pure-Go scorer doing the same work without crossing.
// Wall time (ns/op) here: the calls are too short for per-thread CPU accounting.
func BenchmarkCoreOverhead(b *testing.B) {
	ens := &Ensemble{
		Semantics: SemanticsLightGBM, NumFeatures: 2, NumOutputs: 1, BaseScore: []float64{0},
		NodeStart: []int32{0, 1}, LeafStart: []int32{0, 2}, TreeOutput: []int32{0},
		Feature: []int32{1}, Threshold: []float64{1.5}, Flags: []uint8{MakeFlags(false, true, MissingNaN)},
		Left: []int32{-1}, Right: []int32{-2}, CatSet: []int32{-1}, LeafValue: []float64{-1, 1},
	}
	row := []float64{0, 2}
	out := make([]float64, 1)
	b.Run("c", func(b *testing.B) {
		sc, err := newCScorer(ens)
		if err != nil {
			b.Fatal(err)
		}
		defer sc.close()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := sc.predictF64(row, 1, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("c/model", func(b *testing.B) {
		m, err := NewModel(ens, Options{Backend: BackendC})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := m.PredictF64(row, 1, out, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go", func(b *testing.B) {
		gs, err := newGoScorer(ens)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := gs.predictF64(row, 1, out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBackground: what handing a batch to the core's idle-priority threads costs
// (csrc/background.cc: a queue push, a worker's wake-up, a condition variable back) beside
// scoring the same batch on the calling thread, on the bundled demo model (100 trees) at
// 1 and 1,000 rows and on its trees 50 times over (5,000 trees; noisy-neighbor's
// "flooded") at 1,000 rows. Wall time (ns/op): the handover is a cross-thread wake-up.
//
//	go test -run '^$' -bench Background -benchtime 2000x ./engine
func BenchmarkBackground(b *testing.B) {
	demo, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		b.Fatal(err)
	}
	StartBackground(runtime.GOMAXPROCS(0))
	for _, c := range []struct {
		name  string
		k     int // the demo's trees k times over
		nrows int
	}{{"demo/rows=1", 1, 1}, {"demo/rows=1000", 1, 1000}, {"demo x50/rows=1000", 50, 1000}} {
		ens, err := ParseLightGBM(repeatTrees(b, demo, c.k))
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewModel(ens, Options{Backend: BackendC})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		rows := randomRows(rng, ens, c.nrows)
		out := make([]float64, c.nrows)
		b.Run(c.name+"/foreground", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := m.PredictF64(rows, c.nrows, out, true); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/background", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := m.PredictF64Background(rows, c.nrows, out, true, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		m.Close()
	}
}
