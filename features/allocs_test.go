//go:build !race

package features

import (
	"context"
	"testing"
)

// TestFetchHitAllocs checks that a Fetch answered from the cache allocates nothing.
func TestFetchHitAllocs(t *testing.T) {
	g := shopGroup(t)
	e := NewEmbedded()
	rows := genShopRows(64, 10)
	loadShop(t, g, e, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
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
