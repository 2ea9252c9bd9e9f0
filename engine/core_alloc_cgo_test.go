//go:build cgo && !race

package engine

import (
	"math/rand/v2"
	"testing"
)

// TestCoreZeroAllocs: a predict call through cgo allocates nothing in Go: rows, output and
// the error buffer are lent to C for the call only (#cgo noescape), one crossing per batch.
// Checked on the scorer and through Model.
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
	// Through Model (one thread, raw margins): the path the sidecar takes.
	ens, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/lleaves_airline/model.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(ens, Options{Backend: BackendC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rows := randomRows(rand.New(rand.NewPCG(1, 2)), ens, 100)
	out := make([]float64, 100)
	if n := testing.AllocsPerRun(100, func() {
		if err := m.PredictF64(rows, 100, out, true); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Model.PredictF64 with the C core: %v allocations per call, want 0", n)
	}
}
