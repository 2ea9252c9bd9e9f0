package features

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The benchmark entity: 50 features — 40 floats, 5 ints, 3 lists of 20 and 2
// embeddings of 64 floats — with names of realistic length.
func benchGroup(tb testing.TB) *Group {
	var b strings.Builder
	b.WriteString("name: store\nkey: store_id\nttl: 10m\nfeatures:\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "  - {name: store_float_feature_%02d, type: float32}\n", i)
	}
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "  - {name: store_count_feature_%02d, type: int64}\n", i)
	}
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&b, "  - {name: store_recent_list_%02d, type: list, len: 20}\n", i)
	}
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&b, "  - {name: store_embedding_%02d, type: embedding, dim: 64}\n", i)
	}
	g, err := ParseGroup([]byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// benchEntity generates entity i's values: floats like rates and scores (float32), counts,
// lists of recent small counts, and embeddings drawn like a trained model's (normal floats).
func benchEntity(g *Group, rng *rand.Rand) []Value {
	vals := make([]Value, len(g.Features))
	for j := range g.Features {
		f := &g.Features[j]
		switch f.Type {
		case Float32:
			vals[j].F = float64(float32(rng.Float64() * 5))
		case Int64:
			vals[j].I = int64(rng.ExpFloat64() * 1000)
		case List:
			v := make([]float32, 20)
			for k := range v {
				v[k] = float32(rng.IntN(30))
			}
			vals[j].V = v
		case Embedding:
			v := make([]float32, f.Dim)
			for k := range v {
				v[k] = float32(rng.NormFloat64() * 0.1)
			}
			vals[j].V = v
		}
	}
	return vals
}

func benchEntityID(i int) string { return strconv.Itoa(1_000_000 + i) }

// compactRow encodes an entity in our layout.
func compactRow(g *Group, vals []Value) []any {
	args := []any{string(fieldKey(nil, timestampField)), encodeTimestamp(nil, time.Now())}
	for j := range g.Features {
		enc, err := g.EncodeValue(nil, &g.Features[j], vals[j])
		if err != nil {
			panic("BUG: " + err.Error())
		}
		args = append(args, string(fieldKey(nil, g.Features[j].id)), enc)
	}
	return args
}

// naiveKey and naiveValue are the baseline layout: one string key per entity-feature with
// the feature's text name, the value as JSON.
func naiveKey(entity, feature string) string { return "store:" + entity + ":" + feature }

func naiveValue(f *Feature, v Value) []byte {
	var x any
	switch f.Type {
	case Float32:
		x = float32(v.F)
	case Int64:
		x = v.I
	default:
		x = v.V
	}
	b, _ := json.Marshal(x)
	return b
}

func redisInfoField(c *redis.Client, section, field string) float64 {
	info := c.Info(context.Background(), section).Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			x, _ := strconv.ParseFloat(v, 64)
			return x
		}
	}
	panic("BUG: no " + field + " in INFO " + section)
}

func redisCPU(c *redis.Client) float64 {
	return redisInfoField(c, "cpu", "used_cpu_sys") + redisInfoField(c, "cpu", "used_cpu_user")
}

// benchEntities is the layout benchmark's entity count: PREDICTD_FEATURES_BENCH_ENTITIES,
// default 20000 (1M entities need about 10 GB of Redis memory for the naive layout).
func benchEntities() int {
	if s := os.Getenv("PREDICTD_FEATURES_BENCH_ENTITIES"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 1000 {
			return n
		}
	}
	return 20000
}

// BenchmarkLayout loads the same entities into two redis-servers, one per layout, and
// compares Redis memory (INFO memory used_memory), Redis CPU per 1M feature reads (INFO cpu
// used_cpu_sys+used_cpu_user around reading every entity in 1,000-entity pipelined batches)
// and the client latency of a 1,000-entity batch (including decoding into columns). Ratios
// are naive/ours. The naive reader uses one MGET per entity, ours the store's backend read
// (HGETALL per entity for a plan of all features); ours-hmget is HMGET for comparison.
func BenchmarkLayout(b *testing.B) {
	n := benchEntities()
	g := benchGroup(b)
	naiveSrv, compactSrv := startRedis(b), startRedis(b)
	naive := redis.NewClient(&redis.Options{Addr: naiveSrv.addr(), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	compact := redis.NewClient(&redis.Options{Addr: compactSrv.addr(), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer naive.Close()
	defer compact.Close()
	ctx := context.Background()
	mem0n, mem0c := redisInfoField(naive, "memory", "used_memory"), redisInfoField(compact, "memory", "used_memory")

	// Load both layouts with the same values.
	rng := rand.New(rand.NewPCG(42, 42))
	loadStart := time.Now()
	const loadBatch = 200
	pn, pc := naive.Pipeline(), compact.Pipeline()
	for i := 0; i < n; i++ {
		vals := benchEntity(g, rng)
		ent := benchEntityID(i)
		for j := range g.Features {
			pn.Set(ctx, naiveKey(ent, g.Features[j].Name), naiveValue(&g.Features[j], vals[j]), 0)
		}
		pc.HSet(ctx, string(g.RedisKey(nil, ent)), compactRow(g, vals)...)
		if (i+1)%loadBatch == 0 || i == n-1 {
			if _, err := pn.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := pc.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	loadSecs := time.Since(loadStart).Seconds()
	memN := redisInfoField(naive, "memory", "used_memory") - mem0n
	memC := redisInfoField(compact, "memory", "used_memory") - mem0c
	if enc := compact.ObjectEncoding(ctx, string(g.RedisKey(nil, benchEntityID(0)))).Val(); enc != "listpack" {
		b.Fatalf("compact hash encoding %q, want listpack", enc)
	}

	names := make([]string, len(g.Features))
	for j := range names {
		names[j] = g.Features[j].Name
	}
	s, err := Open(Config{Groups: map[string]*Group{"store": g}, Redis: compact})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := s.Plan("store", names, nil)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	out := make([]float64, batch*p.Width())
	present := make([]bool, batch*p.NumFeatures())

	// One 1,000-entity batch, read and decoded into columns, per layout.
	readNaive := func(first int) {
		pipe := naive.Pipeline()
		cmds := make([]*redis.SliceCmd, batch)
		keys := make([]string, len(names))
		for i := 0; i < batch; i++ {
			ent := benchEntityID((first + i) % n)
			for j, name := range names {
				keys[j] = naiveKey(ent, name)
			}
			cmds[i] = pipe.MGet(ctx, keys...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		for i, cmd := range cmds {
			for j, v := range cmd.Val() {
				s, _ := v.(string)
				f := &g.Features[j]
				c := p.Column(j)
				if f.Width() == 1 {
					x, err := strconv.ParseFloat(s, 64)
					if err != nil {
						b.Fatal(err)
					}
					out[c*batch+i] = x
				} else {
					var xs []float64
					if err := json.Unmarshal([]byte(s), &xs); err != nil {
						b.Fatal(err)
					}
					for w, x := range xs {
						out[(c+w)*batch+i] = x
					}
				}
				present[j*batch+i] = true
			}
		}
	}
	ids := make([]string, batch)
	readCompact := func(first int) {
		for i := range ids {
			ids[i] = benchEntityID((first + i) % n)
		}
		vals := make([]string, batch*len(p.fields))
		ok := make([]bool, batch*len(p.fields))
		if err := s.be.get(ctx, g, p.fields, ids, vals, ok); err != nil {
			b.Fatal(err)
		}
		var buf []byte
		nf := len(p.fields)
		for i := range ids {
			var e *entry
			e, buf = s.decodeEntry(p, vals[i*nf:(i+1)*nf], ok[i*nf:(i+1)*nf], len(ids[i]), 0, buf)
			if e.absent {
				b.Fatal("entity absent")
			}
			p.copyOut(e, i, dest{out: out, present: present, n: batch})
		}
	}

	// For the record: the same reads with HMGET of every field instead of HGETALL.
	readHMGet := func(first int) {
		pipe := compact.Pipeline()
		for i := 0; i < batch; i++ {
			pipe.HMGet(ctx, string(g.RedisKey(nil, benchEntityID((first+i)%n))), p.fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}

	// Redis CPU over one pass over all entities per layout.
	cpu := func(c *redis.Client, read func(int)) float64 {
		runtime.GC()
		before := redisCPU(c)
		for first := 0; first < n; first += batch {
			read(first)
		}
		return redisCPU(c) - before
	}
	featureReads := float64(n) * float64(len(g.Features))
	cpuN := cpu(naive, readNaive) / featureReads * 1e6
	cpuC := cpu(compact, readCompact) / featureReads * 1e6
	cpuH := cpu(compact, readHMGet) / featureReads * 1e6

	// Client latency of a 1,000-entity batch: the median of 50 batches per layout. The
	// setup above is far costlier than a batch, so the count does not follow b.N: run with
	// -benchtime 1x.
	lat := func(read func(int)) time.Duration {
		d := make([]time.Duration, 0, 50)
		for k := 0; k < 50; k++ {
			t0 := time.Now()
			read(k * batch * 7) // spread over the key space
			d = append(d, time.Since(t0))
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	latN, latC := lat(readNaive), lat(readCompact)

	b.ReportMetric(float64(n), "entities")
	b.ReportMetric(loadSecs, "load-s")
	b.ReportMetric(memN/float64(n), "naive-B/entity")
	b.ReportMetric(memC/float64(n), "ours-B/entity")
	b.ReportMetric(memN/memC, "memory-ratio")
	b.ReportMetric(cpuN, "naive-cpu-s/1M-reads")
	b.ReportMetric(cpuC, "ours-cpu-s/1M-reads")
	b.ReportMetric(cpuN/cpuC, "cpu-ratio")
	b.ReportMetric(cpuH, "ours-hmget-cpu-s/1M-reads")
	b.ReportMetric(float64(latN.Microseconds()), "naive-µs/batch")
	b.ReportMetric(float64(latC.Microseconds()), "ours-µs/batch")
	b.ReportMetric(float64(latN)/float64(latC), "latency-ratio")
}

// BenchmarkFetchBatch compares a 1,000-entity Fetch answered from the cache with the same
// batch read from Redis (one pipelined round trip over loopback, decoded into columns).
func BenchmarkFetchBatch(b *testing.B) {
	const n, batch = 5000, 1000
	g := benchGroup(b)
	srv := startRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer c.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		pipe.HSet(ctx, string(g.RedisKey(nil, benchEntityID(i))), compactRow(g, benchEntity(g, rng))...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	names := make([]string, len(g.Features))
	for j := range names {
		names[j] = g.Features[j].Name
	}
	s, err := Open(Config{Groups: map[string]*Group{"store": g}, Redis: c, CacheBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, _ := s.Plan("store", names, nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = benchEntityID(i)
	}
	out := make([]float64, batch*p.Width())
	present := make([]bool, batch*p.NumFeatures())
	for k := 0; k < n; k += batch { // warm the cache
		if res, err := s.Fetch(ctx, p, ids[k:k+batch], out, present); err != nil || res.Degraded {
			b.Fatal(res, err)
		}
	}
	nf := len(p.fields)
	vals := make([]string, batch*nf)
	ok := make([]bool, batch*nf)
	var buf []byte
	fromRedis := func(k int) {
		clear(ok)
		sub := ids[k : k+batch]
		if err := s.be.get(ctx, g, p.fields, sub, vals, ok); err != nil {
			b.Fatal(err)
		}
		for i := range sub {
			var e *entry
			e, buf = s.decodeEntry(p, vals[i*nf:(i+1)*nf], ok[i*nf:(i+1)*nf], len(sub[i]), 0, buf)
			p.copyOut(e, i, dest{out: out, present: present, n: batch})
		}
	}
	fromCache := func(k int) {
		res, err := s.Fetch(ctx, p, ids[k:k+batch], out, present)
		if err != nil || res.Hits != batch {
			b.Fatal(res, err)
		}
	}
	fromCacheRows := func(k int) {
		res, err := s.FetchRows(ctx, p, ids[k:k+batch], out, present)
		if err != nil || res.Hits != batch {
			b.Fatal(res, err)
		}
	}
	timeIt := func(f func(int), iters int) time.Duration {
		t0 := time.Now()
		for it := 0; it < iters; it++ {
			f((it * batch) % n)
		}
		return time.Since(t0) / time.Duration(iters)
	}
	b.ReportAllocs()
	b.ResetTimer()
	// Interleave the rounds so that a change of machine load hits all three alike.
	var redisT, cacheT, rowsT time.Duration
	rounds := max(b.N/20, 1) // the slow baseline needs fewer rounds
	for r := 0; r < rounds; r++ {
		redisT += timeIt(fromRedis, 1)
		cacheT += timeIt(fromCache, 20)
		rowsT += timeIt(fromCacheRows, 20)
	}
	b.StopTimer()
	redisT, cacheT, rowsT = redisT/time.Duration(rounds), cacheT/time.Duration(rounds), rowsT/time.Duration(rounds)
	b.ReportMetric(float64(redisT.Microseconds()), "redis-µs/batch")
	b.ReportMetric(float64(cacheT.Nanoseconds())/1000, "cache-µs/batch")
	b.ReportMetric(float64(rowsT.Nanoseconds())/1000, "cache-rows-µs/batch")
	b.ReportMetric(float64(redisT)/float64(cacheT), "speedup")
	b.ReportMetric(float64(redisT)/float64(rowsT), "speedup-rows")
}

// BenchmarkCacheLookup measures one entity-group lookup in our cache against otter v2 (the
// candidate in go.mod) holding the same entries: 1k entries (a hot set that stays in CPU
// caches) and 100k (mostly memory misses).
func BenchmarkCacheLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		keys := make([]cacheKey, n)
		own := newCache(1<<30, 64)
		oc := otter.Must(&otter.Options[cacheKey, *entry]{
			MaximumWeight:    1 << 30,
			Weigher:          func(_ cacheKey, e *entry) uint32 { return uint32(e.size) },
			ExpiryCalculator: otter.ExpiryWriting[cacheKey, *entry](time.Hour),
		})
		for i := range keys {
			keys[i] = cacheKey{plan: 1, entity: benchEntityID(i)}
			e := &entry{vals: make([]float64, 233), present: make([]bool, 50), size: 2200}
			h := keyHash(keys[i])
			cl, _ := own.begin(keys[i], h)
			own.finish(keys[i], h, cl, e, nil)
			oc.Set(keys[i], e)
		}
		var sink atomic.Int64
		b.Run(fmt.Sprintf("own/%d", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i, hits := rand.IntN(n), 0
				for pb.Next() {
					k := keys[i%n]
					if e := own.get(k, keyHash(k)); e != nil {
						hits++
					}
					i++
				}
				sink.Add(int64(hits))
			})
		})
		b.Run(fmt.Sprintf("otter/%d", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i, hits := rand.IntN(n), 0
				for pb.Next() {
					if _, ok := oc.GetIfPresent(keys[i%n]); ok {
						hits++
					}
					i++
				}
				sink.Add(int64(hits))
			})
		})
	}
}

// BenchmarkVectorCodec compresses realistic lists (20 recent small counts) and embeddings
// (64 normal floats) with each codec: the size ratio and the decode time (decompress and
// widen to float64) pick the default. The stored size includes the codec byte.
func BenchmarkVectorCodec(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 7))
	const samples = 256
	kinds := map[string][][]float32{}
	for s := 0; s < samples; s++ {
		l := make([]float32, 20)
		for k := range l {
			l[k] = float32(rng.IntN(30))
		}
		e := make([]float32, 64)
		for k := range e {
			e[k] = float32(rng.NormFloat64() * 0.1)
		}
		kinds["list20"] = append(kinds["list20"], l)
		kinds["emb64"] = append(kinds["emb64"], e)
	}
	for _, kind := range []string{"list20", "emb64"} {
		for _, name := range []string{"none", "s2", "snappy", "zstd", "shuffle-snappy"} {
			c, _ := codecByName(name)
			b.Run(kind+"/"+name, func(b *testing.B) {
				encs := make([][]byte, samples)
				var raw, packed int
				for s, v := range kinds[kind] {
					// Force the codec (appendVector would fall back to none when it does not pay).
					encs[s] = forceVector(c, v)
					raw += 4*len(v) + 1
					packed += len(encs[s])
				}
				buf := make([]byte, 4*64)
				b.SetBytes(int64(raw / samples))
				b.ReportAllocs()
				b.ResetTimer()
				vals := make([]float64, 64)
				f := &Feature{Name: kind, Type: List, Len: 64}
				for i := 0; i < b.N; i++ {
					// The whole decode: decompress and widen into float64 columns.
					if _, err := decodeNumeric(f, encs[i%samples], vals, buf); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(packed)/float64(raw), "size-ratio")
			})
		}
	}
}

func forceVector(c codec, v []float32) []byte {
	if c == codecShuffle {
		return appendVector(nil, c, v) // falls back to none when it does not pay
	}
	raw := make([]byte, 0, 4*len(v))
	for _, x := range v {
		raw = append(raw, byte(math.Float32bits(x)), byte(math.Float32bits(x)>>8), byte(math.Float32bits(x)>>16), byte(math.Float32bits(x)>>24))
	}
	switch c {
	case codecS2:
		return append([]byte{byte(c)}, s2.Encode(nil, raw)...)
	case codecSnappy:
		return append([]byte{byte(c)}, s2.EncodeSnappy(nil, raw)...)
	case codecZstd:
		enc, _ := zstdCodecs()
		return enc.EncodeAll(raw, []byte{byte(c)})
	}
	return append([]byte{byte(c)}, raw...)
}

// BenchmarkFetchHit is the cache-hit path alone: a 1,000-entity Fetch of the benchmark
// group (233 columns) answered entirely from the cache.
func BenchmarkFetchHit(b *testing.B) {
	const batch = 1000
	g := benchGroup(b)
	e := NewEmbedded()
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, batch)
	for i := range ids {
		ids[i] = benchEntityID(i)
		args := compactRow(g, benchEntity(g, rng))
		var fields []Field
		for k := 0; k < len(args); k += 2 {
			fields = append(fields, Field{ID: uint32FromKey(args[k].(string)), Value: args[k+1].([]byte)})
		}
		e.Put("store", ids[i], fields)
	}
	s, err := Open(Config{Groups: map[string]*Group{"store": g}, Embedded: e})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	names := make([]string, len(g.Features))
	for j := range names {
		names[j] = g.Features[j].Name
	}
	p, _ := s.Plan("store", names, nil)
	out := make([]float64, batch*p.Width())
	present := make([]bool, batch*p.NumFeatures())
	ctx := context.Background()
	if res, err := s.Fetch(ctx, p, ids, out, present); err != nil || res.Degraded || res.Absent != 0 {
		b.Fatal(res, err)
	}
	for _, layout := range []struct {
		name  string
		fetch func(context.Context, *Plan, []string, []float64, []bool) (Result, error)
	}{{"columns", s.Fetch}, {"rows", s.FetchRows}} {
		b.Run(layout.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if res, err := layout.fetch(ctx, p, ids, out, present); err != nil || res.Hits != batch {
					b.Fatal(res, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/entity")
		})
	}
}

func uint32FromKey(k string) uint32 {
	return uint32(k[0]) | uint32(k[1])<<8 | uint32(k[2])<<16 | uint32(k[3])<<24
}

// BenchmarkFetchHitMetrics is a small cache-hit Fetch without metrics and with the
// OpenTelemetry SDK counting (lookups, cache lookups by result, hits): what the counters
// add per Fetch.
func BenchmarkFetchHitMetrics(b *testing.B) {
	g := shopGroup(b)
	e := NewEmbedded()
	rows := genShopRows(16, 10)
	loadShop(b, g, e, rows)
	for _, withSDK := range []bool{false, true} {
		var meter metric.Meter
		name := "noop"
		if withSDK {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			defer mp.Shutdown(context.Background())
			meter, name = mp.Meter("bench"), "sdk"
		}
		s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e, Meter: meter})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		p, _ := s.Plan("shop", []string{"rating", "orders"}, nil)
		for _, batch := range []int{1, 16} {
			ids := make([]string, batch)
			for i := range ids {
				ids[i] = rows[i].id
			}
			out, present := make([]float64, batch*p.Width()), make([]bool, batch*p.NumFeatures())
			ctx := context.Background()
			s.FetchRows(ctx, p, ids, out, present)
			b.Run(fmt.Sprintf("%s/batch=%d", name, batch), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if res, err := s.FetchRows(ctx, p, ids, out, present); err != nil || res.Hits != batch {
						b.Fatal(res, err)
					}
				}
			})
		}
	}
}
