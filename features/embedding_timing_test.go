package features

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// embedEntities is the embedding benchmark's item count: PREDICTD_EMBED_BENCH_ENTITIES,
// default 100,000 (1,000,000 is the production-sized table: about 2 GB of Redis memory
// for the three layouts together, and several minutes to load).
func embedEntities() int {
	if s := os.Getenv("PREDICTD_EMBED_BENCH_ENTITIES"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 2000 {
			return n
		}
	}
	return 100_000
}

const embedDim = 64

// BenchmarkEmbeddingTable stores one 64-float embedding per item in three layouts, each in
// its own redis-server, and compares:
//
//   - memory per item (INFO memory used_memory growth): ours (one hash per item with a
//     4-byte field id and the packed float32 vector) against the two naive layouts, a
//     JSON array in a string key (SET item:<id> "[0.1,...]") and a hash of text fields
//     (HSET item:<id> e0 "0.1" e1 ...);
//   - Redis CPU per 1M vector reads (INFO cpu around one pass over every item in
//     1,000-item pipelined batches);
//   - the latency of one 1,000-candidate request's vectors into a row-major matrix of 64
//     columns: ours through Store.FetchRows cold (items never read before: one pipelined
//     round trip) and warm (the cache), the naive layouts cold (read and parsed by the
//     client). p50 and p99 over 200 requests of uniformly drawn items.
//
// Run with -benchtime 1x: the setup costs far more than one iteration.
func BenchmarkEmbeddingTable(b *testing.B) {
	n := embedEntities()
	g, err := ParseGroup([]byte(fmt.Sprintf("name: item\nkey: item_id\nttl: 1h\nfeatures:\n  - {name: item_embedding, type: embedding, dim: %d}\n", embedDim)))
	if err != nil {
		b.Fatal(err)
	}
	f := &g.Features[0]
	srv := [3]*redisProc{startRedis(b), startRedis(b), startRedis(b)}
	var cl [3]*redis.Client
	var mem0 [3]float64
	for i, s := range srv {
		cl[i] = redis.NewClient(&redis.Options{Addr: s.addr(), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
		defer cl[i].Close()
		mem0[i] = redisInfoField(cl[i], "memory", "used_memory")
	}
	ours, jsonKV, textHash := cl[0], cl[1], cl[2]
	ctx := context.Background()
	id := func(i int) string { return strconv.Itoa(10_000_000 + i) }
	jsonKey := func(e string) string { return "item:" + e }

	rng := rand.New(rand.NewPCG(7, 7))
	vec := make([]float32, embedDim)
	textArgs := make([]any, 0, 2*embedDim)
	p0, p1, p2 := ours.Pipeline(), jsonKV.Pipeline(), textHash.Pipeline()
	loadStart := time.Now()
	for i := 0; i < n; i++ {
		for k := range vec {
			vec[k] = float32(rng.NormFloat64() * 0.1) // like a trained embedding
		}
		e := id(i)
		enc, err := g.EncodeValue(nil, f, Value{V: vec})
		if err != nil {
			b.Fatal(err)
		}
		p0.HSet(ctx, string(g.RedisKey(nil, e)), string(fieldKey(nil, timestampField)), encodeTimestamp(nil, time.Now()),
			string(fieldKey(nil, f.id)), enc)
		js, _ := json.Marshal(vec)
		p1.Set(ctx, jsonKey(e), js, 0)
		textArgs = textArgs[:0]
		for k, x := range vec {
			textArgs = append(textArgs, "e"+strconv.Itoa(k), strconv.FormatFloat(float64(x), 'g', -1, 32))
		}
		p2.HSet(ctx, jsonKey(e), textArgs...)
		if (i+1)%500 == 0 || i == n-1 {
			for _, p := range []redis.Pipeliner{p0, p1, p2} {
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	loadSecs := time.Since(loadStart).Seconds()
	var mem [3]float64
	for i := range cl {
		mem[i] = (redisInfoField(cl[i], "memory", "used_memory") - mem0[i]) / float64(n)
	}

	const batch = 1000
	textFields := make([]string, embedDim)
	for k := range textFields {
		textFields[k] = "e" + strconv.Itoa(k)
	}
	out := make([]float64, batch*embedDim)
	ids := make([]string, batch)
	pick := func(r *rand.Rand) {
		for i := range ids {
			ids[i] = id(r.IntN(n))
		}
	}
	readJSON := func() {
		cmds := make([]*redis.StringCmd, batch)
		pipe := jsonKV.Pipeline()
		for i, e := range ids {
			cmds[i] = pipe.Get(ctx, jsonKey(e))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		var xs []float64
		for i, c := range cmds {
			xs = xs[:0]
			if err := json.Unmarshal([]byte(c.Val()), &xs); err != nil || len(xs) != embedDim {
				b.Fatal(err)
			}
			copy(out[i*embedDim:], xs)
		}
	}
	readText := func() {
		cmds := make([]*redis.SliceCmd, batch)
		pipe := textHash.Pipeline()
		for i, e := range ids {
			cmds[i] = pipe.HMGet(ctx, jsonKey(e), textFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		for i, c := range cmds {
			for k, v := range c.Val() {
				x, err := strconv.ParseFloat(v.(string), 32)
				if err != nil {
					b.Fatal(err)
				}
				out[i*embedDim+k] = x
			}
		}
	}
	// Ours through the store: a fresh Store per cold request (an empty cache), one Store
	// kept for the warm ones.
	open := func() (*Store, *Plan) {
		s, err := Open(Config{Groups: map[string]*Group{"item": g}, Redis: ours, CacheBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		p, err := s.Plan("item", []string{"item_embedding"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return s, p
	}
	present := make([]bool, batch)
	fetch := func(s *Store, p *Plan) {
		res, err := s.FetchRows(ctx, p, ids, out, present)
		if err != nil || res.Degraded || res.Absent > 0 {
			b.Fatalf("%+v %v", res, err)
		}
	}

	// Redis CPU over one pass over all items per layout.
	pass := func(c *redis.Client, read func()) float64 {
		runtime.GC()
		before := redisCPU(c)
		for first := 0; first+batch <= n; first += batch {
			for i := range ids {
				ids[i] = id(first + i)
			}
			read()
		}
		return (redisCPU(c) - before) / float64(n/batch*batch) * 1e6
	}
	cpuOurs := pass(ours, func() {
		s, p := open()
		fetch(s, p)
		s.Close()
	})
	cpuJSON := pass(jsonKV, readJSON)
	cpuText := pass(textHash, readText)

	// Request latencies.
	type pct struct{ p50, p99 time.Duration }
	measure := func(read func()) pct {
		r := rand.New(rand.NewPCG(11, 11))
		d := make([]time.Duration, 200)
		for k := range d {
			pick(r)
			t0 := time.Now()
			read()
			d[k] = time.Since(t0)
		}
		slices.Sort(d)
		return pct{d[len(d)/2], d[len(d)*99/100]}
	}
	var cold pct
	{
		r := rand.New(rand.NewPCG(11, 11))
		d := make([]time.Duration, 200)
		for k := range d {
			pick(r)
			s, p := open()
			t0 := time.Now()
			fetch(s, p)
			d[k] = time.Since(t0)
			s.Close()
		}
		slices.Sort(d)
		cold = pct{d[len(d)/2], d[len(d)*99/100]}
	}
	warmStore, warmPlan := open()
	defer warmStore.Close()
	for first := 0; first+batch <= min(n, 200_000); first += batch { // fill the cache
		for i := range ids {
			ids[i] = id(first + i)
		}
		fetch(warmStore, warmPlan)
	}
	warm := measure(func() {
		for i := range ids { // warm: items already in the cache
			ids[i] = id(int(uint32(i*2654435761) % uint32(min(n, 200_000))))
		}
		fetch(warmStore, warmPlan)
	})
	js, tx := measure(readJSON), measure(readText)

	b.ReportMetric(float64(n), "items")
	b.ReportMetric(loadSecs, "load-s")
	b.ReportMetric(mem[0], "ours-B/item")
	b.ReportMetric(mem[1], "json-B/item")
	b.ReportMetric(mem[2], "texthash-B/item")
	b.ReportMetric(cpuOurs, "ours-cpu-s/1M-reads")
	b.ReportMetric(cpuJSON, "json-cpu-s/1M-reads")
	b.ReportMetric(cpuText, "texthash-cpu-s/1M-reads")
	b.ReportMetric(float64(cold.p50.Microseconds()), "ours-cold-p50-µs")
	b.ReportMetric(float64(cold.p99.Microseconds()), "ours-cold-p99-µs")
	b.ReportMetric(float64(warm.p50.Microseconds()), "ours-warm-p50-µs")
	b.ReportMetric(float64(warm.p99.Microseconds()), "ours-warm-p99-µs")
	b.ReportMetric(float64(js.p50.Microseconds()), "json-cold-p50-µs")
	b.ReportMetric(float64(js.p99.Microseconds()), "json-cold-p99-µs")
	b.ReportMetric(float64(tx.p50.Microseconds()), "texthash-cold-p50-µs")
	b.ReportMetric(float64(tx.p99.Microseconds()), "texthash-cold-p99-µs")
}
