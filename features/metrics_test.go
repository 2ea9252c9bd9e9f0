package features

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

// lookupCounts collects predictd.features.cache.lookups by result, and the lookups
// total, for group.
func lookupCounts(t *testing.T, reader sdkmetric.Reader, group string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "predictd.features.cache.lookups" && m.Name != "predictd.features.lookups" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if g, _ := dp.Attributes.Value("group"); g.AsString() != group {
					t.Fatalf("%s point of group %q", m.Name, g.AsString())
				}
				key := "lookups"
				if r, ok := dp.Attributes.Value("result"); ok {
					key = r.AsString()
				}
				got[key] += dp.Value
			}
		}
	}
	return got
}

// TestCacheLookupsPerEntity: every entity a Fetch looks up counts once under
// predictd.features.cache.lookups (repeats within a batch too), a cached absence is a hit,
// and hit + revalidate + miss equals predictd.features.lookups, over the embedded store
// and a real redis-server.
func TestCacheLookupsPerEntity(t *testing.T) {
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) {
			open := func(g *Group, swr time.Duration) (*Store, *sdkmetric.ManualReader, []shopRow) {
				reader := sdkmetric.NewManualReader()
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				t.Cleanup(func() { mp.Shutdown(context.Background()) })
				rows := genShopRows(5, 21)
				cfg := Config{Groups: map[string]*Group{"shop": g}, StaleWhileRevalidate: swr, Meter: mp.Meter("test")}
				if backend == "redis" {
					c := newClient(t, startRedis(t).addr())
					loadShop(t, g, RedisSink{Client: c}, rows)
					cfg.Redis = c
				} else {
					e := NewEmbedded()
					loadShop(t, g, e, rows)
					cfg.Embedded = e
				}
				s, err := Open(cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s, reader, rows
			}
			plans := map[*Store]*Plan{} // cache entries are keyed by plan: one per store
			fetch := func(s *Store, ids ...string) Result {
				t.Helper()
				p := plans[s]
				if p == nil {
					var err error
					if p, err = s.Plan("shop", []string{"rating"}, nil); err != nil {
						t.Fatal(err)
					}
					plans[s] = p
				}
				res, err := s.Fetch(context.Background(), p, ids, make([]float64, len(ids)), make([]bool, len(ids)))
				if err != nil || res.Degraded {
					t.Fatalf("fetch %v: %+v %v", ids, res, err)
				}
				return res
			}
			want := func(reader sdkmetric.Reader, hit, revalidate, miss int64) {
				t.Helper()
				got := lookupCounts(t, reader, "shop")
				if got["hit"] != hit || got["revalidate"] != revalidate || got["miss"] != miss || got["lookups"] != hit+revalidate+miss {
					t.Fatalf("cache lookups %v, want hit %d revalidate %d miss %d of %d", got, hit, revalidate, miss, hit+revalidate+miss)
				}
			}

			s, reader, rows := open(shopGroup(t), 0)
			a, b, c, d, e := rows[0].id, rows[1].id, rows[2].id, rows[3].id, rows[4].id
			fetch(s, a, b, "ghost")
			want(reader, 0, 0, 3)
			fetch(s, a, b, c, d, "ghost") // the cached absence of "ghost" is a hit
			want(reader, 3, 0, 5)
			for range 4 {
				fetch(s, a, b, c, d, "ghost")
			}
			want(reader, 23, 0, 5)
			// Repeats within one batch count once each: two misses sharing one read, then
			// three hits.
			fetch(s, e, e)
			fetch(s, e, a, e)
			want(reader, 26, 0, 7)

			g := shopGroup(t)
			g.TTL = Duration(time.Second)
			s, reader, rows = open(g, time.Hour)
			a, b = rows[0].id, rows[1].id
			fetch(s, a, b)
			time.Sleep(1100 * time.Millisecond) // past the TTL, within TTL+StaleWhileRevalidate
			if res := fetch(s, a, b); res.Hits != 2 {
				t.Fatalf("entries past their TTL not answered at once: %+v", res)
			}
			want(reader, 0, 2, 2)
			s.wg.Wait() // the background refresh
			fetch(s, a, b)
			want(reader, 2, 2, 2)
		})
	}
}
