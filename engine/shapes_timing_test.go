//go:build cgo && linux

package engine

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/internal/cputime"
)

// Benchmarks of the C++ core on production-shaped models (docs/benchmarks.md,
// "Production-shaped models"). One thread; the thread's CPU time (its CPU clock,
// internal/cputime) per tree·row, every kernel against the generic walk of the same build;
// "-prev" is the kernel with the walks before the partition walk (setPreviousWalks), "-base"
// the kernel without the partition walk's leaf pairs and XGBoost's AVX-512 binning (nor
// step 14's changes), and "-step13" the kernel as it was before the slot-at-a-time XGBoost
// binning and the AVX2 split (shapesKernelFlags; none is in the default list):
//
//	PREDICTD_FIXTURES=/path/to/fixtures go test -run '^$' -bench 'Shapes' -benchtime 1x ./engine
//
// PREDICTD_SHAPES=ranker_63,NYC_taxi limits the run to the models named;
// PREDICTD_SHAPES_KERNELS=generic,avx512-prev,avx512 the batch benchmark to the kernels
// named (in that order), PREDICTD_SHAPES_BATCHES=32,64,128 the small one to those batches.
// BenchmarkShapesBatch scores batches of 1,000 rows; BenchmarkShapesSmall scores batches
// of 1, 2, 3, 4, 8 and 16 rows through Model.PredictF64 / PredictF32 (the cgo call
// included) and reports ns per row. Models: the fixtures of shapes_test.go and the
// lightgbm-oracle NYC_taxi, airline and mtpl2; a model absent from both testdata/ and the
// shared fixture set is skipped with a note.

var shapesBenchExtra = []shapesFixture{
	{"NYC_taxi", FormatLightGBM, "lightgbm-oracle/NYC_taxi", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
	{"airline", FormatLightGBM, "lightgbm-oracle/airline", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
	{"mtpl2", FormatLightGBM, "lightgbm-oracle/mtpl2", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
}

// shapesBenchWanted: PREDICTD_SHAPES (comma-separated model names) limits the models
// benchmarked; unset, all of them.
func shapesBenchWanted(name string) bool {
	only := os.Getenv("PREDICTD_SHAPES")
	if only == "" {
		return true
	}
	for _, n := range strings.Split(only, ",") {
		if n == name {
			return true
		}
	}
	return false
}

// shapesThreadCPU is the calling thread's CPU time.
func shapesThreadCPU() time.Duration { return cputime.Thread() }

// shapesMeasure runs fn (one call scores a batch) in rounds of `round` calls until at least
// minCPU of thread CPU time has passed, three times, and returns the lowest CPU time per
// call. The clock is a system call (about a microsecond on a VM): short calls need long
// rounds.
func shapesMeasure(b *testing.B, minCPU time.Duration, round int, fn func(i int) error) time.Duration {
	best := time.Duration(1 << 62)
	for rep := 0; rep < 3; rep++ {
		start := shapesThreadCPU()
		calls := 0
		for shapesThreadCPU()-start < minCPU {
			for j := 0; j < round; j++ {
				if err := fn(calls); err != nil {
					b.Fatal(err)
				}
				calls++
			}
		}
		if d := (shapesThreadCPU() - start) / time.Duration(calls); d < best {
			best = d
		}
	}
	return best
}

// shapesAtLeast repeats a fixture's rows until it has at least n (the reduced copies in
// testdata/ have a few hundred rows; the batch benchmark scores 1,000).
func shapesAtLeast(l *shapesLoaded, n int) *shapesLoaded {
	if l.nrows >= n {
		return l
	}
	c := *l
	nf := l.ens.NumFeatures
	for c.nrows < n {
		c.rows = append(c.rows, l.rows[:l.nrows*nf]...)
		c.rows32 = append(c.rows32, l.rows32[:l.nrows*nf]...)
		c.want = append(c.want, l.want...)
		c.nrows += l.nrows
	}
	return &c
}

// shapesKernelFlags: a kernel name's suffix in PREDICTD_SHAPES_KERNELS and the walk flags
// (pd_walk_lockstep) it runs the kernel with: an earlier design of the same build.
var shapesKernelFlags = map[string]int{
	"-prev":   4,           // the walks before the partition walk (step 10)
	"-base":   8 | 16 | 32, // the partition walk before leaf pairs and AVX-512 XGBoost binning (step 12)
	"-step13": 16 | 32,     // before the slot-at-a-time XGBoost binning and the AVX2 split (step 14)
}

func BenchmarkShapesBatch(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const batch = 1000
	var lines []string
	for _, fx := range append(append([]shapesFixture{}, shapesFixtures...), shapesBenchExtra...) {
		if !shapesBenchWanted(fx.name) {
			continue
		}
		l, ok := shapesLoad(b, fx)
		if !ok {
			lines = append(lines, fmt.Sprintf("%-16s absent (testdata/%s or PREDICTD_FIXTURES)", fx.name, fx.dir))
			continue
		}
		l = shapesAtLeast(l, batch)
		T := float64(l.ens.NumTrees())
		// Load: the core's validation and layout (newCScorer), thread CPU time, best of three.
		load := time.Duration(1 << 62)
		for i := 0; i < 3; i++ {
			t0 := shapesThreadCPU()
			sc, err := newCScorer(l.ens)
			if err != nil {
				b.Fatal(err)
			}
			load = min(load, shapesThreadCPU()-t0)
			sc.close()
		}
		var generic float64
		res := map[string]float64{}
		var order []string
		trav := ""
		// Every kernel's scorer first, then rounds that alternate between the kernels (the
		// best round of each counts), so a neighbour busy for a while on the shared VM
		// slows every kernel's rounds alike rather than one kernel's.
		type timed struct {
			name  string
			flags int
			sc    *cScorer
			best  time.Duration
		}
		var ks []*timed
		for _, k := range shapesBatchKernels() {
			flags := 0
			base := k
			for suffix, f := range shapesKernelFlags {
				if strings.HasSuffix(k, suffix) {
					flags, base = f, strings.TrimSuffix(k, suffix)
				}
			}
			sc, err := newCScorerKernel(l.ens, base)
			if err != nil {
				continue
			}
			trav = sc.traversal()
			ks = append(ks, &timed{name: k, flags: flags, sc: sc, best: time.Duration(1 << 62)})
		}
		out := make([]float64, batch)
		for rep := 0; rep < 3; rep++ {
			for _, k := range ks {
				setWalkFlags(k.flags)
				d := shapesMeasure(b, 60*time.Millisecond, 1, func(i int) error {
					lo := (i * 397) % (l.nrows - batch + 1)
					return shapesPredict(k.sc, l, fx.xgb, lo, batch, out)
				})
				setWalkFlags(0)
				k.best = min(k.best, d)
			}
		}
		for _, k := range ks {
			k.sc.close()
			ns := float64(k.best.Nanoseconds()) / (T * batch)
			res[k.name] = ns
			order = append(order, k.name)
			if k.name == "generic" {
				generic = ns
			}
		}
		var parts []string
		for _, k := range order {
			if generic > 0 {
				parts = append(parts, fmt.Sprintf("%s %.2f (%.1fx)", k, res[k], generic/res[k]))
			} else {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, res[k]))
			}
		}
		lines = append(lines, fmt.Sprintf("%-16s %-12s load %.1f ms (%.0f ms per 1,000 trees); ns/tree·row: %s", fx.name, trav,
			float64(load.Microseconds())/1000, float64(load.Microseconds())/T, strings.Join(parts, ", ")))
	}
	b.Logf("batch %d, one thread, CPU time, ns per tree·row (speed-up over the generic walk):\n%s", batch, strings.Join(lines, "\n"))
}

func BenchmarkShapesSmall(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batches := []int{1, 2, 3, 4, 8, 16}
	if v := os.Getenv("PREDICTD_SHAPES_BATCHES"); v != "" {
		batches = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("PREDICTD_SHAPES_BATCHES=%q: want batch sizes of at least 1, comma-separated", v)
			}
			batches = append(batches, n)
		}
	}
	var lines []string
	for _, fx := range append(append([]shapesFixture{}, shapesBenchExtra...), shapesFixtures...) {
		if !shapesBenchWanted(fx.name) {
			continue
		}
		l, ok := shapesLoad(b, fx)
		if !ok {
			lines = append(lines, fmt.Sprintf("%-16s absent", fx.name))
			continue
		}
		m, err := NewModel(l.ens, Options{})
		if err != nil {
			b.Fatal(err)
		}
		gen, err := newCScorerKernel(l.ens, "generic")
		if err != nil {
			b.Fatal(err)
		}
		nf := l.ens.NumFeatures
		var parts []string
		for _, n := range batches {
			out := make([]float64, n)
			d := shapesMeasure(b, 100*time.Millisecond, 256, func(i int) error {
				lo := (i * 7) % (l.nrows - n + 1)
				if fx.xgb {
					return m.PredictF32(l.rows32[lo*nf:(lo+n)*nf], n, out, true)
				}
				return m.PredictF64(l.rows[lo*nf:(lo+n)*nf], n, out, true)
			})
			g := shapesMeasure(b, 100*time.Millisecond, 16, func(i int) error {
				lo := (i * 7) % (l.nrows - n + 1)
				return shapesPredict(gen, l, fx.xgb, lo, n, out)
			})
			parts = append(parts, fmt.Sprintf("%d: %.0f (generic %.0f)", n, float64(d.Nanoseconds())/float64(n), float64(g.Nanoseconds())/float64(n)))
		}
		gen.close()
		m.Close()
		lines = append(lines, fmt.Sprintf("%-16s %s", fx.name, strings.Join(parts, "  ")))
	}
	sort.Strings(lines)
	if os.Getenv("PREDICTD_FIXTURES") == "" && shapesSharedDir() == "" {
		lines = append(lines, "(shared fixtures absent: set PREDICTD_FIXTURES)")
	}
	b.Logf("Model.Predict*, one thread, CPU ns per row at batch n (the generic walk, direct):\n%s", strings.Join(lines, "\n"))
}

// BenchmarkShapesLoad: the core's load (newCScorer: the spec copied into C, validated and
// laid out) per model, thread CPU time per 1,000 trees, best of three rounds.
func BenchmarkShapesLoad(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var lines []string
	for _, fx := range append(append([]shapesFixture{}, shapesFixtures...), shapesBenchExtra...) {
		if !shapesBenchWanted(fx.name) {
			continue
		}
		l, ok := shapesLoad(b, fx)
		if !ok {
			continue
		}
		T := float64(l.ens.NumTrees())
		d := shapesMeasure(b, 300*time.Millisecond, 1, func(int) error {
			sc, err := newCScorer(l.ens)
			if err != nil {
				return err
			}
			sc.close()
			return nil
		})
		lines = append(lines, fmt.Sprintf("%-16s %.1f ms (%.0f ms per 1,000 trees)", fx.name, float64(d.Microseconds())/1000, float64(d.Microseconds())/T))
	}
	b.Logf("load, one thread, CPU time:\n%s", strings.Join(lines, "\n"))
}

// shapesBatchKernels: the kernels BenchmarkShapesBatch times, in order
// (PREDICTD_SHAPES_KERNELS, or all of them).
func shapesBatchKernels() []string {
	if k := os.Getenv("PREDICTD_SHAPES_KERNELS"); k != "" {
		return strings.Split(k, ",")
	}
	return []string{"generic", "scalar-prev", "scalar", "avx2-prev", "avx2", "avx512-prev", "avx512"}
}
