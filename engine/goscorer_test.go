//go:build !race

package engine

import "testing"

// TestGoScorerZeroAllocs: the pure-Go scorer allocates nothing per call, for either input
// width and either library's semantics.
func TestGoScorerZeroAllocs(t *testing.T) {
	for _, mc := range []struct {
		path   string
		format Format
	}{
		{"lightgbm/lleaves_airline/model.txt", FormatLightGBM},
		{"xgboost/leaves_dermatology/model.json", FormatXGBoost},
		{"xgboost/leaves_gblinear_agaricus/model.json", FormatXGBoost},
	} {
		ens, err := Parse(mc.format, readFixture(t, mc.path))
		if err != nil {
			t.Fatal(err)
		}
		sc, err := newGoScorer(ens)
		if err != nil {
			t.Fatal(err)
		}
		const n = 64
		rows := make([]float64, n*ens.NumFeatures)
		rows32 := make([]float32, n*ens.NumFeatures)
		out := make([]float64, n*ens.NumOutputs)
		if a := testing.AllocsPerRun(20, func() { _ = sc.predictF64(rows, n, out) }); a != 0 {
			t.Errorf("%s: predictF64 allocates %v times per call", mc.path, a)
		}
		if a := testing.AllocsPerRun(20, func() { _ = sc.predictF32(rows32, n, out) }); a != 0 {
			t.Errorf("%s: predictF32 allocates %v times per call", mc.path, a)
		}
		if a := testing.AllocsPerRun(20, func() { ens.transform(out, n) }); a != 0 {
			t.Errorf("%s: transform allocates %v times per call", mc.path, a)
		}
	}
}
