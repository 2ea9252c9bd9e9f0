//go:build cgo

package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/predictd/predictd/examples"
)

// Tests of the cgo bridge itself; the C++ core's own rules are covered by ctest
// (csrc/tests/core_test.cc) and by every fixture test, which runs BackendC too.

// stump builds a one-split LightGBM ensemble on two features.
func stump() *Ensemble {
	return &Ensemble{
		Semantics:   SemanticsLightGBM,
		NumFeatures: 2,
		NumOutputs:  1,
		BaseScore:   []float64{0.5},
		NodeStart:   []int32{0, 1},
		LeafStart:   []int32{0, 2},
		TreeOutput:  []int32{0},
		Feature:     []int32{1},
		Threshold:   []float64{1.5},
		Flags:       []uint8{MakeFlags(false, true, MissingNaN)},
		Left:        []int32{-1},
		Right:       []int32{-2},
		CatSet:      []int32{-1},
		LeafValue:   []float64{-1, 1},
	}
}

func TestCoreStump(t *testing.T) {
	sc, err := newCScorer(stump())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	if !strings.HasPrefix(sc.name(), "c/") {
		t.Fatalf("name %q, want c/<kernel>", sc.name())
	}
	rows := []float64{0, 1.5, 0, math.Nextafter(1.5, 2), 0, math.NaN()}
	out := make([]float64, 3)
	if err := sc.predictF64(rows, 3, out); err != nil {
		t.Fatal(err)
	}
	// 1.5 <= 1.5 goes left; just above goes right; NaN takes the default (left).
	if want := []float64{-0.5, 1.5, -0.5}; !equalFloats(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
	rows32 := []float32{0, 1.5, 0, math.Nextafter32(1.5, 2), 0, float32(math.NaN())}
	if err := sc.predictF32(rows32, 3, out); err != nil {
		t.Fatal(err)
	}
	if want := []float64{-0.5, 1.5, -0.5}; !equalFloats(out, want) {
		t.Fatalf("f32: got %v, want %v", out, want)
	}
}

// TestCoreRejectsBadSpecs: the core re-validates what Go hands it (it is a C API), so an
// Ensemble that skipped Validate still cannot crash it.
func TestCoreRejectsBadSpecs(t *testing.T) {
	f := func(name, want string, mutate func(e *Ensemble)) {
		t.Helper()
		e := stump()
		mutate(e)
		sc, err := newCScorer(e)
		if err == nil {
			sc.close()
			t.Fatalf("%s: accepted", name)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %q does not mention %q", name, err, want)
		}
	}
	f("child out of range", "left child 4 out of range", func(e *Ensemble) { e.Left[0] = 4 })
	f("cycle", "reached twice", func(e *Ensemble) { e.Left[0] = 0 })
	f("leaf twice", "leaf 0 is reached twice", func(e *Ensemble) { e.Right[0] = -1 })
	f("NaN threshold", "threshold is NaN", func(e *Ensemble) { e.Threshold[0] = math.NaN() })
	f("feature out of range", "feature 2 out of range", func(e *Ensemble) { e.Feature[0] = 2 })
	f("leaf count", "need 2 leaves", func(e *Ensemble) { e.LeafStart[1] = 1; e.LeafValue = e.LeafValue[:1] })
	f("tree output", "tree_output 3", func(e *Ensemble) { e.TreeOutput[0] = 3 })
	f("categorical set", "categorical set -1", func(e *Ensemble) { e.Flags[0] |= FlagCategorical })
}

func TestCorePredictErrors(t *testing.T) {
	m, err := NewModel(stump(), Options{Backend: BackendC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := make([]float64, 2)
	if err := m.PredictF64(make([]float64, 3), 1, out, true); err == nil {
		t.Fatal("wrong feature count accepted")
	}
	if err := m.PredictF64(make([]float64, 6), 3, out, true); err == nil {
		t.Fatal("short output accepted")
	}
	// The core checks shapes too, whatever the Go side let through.
	sc := m.sc.(*cScorer)
	if err := sc.predictF64(make([]float64, 4), 2, out[:1]); err == nil || !strings.Contains(err.Error(), "output holds 1") {
		t.Fatalf("core accepted a short output: %v", err)
	}
	m.Close()
	if err := m.PredictF64(make([]float64, 2), 1, out, true); err == nil {
		t.Fatal("predict after Close succeeded")
	}
}

// TestCoreConcurrent: many goroutines score through one handle at once and each gets
// what a lone call gets.
func TestCoreConcurrent(t *testing.T) {
	ens, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/lleaves_airline/model.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(ens, Options{Backend: BackendC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const nrows = 300
	rows := randomRows(rand.New(rand.NewPCG(3, 4)), ens, nrows)
	want := make([]float64, nrows)
	if err := m.PredictF64(rows, nrows, want, true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			out := make([]float64, nrows)
			for rep := 0; rep < 30; rep++ {
				lo := (g*31 + rep*17) % nrows
				n := min(nrows-lo, 1+rep*9)
				f := ens.NumFeatures
				if err := m.PredictF64(rows[lo*f:(lo+n)*f], n, out[:n], true); err != nil {
					errs <- err.Error()
					return
				}
				if i := firstDiff(out[:n], want[lo:lo+n]); i >= 0 {
					errs <- "mismatch"
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestCoreKernelEnv: PREDICTD_KERNEL picks the kernel (read once per process, so this
// only checks the name agrees with the variable when one is set).
func TestCoreKernelEnv(t *testing.T) {
	sc, err := newCScorer(stump())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	switch k := os.Getenv("PREDICTD_KERNEL"); k {
	case "generic", "scalar":
		if sc.name() != "c/"+k {
			t.Fatalf("PREDICTD_KERNEL=%s gave %s", k, sc.name())
		}
	default:
		if n := sc.name(); n != "c/scalar" && n != "c/avx2" && n != "c/avx512" && n != "c/generic" {
			t.Fatalf("unexpected kernel %q", n)
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCoreKernelsAgree: every kernel this CPU has, with leaf tables and with the walks,
// gives bit-identical margins to the generic walk on fixture models (the fixture tests only
// run the process's default kernel), and the binned fast path covers all of them.
func TestCoreKernelsAgree(t *testing.T) {
	tables := map[bool]int{}
	defer func() {
		if tables[true] == 0 || tables[false] == 0 {
			t.Errorf("models with / without leaf tables: %d / %d, want both", tables[true], tables[false])
		}
	}()
	models := []string{
		"lightgbm/lleaves_NYC_taxi/model.txt",
		"lightgbm/lleaves_airline/model.txt",
		"lightgbm/leaves_kddcup99/model.txt",
		"lightgbm/leaves_fmtp_poisson/model.txt",
		"lightgbm/lleaves_leaf_scan/model.txt",
		"xgboost/gen_multiclass_softprob/model.json",
		"xgboost/gen_regression_nan/model.json",
		"xgboost/leaves_dart_agaricus/model.json",
		"xgboost/leaves_gblinear_agaricus/model.json",
	}
	for _, path := range models {
		data := readFixture(t, path)
		ens, err := Parse(DetectFormat(path, data), data)
		if err != nil {
			t.Fatal(err)
		}
		const nrows = 500
		rows := randomRows(rand.New(rand.NewPCG(5, 6)), ens, nrows)
		rows32 := make([]float32, len(rows))
		for i, v := range rows {
			rows32[i] = float32(v)
		}
		ref, err := newCScorerKernel(ens, "generic")
		if err != nil {
			t.Fatal(err)
		}
		if !ref.fastPath() {
			t.Errorf("%s: not on the fast path", path)
		}
		// Leaf tables: there are trees and every one has at most 32 leaves (these models
		// are far from the tables' size and feature limits).
		wantTables := ens.NumTrees() > 0
		for tr := range ens.NumTrees() {
			if ens.LeafStart[tr+1]-ens.LeafStart[tr] > 32 {
				wantTables = false
			}
		}
		if ref.leafTables() != wantTables {
			t.Errorf("%s: leaf tables %v, want %v", path, ref.leafTables(), wantTables)
		}
		tables[wantTables]++
		want := make([]float64, nrows*ens.NumOutputs)
		want32 := make([]float64, nrows*ens.NumOutputs)
		if err := ref.predictF64(rows, nrows, want); err != nil {
			t.Fatal(err)
		}
		if err := ref.predictF32(rows32, nrows, want32); err != nil {
			t.Fatal(err)
		}
		ref.close()
		for _, k := range []string{"scalar", "avx2", "avx512", "scalar-walk", "avx2-walk", "avx512-walk"} {
			sc, err := newCScorerKernel(ens, k)
			if err != nil {
				t.Logf("%s: %v", k, err) // older CPU: that kernel is never chosen here
				continue
			}
			got := make([]float64, len(want))
			if err := sc.predictF64(rows, nrows, got); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Errorf("%s %s f64: output %d = %.17g, generic %.17g", path, k, i, got[i], want[i])
			}
			if err := sc.predictF32(rows32, nrows, got); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want32); i >= 0 {
				t.Errorf("%s %s f32: output %d = %.17g, generic %.17g", path, k, i, got[i], want32[i])
			}
			sc.close()
		}
	}
}

// TestTraversal: Model.Traversal names the core's layout for the model, and the reason
// when a model is left to the generic walk; the Go scorer has none.
func TestTraversal(t *testing.T) {
	for path, want := range map[string]string{
		"lightgbm/lleaves_NYC_taxi/model.txt":   "leaf tables",
		"xgboost/gen_regression_nan/model.json": "heap walk",
	} {
		data := readFixture(t, path)
		ens, err := Parse(DetectFormat(path, data), data)
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewModel(ens, Options{Backend: BackendC})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Traversal(); got != want {
			t.Errorf("%s: traversal %q, want %q", path, got, want)
		}
		m.Close()
		g, err := NewModel(ens, Options{Backend: BackendGo})
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Traversal(); got != "" {
			t.Errorf("%s on the Go scorer: traversal %q, want none", path, got)
		}
		g.Close()
	}
	// A 5,000-tree model (the demo model's trees 50 times over, the noisy-neighbor
	// scenario's "flooded"): its table build tests ~70M (step, bin) pairs, once past the
	// build-work bound (2^26), which left it to the walks at 20x the cost.
	demo, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	big, err := ParseLightGBM(repeatTrees(t, demo, 50))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := NewModel(big, Options{Backend: BackendC}); err != nil {
		t.Fatal(err)
	} else {
		if got := m.Traversal(); big.NumTrees() != 5000 || got != "leaf tables" {
			t.Errorf("demo model x50 (%d trees): traversal %q, want leaf tables", big.NumTrees(), got)
		}
		m.Close()
	}
	// Two splits on one feature with different missing types: the generic walk, and why.
	ens := &Ensemble{
		Semantics: SemanticsLightGBM, NumFeatures: 1, NumOutputs: 1, BaseScore: []float64{0},
		NodeStart: []int32{0, 1, 2}, LeafStart: []int32{0, 2, 4}, TreeOutput: []int32{0, 0},
		Feature: []int32{0, 0}, Threshold: []float64{1, 2},
		Flags: []uint8{MakeFlags(false, true, MissingNaN), MakeFlags(false, true, MissingZero)},
		Left:  []int32{-1, -1}, Right: []int32{-2, -2}, CatSet: []int32{-1, -1}, LeafValue: []float64{1, 2, 3, 4},
	}
	m, err := NewModel(ens, Options{Backend: BackendC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, want := m.Traversal(), "generic (feature 0 mixes missing types)"; got != want {
		t.Errorf("traversal %q, want %q", got, want)
	}
}

// TestBackground: the background threads run at nice 19, give bit-identical results
// (both row types, raw and transformed, one batch and a batch split over threads), check
// shapes like the foreground calls, and withdraw a batch that no thread starts in time.
func TestBackground(t *testing.T) {
	prio, ok := StartBackground(2)
	if !ok || (runtime.GOOS == "linux" && !strings.HasPrefix(prio, "nice 19")) {
		t.Fatalf("StartBackground: %q, %v; want nice 19", prio, ok)
	}
	if n := niceThreads(t); runtime.GOOS == "linux" && n < 1 {
		t.Errorf("%d threads of this process run at nice 19, want the pool's", n)
	}
	const path = "lightgbm/lleaves_NYC_taxi/model.txt"
	data := readFixture(t, path)
	ens, err := Parse(DetectFormat(path, data), data)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 700
	rows := randomRows(rng, ens, n)
	rows32 := make([]float32, len(rows))
	for i, v := range rows {
		rows32[i] = float32(v)
	}
	for _, threads := range []int{1, 3} {
		m, err := NewModel(ens, Options{Backend: BackendC, Threads: threads, MinRowsPerThread: 100})
		if err != nil {
			t.Fatal(err)
		}
		if !m.CanBackground() {
			t.Fatal("the C++ core cannot score in the background")
		}
		for _, raw := range []bool{true, false} {
			want, got := make([]float64, n), make([]float64, n)
			if err := m.PredictF64(rows, n, want, raw); err != nil {
				t.Fatal(err)
			}
			cpu, err := m.PredictF64Background(rows, n, got, raw, time.Second)
			if err != nil || cpu <= 0 {
				t.Fatalf("PredictF64Background: cpu %v, %v", cpu, err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("threads %d raw %v: f64 row %d: background %v, foreground %v", threads, raw, i, got[i], want[i])
			}
			if err := m.PredictF32(rows32, n, want, raw); err != nil {
				t.Fatal(err)
			}
			if _, err := m.PredictF32Background(rows32, n, got, raw, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("threads %d raw %v: f32 row %d: background %v, foreground %v", threads, raw, i, got[i], want[i])
			}
		}
		if _, err := m.PredictF64Background(rows[:ens.NumFeatures+1], 2, make([]float64, 2), true, 0); !errors.Is(err, ErrFeatureCount) {
			t.Errorf("wrong shape: %v, want ErrFeatureCount", err)
		}
		m.Close()
	}

	m, err := NewModel(ens, Options{Backend: BackendC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pauseBackground(true)
	out := make([]float64, n)
	_, err = m.PredictF64Background(rows, n, out, true, time.Millisecond)
	pauseBackground(false)
	if !errors.Is(err, ErrBackgroundTimeout) || !strings.Contains(err.Error(), "no background thread started") {
		t.Errorf("paused pool: %v, want ErrBackgroundTimeout", err)
	}
	if out[0] != 0 {
		t.Errorf("a withdrawn batch was scored")
	}

	g, err := NewModel(ens, Options{Backend: BackendGo})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.PredictF64Background(rows, n, out, true, 0); g.CanBackground() || !errors.Is(err, ErrNoBackground) {
		t.Errorf("Go scorer: CanBackground %v, %v; want false, ErrNoBackground", g.CanBackground(), err)
	}
}

// niceThreads counts this process's threads whose nice value (field 19 of
// /proc/self/task/TID/stat) is 19.
func niceThreads(t *testing.T) int {
	if runtime.GOOS != "linux" {
		return 0
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread exited
		}
		// Fields after the command name (which may hold spaces) start at field 3.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 16 && f[16] == "19" {
			n++
		}
	}
	return n
}

// repeatTrees returns a LightGBM text model with every tree of model k times over,
// renumbered (scripts/ci/loadtest.sh noisy-models does the same with awk); tree_sizes is
// dropped, as it would no longer match.
func repeatTrees(t testing.TB, model []byte, k int) []byte {
	text := string(model)
	start := strings.Index(text, "\nTree=")
	end := strings.Index(text, "end of trees")
	if start < 0 || end < start {
		t.Fatal("no trees in the model text")
	}
	var trees []string
	for _, block := range strings.Split(text[start+1:end], "Tree=")[1:] {
		trees = append(trees, block[strings.IndexByte(block, '\n')+1:])
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(text[:start+1], "\n") {
		if !strings.HasPrefix(line, "tree_sizes=") {
			b.WriteString(line)
		}
	}
	for r := range k {
		for i, body := range trees {
			fmt.Fprintf(&b, "Tree=%d\n%s", r*len(trees)+i, body)
		}
	}
	b.WriteString(text[end:])
	return []byte(b.String())
}
