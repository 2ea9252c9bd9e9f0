package engine

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// objLGB is a hand-made LightGBM model of one feature and two trees whose raw score is, for
// x = -3, -0.5, 0, 1, 5, NaN (scored as 0): -33, -2.375, -2.375, 0.875, 4.125, -2.375.
// With two classes (objLGBMulti) the same two trees are class 0 and class 1 of one
// iteration, and a second iteration adds 1 to class 0 and -0.5 to class 1.
const objLGBTrees = `Tree=0
num_leaves=3
num_cat=0
split_feature=0 0
threshold=0 2
decision_type=2 2
left_child=-1 -2
right_child=1 -3
leaf_value=-2.5 0.75 4
shrinkage=1

Tree=1
num_leaves=2
num_cat=0
split_feature=0
threshold=-1
decision_type=2
left_child=-1
right_child=-2
leaf_value=-30.5 0.125
shrinkage=1

`

func objLGB(objective string, classes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tree\nversion=v4\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=0\n", classes, classes)
	if objective != "" {
		fmt.Fprintf(&b, "objective=%s\n", objective)
	}
	b.WriteString("feature_names=x\nfeature_infos=[-3:5]\n\n")
	b.WriteString(objLGBTrees)
	if classes == 2 {
		b.WriteString("Tree=2\nnum_leaves=1\nnum_cat=0\nleaf_value=1\nshrinkage=1\n\nTree=3\nnum_leaves=1\nnum_cat=0\nleaf_value=-0.5\nshrinkage=1\n\n")
	}
	b.WriteString("end of trees\n\nparameters:\nend of parameters\n\npandas_categorical:null\n")
	return b.String()
}

var objLGBRows = []float64{-3, -0.5, 0, 1, 5, math.NaN()}

// TestLightGBMObjectiveTransforms: every objective LightGBM ships gives the output of its
// ConvertOutput (regression_objective.hpp, binary_objective.hpp, multiclass_objective.hpp,
// xentropy_objective.hpp, rank_objective.hpp), written here independently of transform.go
// and checked within 1e-12 relative (the LightGBM tolerance is 1e-8), on every backend.
func TestLightGBMObjectiveTransforms(t *testing.T) {
	ident := func(x float64) float64 { return x }
	signSq := func(x float64) float64 { return math.Copysign(x*x, x) }
	sig := func(k float64) func(float64) float64 {
		return func(x float64) float64 { return 1 / (1 + math.Exp(-k*x)) }
	}
	softplus := func(x float64) float64 { return math.Log1p(math.Exp(x)) }
	for _, tc := range []struct {
		objective string
		f         func(float64) float64
	}{
		{"", ident}, // no objective line: a custom objective
		{"custom", ident},
		{"none", ident},
		{"regression", ident},
		{"regression sqrt", signSq},
		{"regression_l1", ident},
		{"regression_l1 sqrt", signSq},
		{"quantile", ident},
		{"quantile sqrt", signSq},
		{"fair", ident},
		{"fair sqrt", signSq},
		{"mape", ident},
		{"mape sqrt", signSq},
		{"huber", ident},
		{"huber sqrt", ident}, // RegressionHuberLoss turns sqrt off
		{"poisson", math.Exp},
		{"gamma", math.Exp},
		{"tweedie", math.Exp},
		{"binary sigmoid:1", sig(1)},
		{"binary sigmoid:2.5", sig(2.5)},
		{"cross_entropy", sig(1)},
		{"xentropy", sig(1)},
		{"cross_entropy_lambda", softplus},
		{"xentlambda", softplus},
		{"lambdarank", ident},
		{"rank_xendcg", ident},
	} {
		t.Run(tc.objective, func(t *testing.T) {
			checkLGBObjective(t, objLGB(tc.objective, 1), 1, []float64{-33, -2.375, -2.375, 0.875, 4.125, -2.375},
				func(raw []float64) []float64 { return []float64{tc.f(raw[0])} })
		})
	}
	rawMulti := []float64{-1.5, -31, -1.5, -0.375, -1.5, -0.375, 1.75, -0.375, 5, -0.375, -1.5, -0.375}
	t.Run("multiclass", func(t *testing.T) {
		checkLGBObjective(t, objLGB("multiclass num_class:2", 2), 2, rawMulti, func(raw []float64) []float64 {
			a, b := math.Exp(raw[0]), math.Exp(raw[1])
			return []float64{a / (a + b), b / (a + b)}
		})
	})
	t.Run("multiclassova", func(t *testing.T) {
		checkLGBObjective(t, objLGB("multiclassova num_class:2 sigmoid:1.5", 2), 2, rawMulti, func(raw []float64) []float64 {
			return []float64{sig(1.5)(raw[0]), sig(1.5)(raw[1])}
		})
	})
}

func checkLGBObjective(t *testing.T, text string, k int, wantRaw []float64, convert func(raw []float64) []float64) {
	t.Helper()
	ens, err := Parse(FormatLightGBM, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	n := len(objLGBRows)
	for _, b := range testBackends() {
		m, err := NewModel(ens, Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		name := m.BackendName()
		raw, tr := make([]float64, n*k), make([]float64, n*k)
		if err := m.PredictF64(objLGBRows, n, raw, true); err != nil {
			t.Fatal(err)
		}
		if err := m.PredictF64(objLGBRows, n, tr, false); err != nil {
			t.Fatal(err)
		}
		m.Close()
		for i := range raw {
			if raw[i] != wantRaw[i] {
				t.Fatalf("%s: raw[%d] = %v, want %v (all %v)", name, i, raw[i], wantRaw[i], raw)
			}
		}
		for r := 0; r < n; r++ {
			want := convert(raw[r*k : r*k+k])
			for c, w := range want {
				if g := tr[r*k+c]; math.Abs(g-w) > 1e-12*max(1, math.Abs(w)) {
					t.Errorf("%s: row %d (raw %v) output %d: got %.17g, want %.17g", name, r, raw[r*k:r*k+k], c, g, w)
				}
			}
		}
	}
}
