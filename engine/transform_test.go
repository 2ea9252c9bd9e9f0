package engine

import (
	"math"
	"testing"
)

func TestTransform(t *testing.T) {
	f := func(name string, e *Ensemble, in []float64, nrows int, want []float64, tol float64) {
		t.Helper()
		out := append([]float64(nil), in...)
		e.transform(out, nrows)
		for i, w := range want {
			if math.Abs(out[i]-w) > tol || math.IsNaN(out[i]) {
				t.Fatalf("%s: out[%d] = %.17g, want %.17g (all: %v)", name, i, out[i], w, out[:len(want)])
			}
		}
	}
	ens := func(sem Semantics, k int, tr TransformKind) *Ensemble {
		return &Ensemble{Semantics: sem, NumOutputs: k, Objective: Objective{Transform: tr, SigmoidK: 1, NumIterations: 1}}
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

	f("lgb identity", ens(SemanticsLightGBM, 1, TransformIdentity), []float64{1.5, -2}, 2, []float64{1.5, -2}, 0)
	f("lgb sigmoid", ens(SemanticsLightGBM, 1, TransformSigmoid), []float64{0, 2, -800}, 3, []float64{0.5, sig(2), 0}, 0)
	e := ens(SemanticsLightGBM, 1, TransformSigmoid)
	e.Objective.SigmoidK = 2
	f("lgb sigmoid:2", e, []float64{1}, 1, []float64{sig(2)}, 0)
	f("lgb exp", ens(SemanticsLightGBM, 1, TransformExp), []float64{0, 1}, 2, []float64{1, math.E}, 0)
	f("lgb ova", ens(SemanticsLightGBM, 2, TransformSigmoidOVA), []float64{0, 2}, 1, []float64{0.5, sig(2)}, 0)
	s := math.Exp(1) + math.Exp(2) + math.Exp(3)
	f("lgb softmax", ens(SemanticsLightGBM, 3, TransformSoftmax), []float64{1, 2, 3, 1000, 1000, 1000}, 2,
		[]float64{math.Exp(1) / s, math.Exp(2) / s, math.Exp(3) / s, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-15)
	e = ens(SemanticsLightGBM, 1, TransformSigmoid)
	e.Objective.AverageOutput, e.Objective.NumIterations = true, 30
	f("lgb average_output", e, []float64{30}, 1, []float64{sig(1)}, 0)

	// XGBoost: float32 arithmetic; its sigmoid clamps -x at 88.7 so expf stays finite.
	f("xgb sigmoid", ens(SemanticsXGBoost, 1, TransformSigmoid), []float64{0, -200, 200}, 3, []float64{0.5, float64(1 / (float32(math.Exp(float64(float32(88.7)))) + 1)), 1}, 0)
	f("xgb exp", ens(SemanticsXGBoost, 1, TransformExp), []float64{1}, 1, []float64{float64(float32(math.E))}, 0)
	f("xgb softmax", ens(SemanticsXGBoost, 3, TransformSoftmax), []float64{1, 2, 3}, 1,
		[]float64{math.Exp(1) / s, math.Exp(2) / s, math.Exp(3) / s}, 1e-7)
	f("lgb sign square", ens(SemanticsLightGBM, 1, TransformSignSquare), []float64{-1.5, 0, 2, math.Inf(-1)}, 4, []float64{-2.25, 0, 4, math.Inf(-1)}, 0)
	f("lgb softplus", ens(SemanticsLightGBM, 1, TransformSoftplus), []float64{0, -800, 2}, 3, []float64{math.Ln2, 0, math.Log(1 + math.Exp(2))}, 0)
	// binary:hinge: 1 above 0; 0 at 0, below it and for NaN.
	f("xgb hinge", ens(SemanticsXGBoost, 1, TransformHinge), []float64{0.1, 0, -3, math.NaN(), 1e-30}, 5, []float64{1, 0, 0, 0, 1}, 0)
	// argmax compacts to one value per row; ties go to the first.
	f("argmax", ens(SemanticsXGBoost, 3, TransformArgmax), []float64{1, 5, 2, 7, 7, 0, -1, -2, -0.5}, 3, []float64{1, 0, 2}, 0)
	f("lgb argmax", ens(SemanticsLightGBM, 2, TransformArgmax), []float64{1, 5, 9, 2}, 2, []float64{1, 0}, 0)
}
