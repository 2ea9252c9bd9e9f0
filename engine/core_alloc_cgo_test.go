//go:build cgo && !race

package engine

import (
	"math/rand/v2"
	"testing"
)

// TestCoreZeroAllocs: a predict call through cgo allocates nothing in Go: rows, output and
// the error buffer are lent to C for the call only (#cgo noescape), one crossing per batch.
// It calls the scorer as Model does for a one-thread batch.
func TestCoreZeroAllocs(t *testing.T) {
	for _, path := range []string{"lightgbm/lleaves_airline/model.txt", "xgboost/gen_multiclass_softprob/model.json"} {
		format := FormatLightGBM
		if path[:3] == "xgb" {
			format = FormatXGBoost
		}
		ens, err := Parse(format, readFixture(t, path))
		if err != nil {
			t.Fatal(err)
		}
		sc, err := newCScorer(ens)
		if err != nil {
			t.Fatal(err)
		}
		for _, nrows := range []int{1, 100} {
			rows := randomRows(rand.New(rand.NewPCG(1, 2)), ens, nrows)
			rows32 := make([]float32, len(rows))
			for i, v := range rows {
				rows32[i] = float32(v)
			}
			out := make([]float64, nrows*ens.NumOutputs)
			if n := testing.AllocsPerRun(100, func() {
				if err := sc.predictF64(rows, nrows, out); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%s: PredictF64 of %d rows: %v allocations per call, want 0", path, nrows, n)
			}
			if n := testing.AllocsPerRun(100, func() {
				if err := sc.predictF32(rows32, nrows, out); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("%s: PredictF32 of %d rows: %v allocations per call, want 0", path, nrows, n)
			}
		}
		sc.close()
	}
}
