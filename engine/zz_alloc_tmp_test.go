package engine

import "testing"

func TestZZAllocTmp(t *testing.T) {
	ens, _ := Parse(FormatLightGBM, readFixture(t, "lightgbm/lleaves_NYC_taxi/model.txt"))
	sc, _ := newGoScorer(ens)
	rows := make([]float64, 10*ens.NumFeatures)
	out := make([]float64, 10)
	t.Log("scorer", testing.AllocsPerRun(100, func() { sc.predictF64(rows, 10, out) }))
	m, _ := NewModel(ens, Options{Backend: BackendGo})
	t.Log("model", testing.AllocsPerRun(100, func() { m.PredictF64(rows, 10, out, false) }))
	m2, _ := NewModel(ens, Options{Backend: BackendGo, Threads: 4})
	t.Log("model4", testing.AllocsPerRun(100, func() { m2.PredictF64(rows, 10, out, false) }))
}
