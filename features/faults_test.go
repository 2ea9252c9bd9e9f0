package features

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisKilledDuringReads kills redis-server (SIGKILL) while clients fetch with short
// deadlines: no Fetch fails, results turn degraded (stale cache for entities read before,
// defaults for the rest), the breaker opens, and after a restart the store recovers alone.
func TestRedisKilledDuringReads(t *testing.T) {
	g := shopGroup(t)
	g.TTL = Duration(50 * time.Millisecond) // entries go stale fast; MaxStale stays 1h
	r := startRedis(t)
	c := newClient(t, r.addr())
	rows := genShopRows(200, 4)
	loadShop(t, g, RedisSink{Client: c}, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Redis: c, BreakerCooldown: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.Plan("shop", []string{"rating", "orders"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	warm := make([]string, 100) // read before the crash: answered stale afterwards
	for i := range warm {
		warm[i] = rows[i].id
	}
	fetch := func(ids []string) (Result, []float64, []bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		out := make([]float64, len(ids)*p.Width())
		present := make([]bool, len(ids)*p.NumFeatures())
		res, err := s.Fetch(ctx, p, ids, out, present)
		return res, out, present, err
	}
	if res, _, _, err := fetch(warm); err != nil || res.Degraded {
		t.Fatalf("warm-up: %+v %v", res, err)
	}

	var (
		phase    atomic.Int32 // 0 up, 1 killed, 2 restarted
		calls    atomic.Int64
		failed   atomic.Int64
		degraded [3]atomic.Int64
		wrong    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ph := phase.Load()
				ids := []string{warm[rng.IntN(len(warm))], rows[100+rng.IntN(100)].id}
				res, out, present, err := fetch(ids)
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				if res.Degraded {
					degraded[ph].Add(1)
					// Every value is the entity's real one (from stale cache) or the default.
					for i, id := range ids {
						real := rows[indexOf(rows, id)].rating
						if present[i] && (real == nil || out[i] != float64(*real)) || !present[i] && out[i] != 3.5 {
							wrong.Add(1)
						}
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}(uint64(w))
	}
	time.Sleep(200 * time.Millisecond)
	r.kill()
	phase.Store(1)
	time.Sleep(700 * time.Millisecond)
	_, opens := s.breaker.snapshot()
	r.start()
	loadShop(t, g, RedisSink{Client: c}, rows) // the crash lost the data (no persistence)
	phase.Store(2)
	// Recovery: without anyone resetting anything, fetches stop being degraded.
	deadline := time.Now().Add(10 * time.Second)
	recovered := false
	for time.Now().Before(deadline) {
		res, _, _, err := fetch([]string{rows[150].id, rows[10].id})
		if err == nil && !res.Degraded {
			recovered = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("calls %d, degraded while up/killed/restarted: %d/%d/%d, breaker opened %d times",
		calls.Load(), degraded[0].Load(), degraded[1].Load(), degraded[2].Load(), opens)
	if failed.Load() != 0 {
		t.Errorf("%d of %d fetches failed", failed.Load(), calls.Load())
	}
	if degraded[1].Load() == 0 {
		t.Error("no degraded result while Redis was down")
	}
	if wrong.Load() != 0 {
		t.Errorf("%d degraded results carried neither the stale value nor the default", wrong.Load())
	}
	if opens == 0 {
		t.Error("the circuit breaker never opened while Redis was down")
	}
	if !recovered {
		t.Error("fetches still degraded 10s after Redis came back")
	}
}

func indexOf(rows []shopRow, id string) int {
	for i := range rows {
		if rows[i].id == id {
			return i
		}
	}
	panic("BUG: unknown id " + id)
}

// TestSlowRedisAnswersByDeadline blocks Redis (DEBUG SLEEP) and checks that Fetch answers
// from defaults with the deadline as the cause instead of waiting for Redis, which would
// have answered successfully after the sleep.
func TestSlowRedisAnswersByDeadline(t *testing.T) {
	g := shopGroup(t)
	r := startRedis(t, "--enable-debug-command", "yes")
	c := newClient(t, r.addr())
	rows := genShopRows(10, 5)
	loadShop(t, g, RedisSink{Client: c}, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Redis: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, _ := s.Plan("shop", []string{"rating"}, nil)
	sleeper := newClient(t, r.addr())
	done := make(chan error, 1)
	go func() { done <- sleeper.Do(context.Background(), "DEBUG", "SLEEP", "1").Err() }()
	time.Sleep(100 * time.Millisecond) // let the sleep start
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	out, present := make([]float64, 1), make([]bool, 1)
	res, err := s.Fetch(ctx, p, []string{rows[0].id}, out, present)
	if err != nil || !res.Degraded || res.Defaulted != 1 || out[0] != 3.5 || present[0] ||
		!errors.Is(res.Cause, context.DeadlineExceeded) {
		t.Fatalf("fetch during DEBUG SLEEP: %+v out %v present %v err %v", res, out, present, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// countingBackend counts backend reads of the embedded store and can hold them back.
type countingBackend struct {
	*Embedded
	reads   atomic.Int64
	entites atomic.Int64
	gate    chan struct{}
}

func (b *countingBackend) get(ctx context.Context, g *Group, fields, entities []string, vals []string, ok []bool) error {
	b.reads.Add(1)
	b.entites.Add(int64(len(entities)))
	if b.gate != nil {
		<-b.gate
	}
	return b.Embedded.get(ctx, g, fields, entities, vals, ok)
}

func TestSingleFlightAndNegativeCache(t *testing.T) {
	g := shopGroup(t)
	e := NewEmbedded()
	rows := genShopRows(5, 6)
	loadShop(t, g, e, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	be := &countingBackend{Embedded: e, gate: make(chan struct{})}
	s.be = be
	p, _ := s.Plan("shop", []string{"rating"}, nil)
	ids := []string{rows[0].id, "ghost"}
	var wg sync.WaitGroup
	results := make([]Result, 8)
	for w := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, present := make([]float64, 2), make([]bool, 2)
			results[w], _ = s.Fetch(context.Background(), p, ids, out, present)
		}()
	}
	for be.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the other fetches join the read in flight
	close(be.gate)
	wg.Wait()
	if n := be.entites.Load(); n != 2 {
		t.Errorf("8 concurrent fetches of 2 keys read %d entities from the backend, want 2", n)
	}
	for _, res := range results {
		if res.Degraded || res.Absent != 1 {
			t.Errorf("result %+v", res)
		}
	}
	// The absent entity is cached too (negative caching): no further backend reads.
	out, present := make([]float64, 2), make([]bool, 2)
	res, _ := s.Fetch(context.Background(), p, ids, out, present)
	if be.entites.Load() != 2 || res.Hits != 1 || res.Absent != 1 || out[1] != 3.5 || present[1] {
		t.Errorf("second fetch: %+v out %v backend entities %d", res, out, be.entites.Load())
	}
}

func TestCacheBoundedInBytes(t *testing.T) {
	g := shopGroup(t)
	e := NewEmbedded()
	rows := genShopRows(2000, 7)
	loadShop(t, g, e, rows)
	const budget = 64 << 10
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e, CacheBytes: budget, CacheShards: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, _ := s.Plan("shop", []string{"emb", "rating"}, nil)
	for _, r := range rows {
		out, present := make([]float64, p.Width()), make([]bool, 2)
		if res, err := s.Fetch(context.Background(), p, []string{r.id}, out, present); err != nil || res.Degraded {
			t.Fatal(res, err)
		}
	}
	if b := s.cache.bytes.Load(); b > budget || b < budget/2 {
		t.Errorf("cache holds %d bytes, budget %d", b, budget)
	}
	if s.cache.evictions.Load() == 0 || s.cache.len() >= len(rows) {
		t.Errorf("%d evictions, %d entries", s.cache.evictions.Load(), s.cache.len())
	}
}

func TestBreaker(t *testing.T) {
	b := breaker{failures: 3, cooldown: time.Second}
	now := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		b.record(false, now)
	}
	if !b.allow(now) {
		t.Fatal("open after 2 of 3 failures")
	}
	b.record(false, now)
	if b.allow(now.Add(999 * time.Millisecond)) {
		t.Fatal("allowed during cooldown")
	}
	if !b.allow(now.Add(time.Second)) || b.allow(now.Add(time.Second)) {
		t.Fatal("want exactly one probe after the cooldown")
	}
	b.record(false, now.Add(time.Second)) // the probe failed: open again
	if b.allow(now.Add(1500 * time.Millisecond)) {
		t.Fatal("allowed right after a failed probe")
	}
	if !b.allow(now.Add(2 * time.Second)) {
		t.Fatal("no probe after the second cooldown")
	}
	b.record(true, now.Add(2*time.Second))
	if st, opens := b.snapshot(); st != breakerClosed || opens != 1 || !b.allow(now.Add(2*time.Second)) {
		t.Fatalf("after a good probe: state %d opens %d", st, opens)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	g := shopGroup(t)
	g.TTL = Duration(20 * time.Millisecond)
	e := NewEmbedded()
	rows := genShopRows(3, 12)
	loadShop(t, g, e, rows)
	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, StaleWhileRevalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	be := &countingBackend{Embedded: e}
	s.be = be
	p, _ := s.Plan("shop", []string{"rating"}, nil)
	ids := []string{rows[0].id}
	out, present := make([]float64, 1), make([]bool, 1)
	fetch := func() Result {
		t.Helper()
		res, err := s.Fetch(context.Background(), p, ids, out, present)
		if err != nil || res.Degraded {
			t.Fatalf("%+v %v", res, err)
		}
		return res
	}
	fetch()
	time.Sleep(30 * time.Millisecond) // past the TTL, within TTL+StaleWhileRevalidate
	if res := fetch(); res.Hits != 1 {
		t.Fatalf("stale entry not served at once: %+v", res)
	}
	s.wg.Wait() // the background refresh
	if n := be.reads.Load(); n != 2 {
		t.Fatalf("%d backend reads, want 2 (the miss and one refresh)", n)
	}
	k := cacheKey{p.id, ids[0]}
	if e := s.cache.get(k, keyHash(k)); e == nil || e.refresh.Load() {
		t.Fatal("the refresh did not replace the entry")
	}
}

// TestRefusedAnsweredAtOnce: with nothing listening on Redis' port, every Fetch is
// answered degraded after at most one dial, not after go-redis' default five attempts
// 100 ms apart. The dials are counted (a timing assertion would be flaky); the times
// are logged.
func TestRefusedAnsweredAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections to addr are now refused
	for _, cluster := range []bool{false, true} {
		var dials atomic.Int64
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		var c redis.UniversalClient
		if cluster {
			o := &redis.ClusterOptions{Addrs: []string{addr}, Dialer: dial}
			FailFastCluster(o, 200*time.Millisecond)
			c = redis.NewClusterClient(o)
		} else {
			o := &redis.Options{Addr: addr, Dialer: dial}
			FailFast(o, 200*time.Millisecond)
			c = redis.NewClient(o)
		}
		s, err := Open(Config{Groups: map[string]*Group{"shop": shopGroup(t)}, Redis: c})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Plan("shop", []string{"rating", "orders"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		const fetches = 20
		for i := range fetches {
			ids := []string{fmt.Sprintf("s%d", i)} // a new entity each time: no negative cache
			out, present := make([]float64, p.Width()), make([]bool, p.NumFeatures())
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			start := time.Now()
			res, err := s.Fetch(ctx, p, ids, out, present)
			slowest = max(slowest, time.Since(start))
			cancel()
			if err != nil || !res.Degraded {
				t.Fatalf("cluster=%v fetch %d: %+v %v, want a degraded answer", cluster, i, res, err)
			}
		}
		s.Close()
		c.Close()
		t.Logf("cluster=%v: %d fetches, %d dials, slowest %v", cluster, fetches, dials.Load(), slowest)
		if n := dials.Load(); n > fetches {
			t.Errorf("cluster=%v: %d dials for %d fetches: the client retries dials on its own", cluster, n, fetches)
		}
	}
}
