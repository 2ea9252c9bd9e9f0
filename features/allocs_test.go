//go:build !race

package features

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestFetchHitAllocs checks that a Fetch answered from the cache allocates nothing, with
// no metrics and with the OpenTelemetry SDK counting every lookup.
func TestFetchHitAllocs(t *testing.T) {
	t.Run("no metrics", func(t *testing.T) { fetchHitAllocs(t, nil) })
	t.Run("metrics", func(t *testing.T) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer mp.Shutdown(context.Background())
		fetchHitAllocs(t, mp.Meter("test"))
	})
}

func fetchHitAllocs(t *testing.T, meter metric.Meter) {
	g := shopGroup(t)
	e := NewEmbedded()
	rows := genShopRows(64, 10)
	loadShop(t, g, e, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e, Meter: meter})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, _ := s.Plan("shop", []string{"rating", "emb", "recent"}, nil)
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].id
	}
	out := make([]float64, len(ids)*p.Width())
	present := make([]bool, len(ids)*p.NumFeatures())
	ctx := context.Background()
	if _, err := s.Fetch(ctx, p, ids, out, present); err != nil {
		t.Fatal(err)
	}
	var hits int
	allocs := testing.AllocsPerRun(100, func() {
		res, _ := s.Fetch(ctx, p, ids, out, present)
		hits = res.Hits
	})
	if allocs != 0 || hits != len(ids) {
		t.Fatalf("cache-hit Fetch: %v allocations, %d hits of %d", allocs, hits, len(ids))
	}
}
