package shadow

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/predictd/predictd/engine"
)

// TestRealModel mirrors the bundled demo model (LightGBM, C++ core or pure Go) to itself
// scored by the pure-Go backend: the primary's answers are the same with and without the
// shadow, and the shadow agrees with it.
func TestRealModel(t *testing.T) {
	const path = "../../examples/models/claims/1/model.txt"
	primary, err := engine.LoadFile(path, "", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	goModel, err := engine.LoadFile(path, "", engine.Options{Backend: engine.BackendGo})
	if err != nil {
		t.Fatal(err)
	}
	defer goModel.Close()

	nf := primary.NumFeatures()
	rng := rand.New(rand.NewPCG(11, 12))
	requests := make([][]float64, 200)
	for i := range requests {
		rows := make([]float64, (1+rng.IntN(50))*nf)
		for j := range rows {
			switch f := j % nf; {
			case f < 5: // categorical codes
				rows[j] = float64(rng.IntN(12))
			case rng.IntN(20) == 0:
				rows[j] = math.NaN()
			default:
				rows[j] = rng.Float64() * 200
			}
		}
		requests[i] = rows
	}
	answer := func(m *Mirror, shadows []*Shadow) [][]float64 {
		var out [][]float64
		buf := make([]float64, 50)
		for _, rows := range requests {
			n := len(rows) / nf
			if err := primary.PredictF64(rows, n, buf[:n], false); err != nil {
				t.Fatal(err)
			}
			out = append(out, slices.Clone(buf[:n]))
			if m != nil {
				m.Submit(shadows, Request{Rows: rows, NumRows: n, NumFeatures: nf, Scores: buf[:n], Outputs: 1})
			}
		}
		return out
	}
	want := answer(nil, nil)
	m := testMirror(t, Config{Workers: 2, Queue: len(requests)})
	s := addShadow(t, m, ShadowConfig{Name: "claims-go", PrimaryPredictor: primary, Predictor: goModel})
	got := answer(m, []*Shadow{s})
	m.Close()
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("request %d: answers differ with a shadow attached", i)
		}
	}
	st := s.Stats()
	if st.Requests != uint64(len(requests)) || st.Errors != 0 {
		t.Fatalf("%+v", st)
	}
	// Both backends follow LightGBM's float64 rules; they may differ only in the last bits
	// of the sum.
	if st.MaxAbsDiff > 1e-12 || st.RankCorr < 0.999 || st.TopKOverlap != 1 {
		t.Fatalf("backends disagree: %+v", st)
	}
	t.Logf("%s vs go backend: %+v", primary.BackendName(), st)
}

// TestShadowRecodesCategories: a shadow retrained on data with its categories numbered
// anew (pandas numbers a column's categories in sorted order, so a new one shifts the
// rest) gets the primary's codes turned into its own through the labels both name; a
// category the shadow does not name is missing for it.
func TestShadowRecodesCategories(t *testing.T) {
	// One categorical split: category set {code of "c"} goes left to leaf 1.
	model := func(labels []string, setCode int) *engine.Model {
		t.Helper()
		ens := &engine.Ensemble{Semantics: engine.SemanticsLightGBM, NumFeatures: 1, NumOutputs: 1,
			FeatureNames: []string{"region"}, BaseScore: []float64{0},
			Objective: engine.Objective{Name: "regression", Transform: engine.TransformIdentity, NumIterations: 1},
			NodeStart: []int32{0, 1}, LeafStart: []int32{0, 2}, TreeOutput: []int32{0},
			Feature: []int32{0}, Threshold: []float64{0}, Flags: []uint8{engine.MakeFlags(true, false, engine.MissingNaN)},
			Left: []int32{^0}, Right: []int32{^1}, CatSet: []int32{0},
			LeafValue: []float64{1, 0}, CatStart: []int32{0, 1}, CatBits: []uint32{1 << setCode},
			CategoryNames: [][]string{labels}}
		m, err := engine.NewModel(ens, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	primary := model([]string{"a", "b", "c"}, 2)     // "c" is code 2
	retrained := model([]string{"c", "a", "d"}, 0)   // "c" is code 0; "b" is gone
	unnamed := model(nil, 0)                         // no names: codes pass as they are
	rows := []float64{0, 1, 2, math.NaN(), -1, 7, 2} // a, b, c, missing, negative, unseen, c
	n := len(rows)
	scores := make([]float64, n)
	if err := primary.PredictF64(rows, n, scores, false); err != nil {
		t.Fatal(err)
	}
	m := testMirror(t, Config{Workers: 1, Queue: 4})
	rec := addShadow(t, m, ShadowConfig{Name: "retrained", PrimaryPredictor: primary, Predictor: retrained})
	raw := addShadow(t, m, ShadowConfig{Name: "unnamed", PrimaryPredictor: primary, Predictor: unnamed})
	m.Submit([]*Shadow{rec, raw}, Request{Rows: rows, NumRows: n, NumFeatures: 1, Scores: scores, Outputs: 1})
	m.Close()
	// Recoded, the retrained shadow scores every row as the primary does ("b", which it
	// lacks, is missing and goes right, as "b" does in the primary).
	if st := rec.Stats(); st.Requests != 1 || st.Errors != 0 || st.MaxAbsDiff != 0 {
		t.Errorf("recoded shadow: %+v", st)
	}
	// Without names, code 2 is not the shadow's "c": rows 2 and 6 disagree, and code 0 does.
	if st := raw.Stats(); st.Requests != 1 || st.MaxAbsDiff != 1 {
		t.Errorf("shadow without names: max_abs_diff %v, want 1 (%+v)", st.MaxAbsDiff, st)
	}
}
