package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/predictd/predictd/engine/features"
)

// TestFeaturesLoadSnapshot runs `predictd features load` into an embedded snapshot: good
// rows land with every type intact, a bad row is refused whole (exit status 1), and loading
// the same file again leaves the same state. The Redis and Cluster paths of the same loader
// are tested against real redis-server processes in engine/features.
func TestFeaturesLoadSnapshot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "store_stats.group.yaml"), `name: store_stats
key: store_id
features:
  - {name: rating, type: float32, default: 0}
  - {name: orders_7d, type: int64}
  - {name: recent_prices, type: list, len: 3}
`)
	csv := filepath.Join(dir, "stores.csv")
	writeFile(t, csv, "store_id,rating,orders_7d,recent_prices\n"+
		"42,4.5,120,1.5 2.5 3.5\n"+
		"43,not-a-number,7,1\n"+ // line 3: refused whole
		"44,3.25,9,\n")
	snap := filepath.Join(dir, "features.snap")
	args := []string{"load", "--group", "store_stats", "--file", csv, "--groups", dir, "--snapshot", snap, "--quiet"}

	for run := 0; run < 2; run++ { // the second run checks idempotence
		if code := runFeatures(args); code != 1 {
			t.Fatalf("run %d: exit status %d, want 1 (one bad row)", run, code)
		}
		emb, err := features.LoadSnapshot(snap)
		if err != nil {
			t.Fatal(err)
		}
		groups, err := features.LoadGroups(dir)
		if err != nil {
			t.Fatal(err)
		}
		st, err := features.Open(features.Config{Groups: groups, Embedded: emb})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		vals, _, found, err := st.Lookup(ctx, "store_stats", "42")
		if err != nil || !found {
			t.Fatalf("run %d: entity 42: found=%v err=%v", run, found, err)
		}
		if vals["rating"].F != 4.5 || vals["orders_7d"].I != 120 {
			t.Fatalf("run %d: entity 42 = %+v", run, vals)
		}
		if got := vals["recent_prices"].V; len(got) != 3 || got[0] != 1.5 || got[2] != 3.5 {
			t.Fatalf("run %d: recent_prices = %v", run, got)
		}
		if _, _, found, _ := st.Lookup(ctx, "store_stats", "43"); found {
			t.Fatalf("run %d: bad row 43 was written", run)
		}
		vals, _, found, err = st.Lookup(ctx, "store_stats", "44")
		if err != nil || !found || vals["rating"].F != 3.25 {
			t.Fatalf("run %d: entity 44: %+v found=%v err=%v", run, vals, found, err)
		}
		if _, ok := vals["recent_prices"]; ok {
			t.Fatalf("run %d: empty list cell should leave recent_prices absent, got %v", run, vals["recent_prices"])
		}
		if n := emb.Len("store_stats"); n != 2 {
			t.Fatalf("run %d: snapshot holds %d entities, want 2", run, n)
		}
		st.Close()
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
