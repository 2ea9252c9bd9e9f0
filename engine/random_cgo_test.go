//go:build cgo

package engine

import (
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Generated models: the shapes users bring, beyond the fixtures. Each is scored by every
// kernel of the C++ core at batch sizes on both sides of every layout's threshold (the
// partition walk starts at 16, 64 or 128 rows, blocks hold up to 1,024) and compared
// bit for bit with the Go scorer, an implementation of its own.

// genShape describes a generated model.
type genShape struct {
	name     string
	sem      Semantics
	features int
	trees    int
	outputs  int
	leaves   int     // leaves per tree, at most (each tree draws 1..leaves, a few exactly leaves)
	shape    string  // "random" (a random leaf split each step), "chain" (the deepest leaf), "balanced"
	catFrac  float64 // share of features that are categorical
	maxCat   int     // largest category id + 1 a categorical feature splits on
	thrPool  int     // distinct thresholds per numerical feature
	generic  string  // past the fast path's limits: the reason the core gives; "": fast
}

var genShapes = []genShape{
	{"lgb ranker 255 leaves", SemanticsLightGBM, 160, 40, 1, 255, "random", 0.05, 5000, 255, ""},
	{"lgb deep chain", SemanticsLightGBM, 40, 12, 1, 1023, "chain", 0, 0, 64, ""},
	{"lgb 1023 leaves", SemanticsLightGBM, 60, 6, 1, 1023, "random", 0.1, 300, 1000, ""},
	{"lgb wide 4000 features", SemanticsLightGBM, 4000, 60, 1, 63, "random", 0.02, 100, 32, ""},
	{"lgb categories to 65,000", SemanticsLightGBM, 12, 20, 1, 31, "random", 0.5, 65000, 16, ""},
	{"lgb multiclass small trees", SemanticsLightGBM, 30, 45, 3, 16, "random", 0.2, 40, 255, ""},
	{"lgb many thresholds", SemanticsLightGBM, 8, 60, 1, 255, "random", 0, 0, 20000, ""},
	{"lgb past the thresholds limit", SemanticsLightGBM, 2, 2000, 1, 255, "random", 0, 0, 60000, "too many distinct thresholds"},
	{"xgb depth 12", SemanticsXGBoost, 50, 30, 1, 4096, "balanced", 0, 0, 255, ""},
	{"xgb categorical", SemanticsXGBoost, 40, 40, 1, 255, "random", 0.2, 2000, 255, ""},
	{"xgb deep chain", SemanticsXGBoost, 20, 8, 1, 600, "chain", 0.1, 50, 64, ""},
	{"xgb wide 3000 features", SemanticsXGBoost, 3000, 40, 2, 127, "random", 0.01, 64, 64, ""},
}

// genFeature is how a generated feature splits.
type genFeature struct {
	cat     bool
	missing MissingType // LightGBM: one per feature, as LightGBM writes them
	maxCat  int
	thr     []float64
}

func genEnsemble(rng *rand.Rand, s genShape) *Ensemble {
	e := &Ensemble{Semantics: s.sem, NumFeatures: s.features, NumOutputs: s.outputs}
	for f := range s.features {
		e.FeatureNames = append(e.FeatureNames, "f"+strconv.Itoa(f))
	}
	e.BaseScore = make([]float64, s.outputs)
	e.Objective = Objective{Name: "regression", Transform: TransformIdentity}
	if s.sem == SemanticsXGBoost {
		e.Objective.Name = "reg:squarederror"
		for k := range e.BaseScore {
			e.BaseScore[k] = float64(float32(rng.NormFloat64()))
		}
	}
	round := func(x float64) float64 {
		if s.sem == SemanticsXGBoost {
			return float64(float32(x))
		}
		return x
	}
	feats := make([]genFeature, s.features)
	for f := range feats {
		g := &feats[f]
		if rng.Float64() < s.catFrac && s.maxCat > 0 {
			g.cat, g.maxCat = true, 1+rng.IntN(s.maxCat)
			if rng.IntN(3) == 0 {
				g.maxCat = s.maxCat // some at the shape's limit
			}
		} else {
			n := 1 + rng.IntN(s.thrPool)
			if rng.IntN(3) == 0 || s.generic != "" {
				n = s.thrPool
			}
			for range n {
				var t float64
				switch rng.IntN(6) {
				case 0:
					t = float64(rng.IntN(100) - 20) // integer-valued features
				case 1:
					t = []float64{0, ZeroThreshold, -ZeroThreshold, 1e-35, 0.5}[rng.IntN(5)]
				default:
					t = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3))
				}
				g.thr = append(g.thr, round(t))
			}
		}
		if s.sem == SemanticsLightGBM {
			g.missing = MissingType(rng.IntN(3))
		} else {
			g.missing = MissingNaN
		}
	}
	e.NodeStart, e.LeafStart, e.CatStart = []int32{0}, []int32{0}, []int32{0}
	type node struct {
		leaf        bool
		left, right *node
		f           int
	}
	for t := range s.trees {
		nleaves := 1 + rng.IntN(s.leaves)
		if rng.IntN(4) == 0 {
			nleaves = s.leaves
		}
		root := &node{leaf: true}
		leaves := []*node{root}
		for len(leaves) < nleaves {
			var i int
			switch s.shape {
			case "chain":
				i = len(leaves) - 1
			case "balanced":
				i = 0
			default:
				i = rng.IntN(len(leaves))
			}
			n := leaves[i]
			n.leaf, n.f = false, rng.IntN(s.features)
			n.left, n.right = &node{leaf: true}, &node{leaf: true}
			leaves = append(append(leaves[:i:i], leaves[i+1:]...), n.left, n.right)
		}
		// Serialize depth first: internal nodes and leaves numbered in visit order.
		n0 := int32(len(e.Feature))
		l0 := int32(len(e.LeafValue))
		var emit func(n *node) int32
		emit = func(n *node) int32 {
			if n.leaf {
				e.LeafValue = append(e.LeafValue, round(rng.NormFloat64()))
				return ^(int32(len(e.LeafValue)) - 1 - l0)
			}
			id := int32(len(e.Feature))
			g := &feats[n.f]
			e.Feature = append(e.Feature, int32(n.f))
			e.Left, e.Right = append(e.Left, 0), append(e.Right, 0)
			dl := rng.IntN(2) == 0
			if g.cat {
				// A set of categories below g.maxCat: a few, or many.
				k := 1 + rng.IntN(min(g.maxCat, 8))
				if rng.IntN(4) == 0 {
					k = 1 + rng.IntN(g.maxCat)
				}
				words := make([]uint32, (g.maxCat+31)/32)
				top := 0
				for range k {
					c := rng.IntN(g.maxCat)
					words[c/32] |= 1 << (c % 32)
					top = max(top, c)
				}
				words = words[:top/32+1]
				e.CatSet = append(e.CatSet, int32(len(e.CatStart)-1))
				e.CatBits = append(e.CatBits, words...)
				e.CatStart = append(e.CatStart, int32(len(e.CatBits)))
				e.Threshold = append(e.Threshold, 0)
				e.Flags = append(e.Flags, MakeFlags(true, dl, g.missing))
			} else {
				e.CatSet = append(e.CatSet, -1)
				e.Threshold = append(e.Threshold, g.thr[rng.IntN(len(g.thr))])
				e.Flags = append(e.Flags, MakeFlags(false, dl, g.missing))
			}
			l := emit(n.left)
			r := emit(n.right)
			e.Left[id], e.Right[id] = l, r
			return id - n0
		}
		emit(root)
		e.NodeStart = append(e.NodeStart, int32(len(e.Feature)))
		e.LeafStart = append(e.LeafStart, int32(len(e.LeafValue)))
		e.TreeOutput = append(e.TreeOutput, int32(t%s.outputs))
	}
	if len(e.CatBits) == 0 {
		e.CatStart, e.CatBits = nil, nil
	}
	e.Objective.NumIterations = s.trees / s.outputs
	return e
}

// genRows draws rows around the model's own thresholds (on them, a float64 and a
// float32 ulp either side), categories across each feature's range (fractional, negative
// and past the largest among them), NaN, ±Inf and the zero boundary.
func genRows(rng *rand.Rand, e *Ensemble, nrows int) []float64 {
	nf := e.NumFeatures
	thr := make([][]float64, nf)
	maxCat := make([]int, nf)
	for i, f := range e.Feature {
		if e.Flags[i]&FlagCategorical != 0 {
			s := e.CatSet[i]
			maxCat[f] = max(maxCat[f], 32*int(e.CatStart[s+1]-e.CatStart[s]))
		} else {
			thr[f] = append(thr[f], e.Threshold[i])
		}
	}
	rows := make([]float64, nrows*nf)
	for i := range rows {
		f := i % nf
		switch p := rng.IntN(100); {
		case p < 6:
			rows[i] = math.NaN()
		case p < 8:
			rows[i] = math.Inf(1 - 2*rng.IntN(2))
		case p < 11:
			rows[i] = []float64{0, math.Copysign(0, -1), 1e-35, -1e-35, ZeroThreshold, -ZeroThreshold}[rng.IntN(6)]
		case maxCat[f] > 0:
			switch q := rng.IntN(20); {
			case q == 0:
				rows[i] = -float64(1 + rng.IntN(3))
			case q == 1:
				rows[i] = float64(maxCat[f] + rng.IntN(100))
			case q == 2:
				rows[i] = float64(rng.IntN(maxCat[f])) + 0.5
			default:
				rows[i] = float64(rng.IntN(maxCat[f]))
			}
		case len(thr[f]) > 0:
			rows[i] = nearThreshold(rng, thr[f])
		default:
			rows[i] = rng.NormFloat64() * 100
		}
	}
	return rows
}

// TestGeneratedModels: on every generated shape, every kernel of the C++ core at batch
// sizes 1 to 1,500, float64 and float32 rows, equals the Go scorer bit for bit, and the
// core scores each shape on its fast path (no generic walk).
//
// PREDICTD_GEN_SEEDS=N draws N models of each shape instead of one (a longer search).
func TestGeneratedModels(t *testing.T) {
	seeds := 1
	if v := os.Getenv("PREDICTD_GEN_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PREDICTD_GEN_SEEDS=%q: want a positive count", v)
		}
		seeds = n
	}
	for i, s := range genShapes {
		for seed := range seeds {
			name := s.name
			if seeds > 1 {
				name += " seed " + strconv.Itoa(seed)
			}
			t.Run(name, func(t *testing.T) { testGenerated(t, s, uint64(i)+100+uint64(seed)<<16) })
		}
	}
}

func testGenerated(t *testing.T, s genShape, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	ens := genEnsemble(rng, s)
	if err := ens.Validate(); err != nil {
		t.Fatalf("generated an invalid model: %v", err)
	}
	ref, err := NewModel(ens, Options{Backend: BackendGo})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	const maxRows = 1500
	rows := genRows(rng, ens, maxRows)
	rows32 := make([]float32, len(rows))
	for k, v := range rows {
		rows32[k] = float32(v)
	}
	nf, K := ens.NumFeatures, ens.NumOutputs
	want := make([]float64, maxRows*K)
	want32 := make([]float64, maxRows*K)
	if err := ref.PredictF64(rows, maxRows, want, true); err != nil {
		t.Fatal(err)
	}
	if err := ref.PredictF32(rows32, maxRows, want32, true); err != nil {
		t.Fatal(err)
	}
	kernels := []string{"generic", "scalar", "avx2", "avx512", "scalar-walk", "avx2-walk", "avx512-walk"}
	if s.generic != "" {
		kernels = kernels[:1] // every kernel takes the generic walk
	}
	for _, k := range kernels {
		sc, err := newCScorerKernel(ens, k)
		if err != nil {
			continue // this CPU lacks the kernel
		}
		if sc.fastPath() != (s.generic == "") || !strings.Contains(sc.traversal(), s.generic) {
			t.Errorf("%s: traversal %s, want the fast path unless %q", k, sc.traversal(), s.generic)
		}
		got := make([]float64, maxRows*K)
		for _, n := range []int{1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 700, 1025, maxRows} {
			// Score the last n rows, so batches do not all start at row 0.
			off := maxRows - n
			g := got[:n*K]
			if err := sc.predictF64(rows[off*nf:], n, g); err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(g, want[off*K:]); d >= 0 {
				t.Fatalf("%s, %d rows, f64: output %d (row %d) = %.17g, Go scorer %.17g (%s)",
					k, n, d, off+d/K, g[d], want[off*K+d], sc.traversal())
			}
			if err := sc.predictF32(rows32[off*nf:], n, g); err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(g, want32[off*K:]); d >= 0 {
				t.Fatalf("%s, %d rows, f32: output %d (row %d) = %.17g, Go scorer %.17g (%s)",
					k, n, d, off+d/K, g[d], want32[off*K+d], sc.traversal())
			}
		}
		sc.close()
	}
}
