package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/predictd/predictd/features"
)

// TestFeaturesLoadSnapshot runs `predictd features load` into an embedded snapshot: good
// rows land with every type intact, a bad row is refused whole (exit status 1), and loading
// the same file again leaves the same state. The Redis and Cluster paths of the same loader
// are tested against real redis-server processes in features/.
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
		st, emb := openSnapshot(t, dir, snap)
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

// openSnapshot opens a store over the groups in dir and the snapshot file snap.
func openSnapshot(t *testing.T, dir, snap string) (*features.Store, *features.Embedded) {
	t.Helper()
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
	return st, emb
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFeaturesLoadParquet runs `predictd features load` on a real Parquet file (written
// by parquet-go): the .parquet extension selects the format, a row whose list is longer
// than the feature's len is refused whole (exit status 1), the others land.
func TestFeaturesLoadParquet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "store_stats.group.yaml"), `name: store_stats
key: store_id
features:
  - {name: rating, type: float32, default: 0}
  - {name: orders_7d, type: int64}
  - {name: recent_prices, type: list, len: 3}
`)
	type row struct {
		StoreID string    `parquet:"store_id"`
		Rating  *float32  `parquet:"rating,optional"`
		Orders  *int64    `parquet:"orders_7d,optional"`
		Recent  []float32 `parquet:"recent_prices,list,optional"`
	}
	f32 := func(v float32) *float32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	rows := []row{
		{StoreID: "42", Rating: f32(4.5), Orders: i64(120), Recent: []float32{1.5, 2.5, 3.5}},
		{StoreID: "43", Rating: f32(1), Orders: i64(7), Recent: []float32{1, 2, 3, 4}}, // row 2: too long
		{StoreID: "44", Rating: f32(3.25)},
	}
	path := filepath.Join(dir, "stores.parquet")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[row](out)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out.Close()

	snap := filepath.Join(dir, "features.snap")
	code := runFeatures([]string{"load", "--group", "store_stats", "--file", path, "--groups", dir, "--snapshot", snap, "--quiet"})
	if code != 1 {
		t.Fatalf("exit status %d, want 1 (one bad row)", code)
	}
	st, _ := openSnapshot(t, dir, snap)
	defer st.Close()
	ctx := context.Background()
	vals, _, found, err := st.Lookup(ctx, "store_stats", "42")
	if err != nil || !found || vals["rating"].F != 4.5 || vals["orders_7d"].I != 120 || len(vals["recent_prices"].V) != 3 {
		t.Fatalf("entity 42: %+v found=%v err=%v", vals, found, err)
	}
	if _, _, found, _ := st.Lookup(ctx, "store_stats", "43"); found {
		t.Fatal("bad row 43 was written")
	}
	if vals, _, found, _ := st.Lookup(ctx, "store_stats", "44"); !found || vals["rating"].F != 3.25 {
		t.Fatalf("entity 44: %+v found=%v", vals, found)
	}
}
