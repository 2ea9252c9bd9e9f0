package shadow

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m := testMirror(t, Config{Queue: 10, Meter: mp.Meter("shadow")})
	primary := linear([]string{"a"})
	off := &funcModel{names: []string{"a"}, outputs: 1, score: func(row, out []float64) error { out[0] = row[0] + 0.5; return nil }}
	s := addShadow(t, m, ShadowConfig{Name: "next", Version: "2", Primary: "ctr", PrimaryPredictor: primary, Predictor: off})
	for i := 0; i < 3; i++ {
		m.Submit([]*Shadow{s}, Request{Rows: []float64{1, 2}, NumRows: 2, NumFeatures: 1, Scores: []float64{1, 2}, Outputs: 1})
	}
	for s.Stats().Requests != 3 {
		time.Sleep(time.Millisecond) // the worker is scoring
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if v, _ := dp.Attributes.Value("shadow"); v.AsString() == "next" {
						got[mt.Name] = float64(dp.Value)
					}
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					if v, _ := dp.Attributes.Value("model"); v.AsString() == "ctr" {
						got[mt.Name] = dp.Value
					}
				}
			}
		}
	}
	want := map[string]float64{
		"predictd.shadow.requests":      3,
		"predictd.shadow.dropped":       0,
		"predictd.shadow.errors":        0,
		"predictd.shadow.mean_abs_diff": 0.5,
		"predictd.shadow.rank_corr":     1,

		"predictd.shadow.primary_requests": 3,
		"predictd.shadow.sampled_out":      0,
		"predictd.shadow.dropped_no_cpu":   0,
		"predictd.shadow.effective_rate":   1,
		"predictd.shadow.coverage":         0, // no minute has ended yet
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	m.Close()
}
