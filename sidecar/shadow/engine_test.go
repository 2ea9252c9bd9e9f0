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
