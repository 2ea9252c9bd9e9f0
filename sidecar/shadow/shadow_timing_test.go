package shadow

import (
	"sync/atomic"
	"testing"
)

const benchRows, benchFeatures = 64, 32

func benchRequest() Request {
	rows, scores := make([]float64, benchRows*benchFeatures), make([]float64, benchRows)
	for i := range rows {
		rows[i] = float64(i)
	}
	return Request{RequestID: "r", Rows: rows, NumRows: benchRows, NumFeatures: benchFeatures, Scores: scores, Outputs: 1}
}

func benchNames() []string {
	names := make([]string, benchFeatures)
	for i := range names {
		names[i] = string(rune('a' + i%26))
	}
	return names
}

// BenchmarkSubmitQueued is the primary's cost of mirroring a 64×32 request that is
// queued for a shadow (the copy and the hand-off). Compare with BenchmarkCopyBaseline.
func BenchmarkSubmitQueued(b *testing.B) {
	primary := linear(benchNames())
	m := testMirror(b, Config{Workers: 1, Queue: 1 << 16})
	s := addShadow(b, m, ShadowConfig{Name: "s", PrimaryPredictor: primary, Predictor: primary})
	req, shadows := benchRequest(), []*Shadow{s}
	b.SetBytes(int64(8 * (len(req.Rows) + len(req.Scores))))
	b.ReportAllocs()
	for b.Loop() {
		m.Submit(shadows, req)
	}
	b.StopTimer()
	m.Close()
	st := s.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(st.Dropped+st.Requests), "dropped/op")
}

// BenchmarkSubmitBudgetFull is the cost when the shadow budget is used up and the
// request is dropped: the primary pays for the sampling and the copy, then the drop.
func BenchmarkSubmitBudgetFull(b *testing.B) {
	names := benchNames()
	entered, gate := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	m := testMirror(b, Config{Workers: 1, Queue: 1})
	s := addShadow(b, m, ShadowConfig{Name: "stuck", PrimaryPredictor: linear(names), Predictor: gated(names, entered, gate, &calls)})
	req, shadows := benchRequest(), []*Shadow{s}
	m.Submit(shadows, req)
	<-entered
	b.SetBytes(int64(8 * (len(req.Rows) + len(req.Scores))))
	b.ReportAllocs()
	for b.Loop() {
		m.Submit(shadows, req)
	}
	b.StopTimer()
	close(gate)
	m.Close()
}

var sink []float64

func BenchmarkCopyBaseline(b *testing.B) {
	req := benchRequest()
	buf := make([]float64, 0, len(req.Rows)+len(req.Scores))
	b.SetBytes(int64(8 * (len(req.Rows) + len(req.Scores))))
	b.ReportAllocs()
	for b.Loop() {
		buf = append(append(buf[:0], req.Rows...), req.Scores...)
	}
	sink = buf
}
