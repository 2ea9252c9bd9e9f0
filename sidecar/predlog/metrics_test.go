package predlog

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// sums collects every Int64 sum the reader sees, by metric name.
func sums(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					out[m.Name] += dp.Value
				}
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	lg, err := New(Config{Dir: t.TempDir(), Prefix: "m", Meter: mp.Meter("predlog"), FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		rec := lg.Sample()
		rec.Model, rec.Version, rec.FeatureNames = "m", "1", []string{"a"}
		rec.SetRows([]float64{float64(i)}, 1, 1)
		rec.SetPredictions([]float64{0.5}, 1)
		lg.Log(rec)
	}
	for lg.Stats().Written != 10 {
		time.Sleep(time.Millisecond)
	}
	st := lg.Stats()
	got := sums(t, reader)
	want := map[string]int64{
		"predictd.predlog.records.written": 10,
		"predictd.predlog.records.dropped": 0,
		"predictd.predlog.records.failed":  0,
		"predictd.predlog.files":           1,
		"predictd.predlog.bytes":           int64(st.Bytes),
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d", name, g, ok, v)
		}
	}
	if st.Bytes == 0 {
		t.Error("no bytes counted")
	}
	// A closed Logger stops reporting (its model may be gone).
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sums(t, reader); len(got) != 0 {
		t.Errorf("metrics after Close: %v", got)
	}
}
