package features

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const shopYAML = `
name: shop
key: store_id
ttl: 1m
max_stale: 1h
features:
  - {name: rating, type: float32, default: 3.5}
  - {name: revenue, type: float64}
  - {name: orders, type: int64, default: 0}
  - {name: cuisine, type: string}
  - {name: recent, type: list, len: 8}
  - {name: emb, type: embedding, dim: 16}
`

func shopGroup(t testing.TB) *Group {
	t.Helper()
	g, err := ParseGroup([]byte(shopYAML))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// shopRow is one generated entity; nil/empty fields are missing cells.
type shopRow struct {
	id      string
	rating  *float32
	revenue *float64
	orders  *int64
	cuisine string
	recent  []float32
	emb     []float32
}

func genShopRows(n int, seed uint64) []shopRow {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := []string{"thai", "pizza, by the slice", `"quoted"`, "ramen 🍜", "tacos\nal pastor", "x"}
	rows := make([]shopRow, n)
	for i := range rows {
		r := shopRow{id: "s" + strconv.Itoa(i) + "-" + strconv.Itoa(rng.IntN(1000))}
		if rng.IntN(10) > 0 {
			v := float32(rng.NormFloat64() * 2)
			r.rating = &v
		}
		if rng.IntN(10) > 0 {
			v := rng.Float64() * 1e7
			r.revenue = &v
		}
		if rng.IntN(10) > 0 {
			v := int64(rng.Uint64() >> 11) // exact as a float64 too (53 bits)
			if rng.IntN(2) == 0 {
				v = -v
			}
			r.orders = &v
		}
		if rng.IntN(10) > 0 {
			r.cuisine = words[rng.IntN(len(words))]
		}
		if k := rng.IntN(9); k > 0 {
			for j := 0; j < k; j++ {
				r.recent = append(r.recent, float32(rng.IntN(50))) // counts compress
			}
		}
		if rng.IntN(10) > 0 {
			for j := 0; j < 16; j++ {
				r.emb = append(r.emb, float32(rng.NormFloat64()))
			}
		}
		rows[i] = r
	}
	return rows
}

func floats32(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(s, " ")
}

func shopCSV(rows []shopRow) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"emb", "store_id", "rating", "revenue", "orders", "cuisine", "recent"})
	for _, r := range rows {
		rec := []string{floats32(r.emb), r.id, "", "", "", r.cuisine, floats32(r.recent)}
		if r.rating != nil {
			rec[2] = strconv.FormatFloat(float64(*r.rating), 'g', -1, 32)
		}
		if r.revenue != nil {
			rec[3] = strconv.FormatFloat(*r.revenue, 'g', -1, 64)
		}
		if r.orders != nil {
			rec[4] = strconv.FormatInt(*r.orders, 10)
		}
		w.Write(rec)
	}
	w.Flush()
	return b.Bytes()
}

func loadShop(t testing.TB, g *Group, sink Sink, rows []shopRow) LoadStats {
	t.Helper()
	st, err := Load(context.Background(), bytes.NewReader(shopCSV(rows)), LoadConfig{Group: g, Sink: sink, BatchRows: 7})
	if err != nil {
		t.Fatalf("load: %v (%+v)", err, st.BadRows)
	}
	if st.Rows != len(rows) || st.Bad != 0 {
		t.Fatalf("load: %d rows, %d bad (%+v); want %d, 0", st.Rows, st.Bad, st.BadRows, len(rows))
	}
	return st
}

// checkShop reads rows back through Lookup (every type, strings included) and through Fetch
// (the numeric columns) and compares them with what was generated.
func checkShop(t *testing.T, s *Store, rows []shopRow) {
	t.Helper()
	ctx := context.Background()
	for _, r := range rows {
		vals, ts, found, err := s.Lookup(ctx, "shop", r.id)
		if err != nil || !found {
			t.Fatalf("lookup %s: found=%v err=%v", r.id, found, err)
		}
		if time.Since(ts) > time.Hour || time.Since(ts) < 0 {
			t.Errorf("%s: freshness timestamp %v is not the load time", r.id, ts)
		}
		if v, ok := vals["rating"]; (r.rating != nil) != ok || ok && float32(v.F) != *r.rating {
			t.Errorf("%s rating: got %+v (present %v), want %v", r.id, v, ok, r.rating)
		}
		if v, ok := vals["revenue"]; (r.revenue != nil) != ok || ok && v.F != *r.revenue {
			t.Errorf("%s revenue: got %+v, want %v", r.id, v, r.revenue)
		}
		if v, ok := vals["orders"]; (r.orders != nil) != ok || ok && v.I != *r.orders {
			t.Errorf("%s orders: got %+v, want %v", r.id, v, r.orders)
		}
		if v, ok := vals["cuisine"]; (r.cuisine != "") != ok || string(v.S) != r.cuisine {
			t.Errorf("%s cuisine: got %q, want %q", r.id, v.S, r.cuisine)
		}
		if v, ok := vals["recent"]; (r.recent != nil) != ok || floats32(v.V) != floats32(r.recent) {
			t.Errorf("%s recent: got %v, want %v", r.id, v.V, r.recent)
		}
		if v, ok := vals["emb"]; (r.emb != nil) != ok || floats32(v.V) != floats32(r.emb) {
			t.Errorf("%s emb: got %v, want %v", r.id, v.V, r.emb)
		}
	}
	if _, _, found, err := s.Lookup(ctx, "shop", "no-such-store"); found || err != nil {
		t.Errorf("lookup of an absent entity: found=%v err=%v", found, err)
	}

	// FetchRows gives the same values, row-major.
	{
		p, err := s.Plan("shop", []string{"emb", "rating", "recent"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{rows[0].id, "no-such-store", rows[1].id}
		n, w, nf := len(ids), p.Width(), p.NumFeatures()
		cols, cpres := make([]float64, n*w), make([]bool, n*nf)
		rws, rpres := make([]float64, n*w), make([]bool, n*nf)
		if _, err := s.FetchRows(ctx, p, ids, rws, rpres); err != nil { // misses, by row
			t.Fatal(err)
		}
		if _, err := s.Fetch(ctx, p, ids, cols, cpres); err != nil { // hits, by column
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			for c := 0; c < w; c++ {
				if a, b := rws[i*w+c], cols[c*n+i]; a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
					t.Fatalf("entity %d column %d: rows %v, columns %v", i, c, a, b)
				}
			}
			for j := 0; j < nf; j++ {
				if rpres[i*nf+j] != cpres[j*n+i] {
					t.Fatalf("entity %d feature %d: presence differs", i, j)
				}
			}
		}
	}
	// A narrow plan (HMGET from Redis) ...
	narrow, err := s.Plan("shop", []string{"revenue"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		out, present := make([]float64, 1), make([]bool, 1)
		if res, err := s.Fetch(ctx, narrow, []string{r.id}, out, present); err != nil || res.Degraded {
			t.Fatalf("narrow fetch %s: %+v %v", r.id, res, err)
		}
		if r.revenue != nil && (!present[0] || out[0] != *r.revenue) || r.revenue == nil && (present[0] || !math.IsNaN(out[0])) {
			t.Errorf("narrow fetch %s revenue: %v %v, want %v", r.id, present[0], out[0], r.revenue)
		}
	}
	// ... and a wide one (HGETALL).
	p, err := s.Plan("shop", []string{"emb", "rating", "orders", "revenue", "recent"}, map[string]float64{"orders": -1})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"no-such-store"}
	for _, r := range rows {
		ids = append(ids, r.id)
	}
	n := len(ids)
	out := make([]float64, n*p.Width())
	present := make([]bool, n*p.NumFeatures())
	for pass := 0; pass < 2; pass++ { // the second pass is answered by the cache
		clear(out)
		clear(present)
		res, err := s.Fetch(ctx, p, ids, out, present)
		if err != nil {
			t.Fatal(err)
		}
		if res.Degraded || res.Absent != 1 {
			t.Fatalf("pass %d: %+v, want not degraded and 1 absent", pass, res)
		}
		if pass == 1 && res.Hits != len(rows) {
			t.Fatalf("pass 1: %d cache hits, want %d", res.Hits, len(rows))
		}
		col := func(feat, w, i int) float64 { return out[(p.Column(feat)+w)*n+i] }
		pr := func(feat, i int) bool { return present[feat*n+i] }
		// The absent entity gets defaults: declared (rating 3.5), overridden (orders -1), NaN.
		if col(1, 0, 0) != 3.5 || col(2, 0, 0) != -1 || !math.IsNaN(col(3, 0, 0)) || !math.IsNaN(col(0, 5, 0)) || pr(1, 0) {
			t.Errorf("absent entity: rating %v orders %v revenue %v emb[5] %v", col(1, 0, 0), col(2, 0, 0), col(3, 0, 0), col(0, 5, 0))
		}
		for k, r := range rows {
			i := k + 1
			if r.rating != nil && (!pr(1, i) || col(1, 0, i) != float64(*r.rating)) || r.rating == nil && (pr(1, i) || col(1, 0, i) != 3.5) {
				t.Errorf("fetch %s rating: %v %v, want %v", r.id, pr(1, i), col(1, 0, i), r.rating)
			}
			if r.orders != nil && col(2, 0, i) != float64(*r.orders) || r.orders == nil && col(2, 0, i) != -1 {
				t.Errorf("fetch %s orders: %v, want %v", r.id, col(2, 0, i), r.orders)
			}
			if r.revenue != nil && col(3, 0, i) != *r.revenue || r.revenue == nil && !math.IsNaN(col(3, 0, i)) {
				t.Errorf("fetch %s revenue: %v, want %v", r.id, col(3, 0, i), r.revenue)
			}
			for w := 0; w < 8; w++ {
				got := col(4, w, i)
				if w < len(r.recent) && got != float64(r.recent[w]) || w >= len(r.recent) && !math.IsNaN(got) {
					t.Errorf("fetch %s recent[%d]: %v, want %v", r.id, w, got, r.recent)
				}
			}
			for w := 0; w < 16; w++ {
				got := col(0, w, i)
				if r.emb != nil && got != float64(r.emb[w]) || r.emb == nil && !math.IsNaN(got) {
					t.Errorf("fetch %s emb[%d]: %v, want %v", r.id, w, got, r.emb)
				}
			}
			if pr(0, i) != (r.emb != nil) || pr(4, i) != (r.recent != nil) {
				t.Errorf("fetch %s presence wrong", r.id)
			}
		}
	}
}

func TestRoundTripRedis(t *testing.T) {
	g := shopGroup(t)
	r := startRedis(t)
	c := newClient(t, r.addr())
	rows := genShopRows(300, 1)
	loadShop(t, g, RedisSink{Client: c}, rows)
	loadShop(t, g, RedisSink{Client: c}, rows) // idempotent: a second load changes nothing
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Redis: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkShop(t, s, rows)
	if n := c.DBSize(context.Background()).Val(); n != int64(len(rows)) {
		t.Errorf("redis holds %d keys, want one hash per entity: %d", n, len(rows))
	}
	enc := c.ObjectEncoding(context.Background(), string(g.RedisKey(nil, rows[0].id))).Val()
	if enc != "listpack" {
		t.Errorf("entity hash encoding %q, want listpack (the compact one)", enc)
	}
}

func TestRoundTripCluster(t *testing.T) {
	g := shopGroup(t)
	c := newClusterClient(t, startCluster(t))
	rows := genShopRows(300, 2)
	loadShop(t, g, RedisSink{Client: c}, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Redis: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkShop(t, s, rows)
	// Entities spread over the masters (no hash tag pins a group to one slot).
	var holding atomic.Int32 // ForEachMaster runs the masters concurrently
	c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		if m.DBSize(ctx).Val() > 0 {
			holding.Add(1)
		}
		return nil
	})
	if holding.Load() != 3 {
		t.Errorf("%d of 3 masters hold entities", holding.Load())
	}
}

func TestRoundTripEmbedded(t *testing.T) {
	g := shopGroup(t)
	rows := genShopRows(300, 3)
	e := NewEmbedded()
	loadShop(t, g, e, rows)
	loadShop(t, g, e, rows)
	path := filepath.Join(t.TempDir(), "shop.snap")
	if err := e.SaveSnapshot(path); err != nil {
		t.Fatal(err)
	}
	e2, err := LoadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, emb := range map[string]*Embedded{"loaded": e, "snapshot": e2} {
		t.Run(name, func(t *testing.T) {
			if emb.Len("shop") != len(rows) {
				t.Fatalf("%d entities, want %d", emb.Len("shop"), len(rows))
			}
			s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: emb})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkShop(t, s, rows)
		})
	}
}

func TestCollisionRefused(t *testing.T) {
	// Find two names whose field ids collide (a birthday search over 32 bits needs ~10^5
	// names), then declare them in one group.
	seen := make(map[uint32]string)
	var a, b string
	for i := 0; a == ""; i++ {
		name := "feature_" + strconv.Itoa(i)
		id := FieldID(name)
		if prev, ok := seen[id]; ok {
			a, b = prev, name
		}
		seen[id] = name
	}
	yaml := fmt.Sprintf("name: g\nkey: k\nfeatures:\n  - {name: %s, type: float32}\n  - {name: other, type: int64}\n  - {name: %s, type: float64}\n", a, b)
	_, err := ParseGroup([]byte(yaml))
	if !errors.Is(err, ErrCollision) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("colliding %q and %q: err %v, want ErrCollision naming both", a, b, err)
	}
	// Without the collision the group is fine.
	if _, err := ParseGroup([]byte(strings.Replace(yaml, b, b+"x", 1))); err != nil {
		t.Fatal(err)
	}
}

func TestParseGroupErrors(t *testing.T) {
	f := func(yaml, want string) {
		t.Helper()
		_, err := ParseGroup([]byte(yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want it to mention %q", yaml, err, want)
		}
	}
	f("name: g\nkey: k\nfeatures: [{name: a, type: float32}]\ncolour: red\n", "colour")
	f("name: g\nkey: k\nfeatures: [{name: a, type: float16}]\n", "unknown type")
	f("name: g\nkey: k\nfeatures: [{name: a, type: list}]\n", "needs len")
	f("name: g\nkey: k\nfeatures: [{name: a, type: embedding, dim: 4, len: 3}]\n", "dim")
	f("name: g\nkey: k\nfeatures: [{name: a, type: float32}, {name: a, type: int64}]\n", "declared twice")
	f("name: g\nkey: k\nfeatures: [{name: k, type: float32}]\n", "named like the key")
	f("name: 'g h'\nkey: k\nfeatures: [{name: a, type: float32}]\n", "feature group name")
	f("name: g\nfeatures: [{name: a, type: float32}]\n", "key")
	f("name: g\nkey: k\nfeatures: []\n", "no features")
	f("name: g\nkey: k\nttl: soon\nfeatures: [{name: a, type: float32}]\n", "duration")
	f("name: g\nkey: k\nttl: 1m\nmax_stale: 1s\nfeatures: [{name: a, type: float32}]\n", "max_stale")
	f("name: g\nkey: k\ncodec: lz4\nfeatures: [{name: a, type: float32}]\n", "unknown codec")
	f("name: g\nkey: k\nfeatures: [{name: a, type: string, default: 1}]\n", "default")
}

func TestLoadGroups(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("shop.group.yaml", shopYAML)
	write("user.group.yaml", "name: user\nkey: user_id\nfeatures: [{name: age, type: int64}]\n")
	write("model.yaml", "not: a group\n")
	gs, err := LoadGroups(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs["shop"] == nil || gs["user"].Key != "user_id" {
		t.Fatalf("groups %v", gs)
	}
	write("again.group.yaml", "name: user\nkey: uid\nfeatures: [{name: age, type: int64}]\n")
	if _, err := LoadGroups(dir); err == nil || !strings.Contains(err.Error(), "also declared") {
		t.Fatalf("duplicate group: %v", err)
	}
}

func TestLoadBadRows(t *testing.T) {
	g := shopGroup(t)
	in := "store_id,rating,orders,recent,emb\n" +
		"a,1.5,3,1 2,\n" + // line 2: good
		"b,fast,3,,\n" + // line 3: bad float
		"c,1,3,1 2 3 4 5 6 7 8 9,\n" + // line 4: list too long
		"d,1,3,,1 2 3\n" + // line 5: wrong embedding dim
		",1,3,,\n" + // line 6: no key
		"e,1,3\n" + // line 7: wrong field count
		"f,2,4.5,,\n" + // line 8: not an int
		"g,2,4,,\n" // line 9: good
	e := NewEmbedded()
	st, err := Load(context.Background(), strings.NewReader(in), LoadConfig{Group: g, Sink: e})
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, b := range st.BadRows {
		lines = append(lines, b.Line)
	}
	if st.Rows != 2 || st.Bad != 6 || fmt.Sprint(lines) != "[3 4 5 6 7 8]" {
		t.Fatalf("rows %d bad %d lines %v (%+v)", st.Rows, st.Bad, lines, st.BadRows)
	}
	s, _ := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
	defer s.Close()
	for _, id := range []string{"b", "c", "d", "f"} {
		if _, _, found, _ := s.Lookup(context.Background(), "shop", id); found {
			t.Errorf("bad row %s was written", id)
		}
	}
	for _, id := range []string{"a", "g"} {
		if _, _, found, _ := s.Lookup(context.Background(), "shop", id); !found {
			t.Errorf("good row %s was not written", id)
		}
	}
	// Unknown columns refuse the whole file before anything is written.
	_, err = Load(context.Background(), strings.NewReader("store_id,ratin\nz,1\n"), LoadConfig{Group: g, Sink: e})
	if err == nil || !strings.Contains(err.Error(), "ratin") {
		t.Fatalf("unknown column: %v", err)
	}
	// An empty cell deletes the stored value (reloading a row is a full update of its columns).
	if _, err := Load(context.Background(), strings.NewReader("store_id,rating\na,\n"), LoadConfig{Group: g, Sink: e}); err != nil {
		t.Fatal(err)
	}
	vals, _, _, _ := s.Lookup(context.Background(), "shop", "a")
	if _, ok := vals["rating"]; ok || vals["orders"].I != 3 {
		t.Errorf("after clearing rating: %+v", vals)
	}
}

func TestLoadJSONLines(t *testing.T) {
	g := shopGroup(t)
	in := `{"store_id": "j1", "rating": 4.25, "orders": 12, "cuisine": "thai", "recent": [1, 2, 3], "emb": null}
{"store_id": "j2", "rating": "x"}
not json
{"store_id": 7, "recent": [1.5]}
`
	e := NewEmbedded()
	st, err := Load(context.Background(), strings.NewReader(in), LoadConfig{Group: g, Sink: e, Format: "jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 2 || st.Bad != 2 || st.BadRows[0].Line != 2 || st.BadRows[1].Line != 3 {
		t.Fatalf("%+v", st)
	}
	s, _ := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
	defer s.Close()
	v, _, _, err := s.Lookup(context.Background(), "shop", "j1")
	if err != nil || v["rating"].F != 4.25 || v["orders"].I != 12 || string(v["cuisine"].S) != "thai" || floats32(v["recent"].V) != "1 2 3" {
		t.Fatalf("j1: %+v %v", v, err)
	}
	if v, _, found, _ := s.Lookup(context.Background(), "shop", "7"); !found || floats32(v["recent"].V) != "1.5" {
		t.Fatalf("7: %+v", v)
	}
}
