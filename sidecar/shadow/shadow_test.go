package shadow

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/predlog"
)

// funcModel is an engine.Predictor whose scores come from a function of the row; the
// tests use it to build models with known outputs and shadows that are slow or broken.
type funcModel struct {
	names   []string
	outputs int
	score   func(row []float64, out []float64) error
}

func (m *funcModel) NumFeatures() int       { return len(m.names) }
func (m *funcModel) NumOutputs(bool) int    { return m.outputs }
func (m *funcModel) FeatureNames() []string { return m.names }
func (m *funcModel) Close() error           { return nil }
func (m *funcModel) Info() engine.Info      { return engine.Info{Backend: "test/func"} }
func (m *funcModel) PredictF32([]float32, int, []float64, bool) error {
	return errors.New("funcModel: float64 only")
}

func (m *funcModel) PredictF64(rows []float64, nrows int, out []float64, raw bool) error {
	nf := len(m.names)
	if len(rows) != nrows*nf || len(out) < nrows*m.outputs {
		return engine.ErrFeatureCount
	}
	for r := 0; r < nrows; r++ {
		if err := m.score(rows[r*nf:(r+1)*nf], out[r*m.outputs:(r+1)*m.outputs]); err != nil {
			return err
		}
	}
	return nil
}

var _ engine.Predictor = (*funcModel)(nil)

// linear is a primary model: a fixed weighted sum of the row.
func linear(names []string) *funcModel {
	return &funcModel{names: names, outputs: 1, score: func(row, out []float64) error {
		var s float64
		for i, v := range row {
			s += float64(i+1) * v
		}
		out[0] = s
		return nil
	}}
}

func testMirror(t testing.TB, cfg Config) *Mirror {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addShadow(t testing.TB, m *Mirror, cfg ShadowConfig) *Shadow {
	t.Helper()
	s, err := m.Add(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve plays the sidecar: it scores each request with the primary into reused buffers,
// records the answer, then mirrors the request. It returns every answer.
func serve(t testing.TB, m *Mirror, primary *funcModel, shadows []*Shadow, nreq int, submitTime *time.Duration) [][]float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	nf := primary.NumFeatures()
	rows, out := make([]float64, 32*nf), make([]float64, 32)
	var answers [][]float64
	for i := 0; i < nreq; i++ {
		nrows := 1 + rng.IntN(32)
		for j := range rows[:nrows*nf] {
			rows[j] = rng.NormFloat64()
		}
		if err := primary.PredictF64(rows[:nrows*nf], nrows, out[:nrows], false); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, slices.Clone(out[:nrows]))
		if m != nil {
			rowsBefore, outBefore := slices.Clone(rows[:nrows*nf]), slices.Clone(out[:nrows])
			start := time.Now()
			m.Submit(shadows, Request{RequestID: "r", Rows: rows[:nrows*nf], NumRows: nrows, NumFeatures: nf, Scores: out[:nrows], Outputs: 1})
			if submitTime != nil {
				*submitTime = max(*submitTime, time.Since(start))
			}
			if !slices.Equal(rowsBefore, rows[:nrows*nf]) || !slices.Equal(outBefore, out[:nrows]) {
				t.Fatalf("request %d: Submit changed the caller's rows or scores", i)
			}
		}
	}
	return answers
}

func TestPrimaryUnchangedByShadows(t *testing.T) {
	names := []string{"a", "b", "c"}
	primary := linear(names)
	want := serve(t, nil, primary, nil, 300, nil)

	m := testMirror(t, Config{Workers: 2})
	// A shadow that scribbles over the rows it is given: the caller's must not change.
	vandal := &funcModel{names: names, outputs: 1, score: func(row, out []float64) error {
		out[0] = row[0]
		for i := range row {
			row[i] = math.NaN()
		}
		return nil
	}}
	shadows := []*Shadow{
		addShadow(t, m, ShadowConfig{Name: "same", PrimaryPredictor: primary, Predictor: linear(names)}),
		addShadow(t, m, ShadowConfig{Name: "vandal", PrimaryPredictor: primary, Predictor: vandal}),
	}
	got := serve(t, m, primary, shadows, 300, nil)
	m.Close()
	if len(got) != len(want) {
		t.Fatalf("%d answers with shadows, %d without", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("answer %d differs with shadows: %v vs %v", i, got[i], want[i])
		}
	}
	st := shadows[0].Stats()
	if st.Requests+st.Dropped != 300 || st.Requests == 0 {
		t.Fatalf("same-model shadow: %+v; want 300 requests scored or dropped", st)
	}
	// The identical model agrees exactly.
	if st.MeanAbsDiff != 0 || st.MaxAbsDiff != 0 || (st.RankCorrCount > 0 && st.RankCorr != 1) || st.TopKOverlap != 1 {
		t.Fatalf("an identical shadow disagrees: %+v", st)
	}
}

// gated is a shadow that blocks in Predict until the gate opens, or fails or panics.
func gated(names []string, entered chan<- struct{}, gate <-chan struct{}, calls *atomic.Int64) *funcModel {
	return &funcModel{names: names, outputs: 1, score: func(row, out []float64) error {
		if calls.Add(1) == 1 {
			close(entered)
		}
		<-gate
		out[0] = row[0]
		return nil
	}}
}

func TestSlowShadowDoesNotDelayPrimary(t *testing.T) {
	names := []string{"a", "b"}
	primary := linear(names)
	want := serve(t, nil, primary, nil, 1000, nil)

	const queue = 2
	m := testMirror(t, Config{Workers: 1, Queue: queue})
	entered, gate := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := addShadow(t, m, ShadowConfig{Name: "slow", PrimaryPredictor: primary, Predictor: gated(names, entered, gate, &calls)})
	m.Submit([]*Shadow{s}, Request{Rows: []float64{1, 2}, NumRows: 1, NumFeatures: 2, Scores: []float64{5}, Outputs: 1})
	<-entered // the only worker is stuck in the shadow now

	var slowest time.Duration
	got := serve(t, m, primary, []*Shadow{s}, 1000, &slowest)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("answer %d differs while the shadow is stuck", i)
		}
	}
	st := s.Stats()
	if st.Dropped != 1000-queue {
		t.Fatalf("%+v: want %d dropped (all but the %d queued)", st, 1000-queue, queue)
	}
	t.Logf("slowest of 1000 Submit calls while the shadow is stuck: %v", slowest)
	close(gate)
	m.Close()
	if st := s.Stats(); st.Requests != queue+1 {
		t.Fatalf("%+v: want %d requests scored", st, queue+1)
	}
}

func TestFailingShadow(t *testing.T) {
	names := []string{"a", "b"}
	primary := linear(names)
	want := serve(t, nil, primary, nil, 200, nil)
	m := testMirror(t, Config{Workers: 1, Queue: 1000})
	failing := &funcModel{names: names, outputs: 1, score: func(row, out []float64) error {
		return errors.New("shadow broke")
	}}
	panicking := &funcModel{names: names, outputs: 1, score: func(row, out []float64) error {
		var nilMap map[string]int
		nilMap["x"]++
		return nil
	}}
	shadows := []*Shadow{
		addShadow(t, m, ShadowConfig{Name: "failing", PrimaryPredictor: primary, Predictor: failing}),
		addShadow(t, m, ShadowConfig{Name: "panicking", PrimaryPredictor: primary, Predictor: panicking}),
	}
	got := serve(t, m, primary, shadows, 200, nil)
	m.Close()
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("answer %d differs with failing shadows", i)
		}
	}
	for _, s := range shadows {
		st := s.Stats()
		if st.Errors != 200 || st.Requests != 0 || st.LastError == "" {
			t.Fatalf("%+v: want 200 errors and none scored", st)
		}
	}
	if msg := shadows[0].Stats().LastError; msg != "shadow broke" {
		t.Fatalf("last error %q", msg)
	}
	if msg := shadows[1].Stats().LastError; !strings.Contains(msg, "panic") {
		t.Fatalf("last error %q", msg)
	}
}

// TestAgreementStats checks the statistics against hand-computed values. Each row is
// [primary score, shadow score]: the primary model reads column p, the shadow column s.
func TestAgreementStats(t *testing.T) {
	primary := &funcModel{names: []string{"p", "s"}, outputs: 1, score: func(row, out []float64) error { out[0] = row[0]; return nil }}
	shadowModel := &funcModel{names: []string{"s"}, outputs: 1, score: func(row, out []float64) error { out[0] = row[0]; return nil }}
	m := testMirror(t, Config{Workers: 1, Queue: 10})
	s := addShadow(t, m, ShadowConfig{Name: "next", PrimaryPredictor: primary, Predictor: shadowModel, TopK: 3})
	submit := func(pairs ...float64) {
		n := len(pairs) / 2
		scores := make([]float64, n)
		if err := primary.PredictF64(pairs, n, scores, false); err != nil {
			t.Fatal(err)
		}
		if m.Submit([]*Shadow{s}, Request{Rows: pairs, NumRows: n, NumFeatures: 2, Scores: scores, Outputs: 1}) != 1 {
			t.Fatal("request dropped")
		}
	}
	// Request 1. |diffs| = .05 .1 .1 .5 .45. Primary top 3: rows 0,1,2, primary ranks
	// 1,2,3, shadow ranks of those rows (.85,.9,.6) 2,1,3: ρ = 1 − 6·2/(3·8) = 0.5.
	// Shadow top 3 over all rows: 4,1,0; overlap with 0,1,2: 2/3.
	submit(0.9, 0.85, 0.8, 0.9, 0.7, 0.6, 0.6, 0.1, 0.5, 0.95)
	// Request 2. |diffs| = 2 1 1 0. Primary ranks 1,2,3; shadow (1,1,0) ranks 1.5,1.5,3:
	// ρ = 1.5/√3 (Pearson of the ranks). Shadow top 3 (ties in row order): 0,1,2 → 3/3.
	submit(3, 1, 2, 1, 1, 0, 0, 0)
	// Request 3. |diffs| = .3 .4. The shadow scores both rows alike: ρ undefined, not
	// counted. Overlap: both top-2 sets are {0,1} → 1.
	submit(0.2, 0.5, 0.1, 0.5)
	m.Close()

	st := s.Stats()
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if st.Requests != 3 || st.Rows != 11 || st.RankCorrCount != 2 || st.TopK != 3 || st.Errors != 0 || st.Dropped != 0 {
		t.Fatalf("counts: %+v", st)
	}
	near("MeanAbsDiff", st.MeanAbsDiff, (0.05+0.1+0.1+0.5+0.45+2+1+1+0+0.3+0.4)/11)
	near("MaxAbsDiff", st.MaxAbsDiff, 2)
	near("RankCorr", st.RankCorr, (0.5+1.5/math.Sqrt(3))/2)
	near("TopKOverlap", st.TopKOverlap, (2.0/3+1+1)/3)
}

func TestColumnMapping(t *testing.T) {
	primary := linear([]string{"a", "b", "c"})
	var seen atomic.Pointer[[]float64]
	shadowModel := &funcModel{names: []string{"c", "new", "a"}, outputs: 1, score: func(row, out []float64) error {
		r := slices.Clone(row)
		seen.Store(&r)
		out[0] = 0
		return nil
	}}
	m := testMirror(t, Config{})
	s := addShadow(t, m, ShadowConfig{Name: "remapped", PrimaryPredictor: primary, Predictor: shadowModel})
	m.Submit([]*Shadow{s}, Request{Rows: []float64{1, 2, 3}, NumRows: 1, NumFeatures: 3, Scores: []float64{14}, Outputs: 1})
	m.Close()
	got := *seen.Load()
	if got[0] != 3 || !math.IsNaN(got[1]) || got[2] != 1 {
		t.Fatalf("shadow saw %v, want [3 NaN 1]", got)
	}
	if st := s.Stats(); st.MissingFeatures != 1 || st.Requests != 1 {
		t.Fatalf("%+v: want 1 missing feature", st)
	}
}

func TestRetireWaitsForRunningWork(t *testing.T) {
	names := []string{"a"}
	primary := linear(names)
	m := testMirror(t, Config{Workers: 1})
	defer m.Close()
	entered, gate := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := addShadow(t, m, ShadowConfig{Name: "slow", PrimaryPredictor: primary, Predictor: gated(names, entered, gate, &calls)})
	req := Request{Rows: []float64{1}, NumRows: 1, NumFeatures: 1, Scores: []float64{1}, Outputs: 1}
	m.Submit([]*Shadow{s}, req)
	<-entered
	retired := make(chan struct{})
	go func() { s.Retire(); close(retired) }()
	select {
	case <-retired:
		t.Fatal("Retire returned while the shadow was still scoring")
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	<-retired
	if n := m.Submit([]*Shadow{s}, req); n != 0 {
		t.Fatal("a retired shadow took new work")
	}
}

func TestShadowLogsScores(t *testing.T) {
	names := []string{"a", "b"}
	primary := linear(names)
	lg, err := predlog.New(predlog.Config{Dir: t.TempDir(), Prefix: "next"})
	if err != nil {
		t.Fatal(err)
	}
	m := testMirror(t, Config{Queue: 100})
	s := addShadow(t, m, ShadowConfig{Name: "next", Version: "2", Primary: "ctr", PrimaryVersion: "1",
		PrimaryPredictor: primary, Predictor: linear(names), Log: lg})
	serve(t, m, primary, []*Shadow{s}, 50, nil)
	m.Close()
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	if st, ls := s.Stats(), lg.Stats(); ls.Written != st.Requests || st.Requests == 0 {
		t.Fatalf("shadow scored %d requests, log wrote %d", st.Requests, ls.Written)
	}
}

func TestAddErrors(t *testing.T) {
	m := testMirror(t, Config{})
	defer m.Close()
	primary := linear([]string{"a"})
	f := func(cfg ShadowConfig, want string) {
		t.Helper()
		_, err := m.Add(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Add = %v, want an error containing %q", err, want)
		}
	}
	f(ShadowConfig{Name: "x", PrimaryPredictor: primary}, "must be set")
	f(ShadowConfig{Name: "x", PrimaryPredictor: primary, Predictor: primary, Rate: 2}, "rate")
	f(ShadowConfig{Name: "x", PrimaryPredictor: primary, Predictor: primary, TopK: -1}, "top_k")
	two := &funcModel{names: []string{"a"}, outputs: 2}
	f(ShadowConfig{Name: "x", PrimaryPredictor: primary, Predictor: two}, "same outputs")
	if _, err := New(Config{Workers: -1}); err == nil {
		t.Fatal("negative workers accepted")
	}
}

func TestRankAverage(t *testing.T) {
	f := func(vals, want []float64) {
		t.Helper()
		if got := rankAverage(nil, vals); !slices.Equal(got, want) {
			t.Fatalf("ranks of %v = %v, want %v", vals, got, want)
		}
	}
	f([]float64{3, 1, 2}, []float64{1, 3, 2})
	f([]float64{1, 1, 0}, []float64{1.5, 1.5, 3})
	f([]float64{5, 5, 5}, []float64{2, 2, 2})
	f([]float64{math.NaN(), 0, 1}, []float64{3, 2, 1})
}

// TestNonFiniteScores: NaN and infinite scores (Inf−Inf is NaN) are counted apart and
// every statistic stays finite, so /v1/models can always encode them as JSON.
func TestNonFiniteScores(t *testing.T) {
	id := func(row, out []float64) error { out[0] = row[0]; return nil }
	primary := &funcModel{names: []string{"p", "s"}, outputs: 1, score: id}
	shadowModel := &funcModel{names: []string{"s"}, outputs: 1, score: id}
	m := testMirror(t, Config{Workers: 1, Queue: 10})
	s := addShadow(t, m, ShadowConfig{Name: "next", PrimaryPredictor: primary, Predictor: shadowModel, TopK: 3})
	inf, nan := math.Inf(1), math.NaN()
	// Rows (primary, shadow): Inf−Inf, NaN vs 1, 1 vs 3, -Inf vs 0, and two that
	// overflow the sum of differences to +Inf: 1.7e308 − (−1.7e308).
	pairs := []float64{inf, inf, nan, 1, 1, 3, -inf, 0, 1.7e308, -1.7e308, -1.7e308, 1.7e308}
	n := len(pairs) / 2
	scores := make([]float64, n)
	if err := primary.PredictF64(pairs, n, scores, false); err != nil {
		t.Fatal(err)
	}
	if m.Submit([]*Shadow{s}, Request{Rows: pairs, NumRows: n, NumFeatures: 2, Scores: scores, Outputs: 1}) != 1 {
		t.Fatal("request dropped")
	}
	m.Close()
	st := s.Stats()
	if st.NonFinite != 5 { // Inf−Inf, NaN, Inf, and the two overflowing differences
		t.Errorf("NonFinite = %d, want 5", st.NonFinite)
	}
	for name, v := range map[string]float64{"MeanAbsDiff": st.MeanAbsDiff, "MaxAbsDiff": st.MaxAbsDiff,
		"RankCorr": st.RankCorr, "TopKOverlap": st.TopKOverlap} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s = %v, want a finite number", name, v)
		}
	}
	if st.MeanAbsDiff != 2 || st.MaxAbsDiff != 2 {
		t.Errorf("MeanAbsDiff, MaxAbsDiff = %v, %v; want 2, 2 (the one finite difference)", st.MeanAbsDiff, st.MaxAbsDiff)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Errorf("Stats do not encode as JSON: %v", err)
	}
}
