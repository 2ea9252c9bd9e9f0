package admission

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	l := newLimiter(t, Config{Capacity: 2, QueuePerSlot: 0, MaxPending: 2, Meter: mp.Meter("admission")},
		map[string]float64{"a": 1, "b": 1})
	defer l.Close()
	ctx := context.Background()
	a, b := l.Bulkhead("a"), l.Bulkhead("b")
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	b.Acquire(ctx) // MaxPending reached: 503

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var dps []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				dps = d.DataPoints
			case metricdata.Gauge[int64]:
				dps = d.DataPoints
			}
			for _, dp := range dps {
				key := m.Name
				for _, kv := range dp.Attributes.ToSlice() {
					key += "," + string(kv.Key) + "=" + kv.Value.Emit()
				}
				got[key] = dp.Value
			}
		}
	}
	want := map[string]int64{
		"predictd.admission.in_flight,model=a":                  1,
		"predictd.admission.in_flight,model=b":                  1,
		"predictd.admission.queued,model=a":                     0,
		"predictd.admission.rejected,reason=saturated":          1,
		"predictd.admission.rejected,model=b,reason=queue_full": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d; all: %v", k, g, ok, v, got)
		}
	}
	a.Release()
	b.Release()
}
