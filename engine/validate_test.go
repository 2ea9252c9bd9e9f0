package engine

import (
	"math"
	"strings"
	"testing"
)

// validTwoTrees is a small valid ensemble: tree 0 has two internal nodes, tree 1 is a
// single leaf.
func validTwoTrees() *Ensemble {
	return &Ensemble{
		Semantics:    SemanticsLightGBM,
		NumFeatures:  2,
		NumOutputs:   1,
		FeatureNames: []string{"a", "b"},
		Objective:    Objective{Name: "regression", SigmoidK: 1, NumIterations: 2},
		BaseScore:    []float64{0},
		NodeStart:    []int32{0, 2, 2},
		LeafStart:    []int32{0, 3, 4},
		TreeOutput:   []int32{0, 0},
		Feature:      []int32{0, 1},
		Threshold:    []float64{0.5, 1.5},
		Flags:        []uint8{MakeFlags(false, true, MissingNone), MakeFlags(false, false, MissingNaN)},
		Left:         []int32{1, ^int32(0)},
		Right:        []int32{^int32(2), ^int32(1)},
		CatSet:       []int32{-1, -1},
		LeafValue:    []float64{1, 2, 3, 10},
	}
}

func TestValidate(t *testing.T) {
	if err := validTwoTrees().Validate(); err != nil {
		t.Fatalf("valid ensemble: %v", err)
	}
	f := func(name string, mutate func(e *Ensemble), wantErr string) {
		t.Helper()
		e := validTwoTrees()
		mutate(e)
		err := e.Validate()
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s: error %q does not mention %q", name, err, wantErr)
		}
	}
	f("no features", func(e *Ensemble) { e.NumFeatures = 0 }, "0 features")
	f("huge features", func(e *Ensemble) { e.NumFeatures = 1 << 30 }, "1073741824 features")
	f("huge outputs", func(e *Ensemble) { e.NumOutputs = 1 << 20 }, "1048576 outputs")
	f("names", func(e *Ensemble) { e.FeatureNames = e.FeatureNames[:1] }, "1 feature names for 2 features")
	f("base", func(e *Ensemble) { e.BaseScore = nil }, "0 base scores")
	f("NaN base", func(e *Ensemble) { e.BaseScore[0] = math.NaN() }, "base score of output 0 is NaN")
	f("semantics", func(e *Ensemble) { e.Semantics = 7 }, "unknown semantics 7")
	f("transform", func(e *Ensemble) { e.Objective.Transform = 99 }, "unknown transform 99")
	f("softmax one output", func(e *Ensemble) { e.Objective.Transform = TransformSoftmax }, "softmax over 1 output")
	f("sigmoid slope", func(e *Ensemble) { e.Objective.Transform, e.Objective.SigmoidK = TransformSigmoid, math.Inf(1) }, "sigmoid slope")
	f("tree table", func(e *Ensemble) { e.LeafStart = e.LeafStart[:2] }, "NodeStart has 3 entries, LeafStart 2")
	f("tree output", func(e *Ensemble) { e.TreeOutput[1] = 1 }, "tree 1: output 1 out of range")
	f("tree output len", func(e *Ensemble) { e.TreeOutput = e.TreeOutput[:1] }, "TreeOutput has 1 entries for 2 trees")
	f("weights len", func(e *Ensemble) { e.TreeWeight = []float64{1} }, "TreeWeight has 1 entries for 2 trees")
	f("weight inf", func(e *Ensemble) { e.TreeWeight = []float64{1, math.Inf(-1)} }, "tree 1: weight -Inf is not finite")
	f("leaf NaN", func(e *Ensemble) { e.LeafValue[2] = math.NaN() }, "tree 0: leaf 2 value NaN")
	f("threshold NaN", func(e *Ensemble) { e.Threshold[1] = math.NaN() }, "tree 0: node 1: threshold is NaN")
	f("feature range", func(e *Ensemble) { e.Feature[1] = 2 }, "tree 0: node 1: feature 2 out of range")
	f("flags", func(e *Ensemble) { e.Flags[0] = 0x40 }, "unknown flag bits 0x40")
	f("array lengths", func(e *Ensemble) { e.Right = e.Right[:1] }, "Right has 1 entries, Feature has 2")
	f("last tree end", func(e *Ensemble) { e.LeafValue = append(e.LeafValue, 5) }, "the last tree ends at node 2, leaf 4")
	f("leaf count", func(e *Ensemble) { e.LeafStart = []int32{0, 2, 4} }, "tree 0: 2 internal nodes need 3 leaves, has 2")
	f("child range", func(e *Ensemble) { e.Left[0] = 2 }, "tree 0: node 0: left child 2 out of range (2 internal nodes)")
	f("leaf range", func(e *Ensemble) { e.Right[1] = ^int32(3) }, "tree 0: node 1: right child leaf 3 out of range (3 leaves)")
	f("cycle", func(e *Ensemble) { e.Left[1] = 0 }, "left child 0 is reached twice")
	f("self loop", func(e *Ensemble) { e.Left[0] = 0 }, "left child 0 is reached twice")
	f("shared leaf", func(e *Ensemble) { e.Right[1] = ^int32(0) }, "reached twice")
	f("categorical no set", func(e *Ensemble) { e.Flags[0] |= FlagCategorical }, "categorical set -1 out of range (0 sets)")
	f("categorical nil CatSet", func(e *Ensemble) { e.Flags[0] |= FlagCategorical; e.CatSet = nil }, "no CatSet")
	f("cat sets", func(e *Ensemble) { e.CatStart = []int32{0, 3}; e.CatBits = []uint32{1} }, "categorical sets span words 0..3 of 1")
	f("cat decreasing", func(e *Ensemble) { e.CatStart = []int32{0, 2, 1, 2}; e.CatBits = []uint32{1, 2} }, "categorical set 1 ends (1) before it starts (2)")
	f("bits without sets", func(e *Ensemble) { e.CatBits = []uint32{1} }, "1 categorical words without CatStart")
	f("linear len", func(e *Ensemble) { e.LinearWeights = []float64{1}; e.LinearBias = []float64{0} }, "linear model has 1 weights")
	f("linear NaN", func(e *Ensemble) { e.LinearWeights = []float64{1, math.NaN()}; e.LinearBias = []float64{0} }, "linear weight of feature 1, output 0 is NaN")
	f("bias only", func(e *Ensemble) { e.LinearBias = []float64{0} }, "linear bias without linear weights")
	f("empty", func(e *Ensemble) {
		*e = Ensemble{NumFeatures: 1, NumOutputs: 1, FeatureNames: []string{"x"}, BaseScore: []float64{0}}
	}, "no trees and no linear model")
	f("average without iterations", func(e *Ensemble) { e.Objective.AverageOutput, e.Objective.NumIterations = true, 0 }, "average_output with 0 iterations")
}

// TestNewModelRejectsBadBackend: a name other than c or go is an error.
func TestNewModelRejectsBadBackend(t *testing.T) {
	if _, err := NewModel(validTwoTrees(), Options{Backend: "gpu"}); err == nil {
		t.Fatal("no error for backend gpu")
	}
}

func TestGoScorerHandBuilt(t *testing.T) {
	e := validTwoTrees()
	m, err := NewModel(e, Options{Backend: BackendGo})
	if err != nil {
		t.Fatal(err)
	}
	f := func(a, b float64, want float64) {
		t.Helper()
		out := []float64{0}
		if err := m.PredictF64([]float64{a, b}, 1, out, true); err != nil {
			t.Fatal(err)
		}
		if out[0] != want {
			t.Fatalf("(%v, %v): got %v, want %v", a, b, out[0], want)
		}
	}
	f(0, 0, 1+10)          // a <= 0.5 → node 1; b <= 1.5 → leaf 0
	f(0, 2, 2+10)          // b > 1.5 → leaf 1
	f(1, 0, 3+10)          // a > 0.5 → leaf 2
	f(math.NaN(), 9, 2+10) // node 0 missing None: NaN is 0.0 → left; node 1 b=9 → right
	f(0, math.NaN(), 2+10) // node 1 missing NaN, default right → leaf 1
	f(0.5, 1.5, 1+10)      // thresholds go left (<=)
}
