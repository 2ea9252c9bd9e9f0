package features

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
	g := shopGroup(t)
	e := NewEmbedded()
	rows := genShopRows(10, 11)
	loadShop(t, g, e, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e, Meter: mp.Meter("test")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, _ := s.Plan("shop", []string{"rating"}, nil)
	ids := []string{rows[0].id, rows[1].id, "ghost"}
	out, present := make([]float64, 3), make([]bool, 3)
	for i := 0; i < 3; i++ { // 3 misses, then 2×2 hits and 2 negative hits; "ghost" absent 3 times of 9 lookups
		if _, err := s.Fetch(context.Background(), p, ids, out, present); err != nil {
			t.Fatal(err)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					got[m.Name] += dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	if got["predictd.features.cache.hits"] != 4 || got["predictd.features.cache.misses"] != 3 ||
		got["predictd.features.cache.entries"] != 3 || got["predictd.features.cache.bytes"] != s.cache.bytes.Load() ||
		got["predictd.features.cache.bytes"] <= 0 || got["predictd.features.degraded"] != 0 ||
		got["predictd.features.lookups"] != 9 || got["predictd.features.absent"] != 3 {
		t.Fatalf("metrics %v", got)
	}
}
