package predlog

import (
	"io"
	"testing"
	"time"
)

// benchRequest is a typical ranking request: 64 candidates × 32 features.
const benchRows, benchFeatures = 64, 32

// BenchmarkLogRequest measures the request path: Sample, copy rows, predictions and
// ids into the record, Log. Compare with BenchmarkCopyBaseline, which only copies the
// same data into a reused buffer (the least any logger must do).
func BenchmarkLogRequest(b *testing.B) {
	lg, err := New(Config{Dir: b.TempDir(), Prefix: "m"})
	if err != nil {
		b.Fatal(err)
	}
	benchLog(b, lg)
	lg.Close()
	st := lg.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(st.Accepted+st.Dropped), "dropped/op")
}

// BenchmarkLogRequestStalledDisk is BenchmarkLogRequest while the writer is stuck in a
// write that never returns: every call takes the drop path.
func BenchmarkLogRequestStalledDisk(b *testing.B) {
	gate := make(chan struct{})
	lg, err := newLogger(Config{Dir: b.TempDir(), Prefix: "m", QueueSize: 1, FlushInterval: 1},
		func(string) (io.WriteCloser, error) { return stalled(gate), nil }, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	lg.rename = func(string, string) error { return nil }
	benchLog(b, lg)
	close(gate)
	lg.Close()
}

type stalled chan struct{}

func (s stalled) Write(p []byte) (int, error) { <-s; return len(p), nil }
func (s stalled) Close() error                { return nil }

func benchLog(b *testing.B, lg *Logger) {
	names := make([]string, benchFeatures)
	for i := range names {
		names[i] = "feature"
	}
	rows, preds := make([]float64, benchRows*benchFeatures), make([]float64, benchRows)
	for i := range rows {
		rows[i] = float64(i) * 0.37
	}
	b.SetBytes(int64(8 * (len(rows) + len(preds))))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := lg.Sample()
		rec.Model, rec.Version, rec.FeatureNames = "m", "1", names
		rec.SetRequestID("request-id-0123456789")
		rec.SetRows(rows, benchRows, benchFeatures)
		rec.SetPredictions(preds, 1)
		for range benchRows {
			rec.AddID("candidate-id")
		}
		lg.Log(rec)
	}
}

var sink []float64

func BenchmarkCopyBaseline(b *testing.B) {
	rows, preds := make([]float64, benchRows*benchFeatures), make([]float64, benchRows)
	buf := make([]float64, 0, len(rows)+len(preds))
	b.SetBytes(int64(8 * (len(rows) + len(preds))))
	b.ReportAllocs()
	for b.Loop() {
		buf = append(append(buf[:0], rows...), preds...)
	}
	sink = buf
}

// BenchmarkEncode measures the writer's per-record work: JSON encoding and zstd
// compression of one request.
func BenchmarkEncode(b *testing.B) {
	var r Record
	names := make([]string, benchFeatures)
	rows, preds := make([]float64, benchRows*benchFeatures), make([]float64, benchRows)
	for i := range rows {
		rows[i] = float64(i) * 0.37
	}
	r.Model, r.Version, r.FeatureNames = "m", "1", names
	r.SetRows(rows, benchRows, benchFeatures)
	r.SetPredictions(preds, 1)
	w, err := newWriter(&Logger{})
	if err != nil {
		b.Fatal(err)
	}
	w.enc.Reset(io.Discard)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = r.appendJSON(buf[:0])
		w.enc.Write(buf)
	}
	b.SetBytes(int64(len(buf)))
}
