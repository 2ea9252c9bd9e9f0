package features

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestInspect: an entity read straight from the embedded store reports each declared
// feature from the backend, or its default when absent; once a plan's Fetch has cached
// it, the features that plan reads come from the cache, fresh until the group's TTL.
func TestInspect(t *testing.T) {
	g := shopGroup(t)
	emb := NewEmbedded()
	csv := "store_id,rating,orders\ns1,4.5,7\n"
	if _, err := Load(context.Background(), strings.NewReader(csv), LoadConfig{Group: g, Sink: emb, Timestamp: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	st, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: emb})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	from := func(in *Inspection) map[string]string {
		m := map[string]string{}
		for _, f := range in.Features {
			m[f.Feature.Name] = f.From
		}
		return m
	}

	in, err := st.Inspect(ctx, "shop", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Found || time.Since(in.Updated) < 59*time.Second || in.BackendErr != nil {
		t.Fatalf("s1: found %v, updated %v ago, err %v", in.Found, time.Since(in.Updated), in.BackendErr)
	}
	if got := from(in); got["rating"] != "embedded" || got["orders"] != "embedded" || got["revenue"] != "default" || got["emb"] != "default" {
		t.Errorf("before any fetch: %v", got)
	}
	if in.Features[0].Value.F != 4.5 || !in.Features[0].Stored {
		t.Errorf("rating %+v", in.Features[0])
	}

	p, err := st.Plan("shop", []string{"rating", "revenue"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, present := make([]float64, 2), make([]bool, 2)
	if _, err := st.FetchRows(ctx, p, []string{"s1"}, out, present); err != nil {
		t.Fatal(err)
	}
	in, _ = st.Inspect(ctx, "shop", "s1")
	got := from(in)
	if got["rating"] != "cache" || got["orders"] != "embedded" || got["revenue"] != "default" {
		t.Errorf("after the plan's fetch: %v (rating is cached; orders is not in the plan; revenue is absent)", got)
	}
	if f := in.Features[0]; !f.Fresh || len(f.CachedVals) != 1 || f.CachedVals[0] != 4.5 || time.Since(f.Cached) > time.Minute {
		t.Errorf("rating's cache entry: %+v", f)
	}

	// A plan whose version retired is dropped: its entries no longer count.
	p = nil
	runtime.GC()
	runtime.GC()
	in, _ = st.Inspect(ctx, "shop", "s1")
	if got := from(in); got["rating"] != "embedded" {
		t.Errorf("after the plan was collected: %v", got)
	}

	in, _ = st.Inspect(ctx, "shop", "nobody")
	if in.Found || from(in)["rating"] != "default" {
		t.Errorf("an absent entity: found %v, %v", in.Found, from(in))
	}
	if _, err := st.Inspect(ctx, "nosuch", "s1"); err == nil {
		t.Error("an unknown group is an error")
	}
	cs := st.CacheStats()
	if cs.Entries != 1 || cs.Bytes <= 0 || cs.MaxBytes != 256<<20 || cs.BreakerOpen {
		t.Errorf("cache stats %+v", cs)
	}
	if gs := st.Groups(); len(gs) != 1 || gs[0].Name != "shop" || st.Backend() != "embedded" {
		t.Errorf("groups %v, backend %s", gs, st.Backend())
	}
}
