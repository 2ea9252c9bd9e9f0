package features

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
)

// ErrCircuitOpen is the cause of a degraded Result while the circuit breaker keeps requests
// away from a failing Redis.
var ErrCircuitOpen = errors.New("feature store circuit breaker is open")

// Config configures a Store. Only Groups is required.
type Config struct {
	// Groups are the feature groups the store serves, by name (see LoadGroups).
	Groups map[string]*Group
	// Redis is the feature store (a *redis.Client or *redis.ClusterClient). Nil selects the
	// embedded store.
	Redis redis.UniversalClient
	// Embedded is the in-process store used when Redis is nil; nil means an empty one
	// (every entity absent, every value its default).
	Embedded *Embedded
	// CacheBytes bounds the local cache; default 256 MiB. The bound counts decoded values
	// plus a fixed per-entry overhead.
	CacheBytes int64
	// CacheShards is the number of cache shards, rounded up to a power of two; default 64.
	CacheShards int
	// StaleWhileRevalidate, when positive, lets an entry up to TTL+StaleWhileRevalidate old
	// answer at once (not degraded) while one background read refreshes it; default 0 (off).
	StaleWhileRevalidate time.Duration
	// FetchTimeout bounds one backend round trip; default 1s. A read outlives the request
	// that started it (up to this bound) so that a late answer still warms the cache.
	FetchTimeout time.Duration
	// Reserve is how long before the request's deadline Fetch stops waiting for Redis and
	// answers from stale cache or defaults; default 500µs.
	Reserve time.Duration
	// BreakerFailures is how many failed or late backend reads in a row open the circuit
	// breaker; default 5.
	BreakerFailures int
	// BreakerCooldown is how long an open breaker refuses reads before one probe read may
	// close it; default 1s.
	BreakerCooldown time.Duration
	// Meter receives the store's metrics; nil means no metrics.
	Meter metric.Meter
}

// backend reads raw field values. vals[i*len(fields)+j] is field j of entities[i], valid
// where ok says so. It is safe for concurrent use.
type backend interface {
	get(ctx context.Context, g *Group, fields []string, entities []string, vals []string, ok []bool) error
}

// Store answers batch feature reads from a local cache in front of Redis or the embedded
// store. It is safe for concurrent use.
type Store struct {
	cfg     Config
	groups  atomic.Pointer[map[string]*Group] // cfg.Groups, then what SetGroups set
	be      backend
	cache   *cache
	breaker breaker
	m       *storeMetrics
	nplans  atomic.Uint32
	plans   sync.Map  // plan id → weak.Pointer[Plan]: the plans whose cache entries Inspect reads
	pool    sync.Pool // *fetchScratch
	closed  atomic.Bool
	wg      sync.WaitGroup // background reads
}

// Open builds a Store. It does not contact Redis: a Redis that is down at start is a
// degraded store, not an error.
func Open(cfg Config) (*Store, error) {
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = 256 << 20
	}
	if cfg.CacheBytes < 0 {
		return nil, fmt.Errorf("features: CacheBytes %d is negative", cfg.CacheBytes)
	}
	if cfg.CacheShards <= 0 {
		cfg.CacheShards = 64
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = time.Second
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = 500 * time.Microsecond
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = time.Second
	}
	s := &Store{cfg: cfg, cache: newCache(cfg.CacheBytes, cfg.CacheShards)}
	groups := cfg.Groups
	s.groups.Store(&groups)
	s.breaker = breaker{failures: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown}
	switch {
	case cfg.Redis != nil:
		s.be = &redisBackend{c: cfg.Redis}
	case cfg.Embedded != nil:
		s.be = cfg.Embedded
	default:
		s.be = NewEmbedded()
	}
	m, err := newStoreMetrics(cfg.Meter, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Close waits for background reads to end. Fetch must not be called after Close.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.wg.Wait()
	return s.m.close()
}

// Plan resolves a feature list of a group for Fetch. overrides replace declared defaults
// (a model's `default:`). Call it once per model and group, not per request.
func (s *Store) Plan(group string, names []string, overrides map[string]float64) (*Plan, error) {
	g, ok := (*s.groups.Load())[group]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	p, err := newPlan(g, names, overrides)
	if err != nil {
		return nil, err
	}
	p.store = s
	p.id = s.nplans.Add(1)
	s.plans.Store(p.id, weak.Make(p))
	return p, nil
}

// Result says how a Fetch was answered. A Fetch never fails because the store is slow or
// down: it answers from stale cache or defaults and sets Degraded.
type Result struct {
	// Degraded is true when some entity was answered from stale cache or defaults because
	// the backend failed, timed out or the breaker was open.
	Degraded bool
	// Stale counts entities answered from cache entries older than the group's TTL (at
	// most MaxStale old) because the backend could not answer.
	Stale int
	// Defaulted counts entities answered with defaults because the backend could not
	// answer and no usable cache entry existed.
	Defaulted int
	// Absent counts entities the store does not hold (defaults, not degraded).
	Absent int
	// Hits counts entities answered from fresh cache entries.
	Hits int
	// Cause says why the result is degraded: the backend's error, the deadline, or
	// ErrCircuitOpen. Nil when not degraded.
	Cause error
}

type fetchScratch struct {
	miss  []int
	old   []*entry
	calls []*call
	own   []int
	swr   []string
}

func (fs *fetchScratch) reset() {
	clear(fs.old)
	clear(fs.calls)
	fs.miss, fs.old, fs.calls, fs.own, fs.swr = fs.miss[:0], fs.old[:0], fs.calls[:0], fs.own[:0], fs.swr[:0]
}

// Fetch reads plan p's features of entities into caller-provided columnar buffers: out
// holds p.Width() columns of len(entities) values (value c of entity i at
// out[c*len(entities)+i]), present holds p.NumFeatures() columns (present[j*len(entities)+i]
// is true when feature j of entity i came from the store, false when it is the default or
// NaN). Fresh cache entries answer at once; the misses are read from the backend in one
// pipelined round trip, shared with concurrent Fetches of the same keys. Fetch returns by
// ctx's deadline (less Config.Reserve): what the backend has not answered by then, or cannot
// answer, comes from stale cache or defaults and the Result is Degraded. The error is
// non-nil only for misuse (buffer sizes, a plan of another store). Fetch does not keep
// entities, out or present after it returns; it is safe for concurrent use.
func (s *Store) Fetch(ctx context.Context, p *Plan, entities []string, out []float64, present []bool) (Result, error) {
	return s.fetch(ctx, p, entities, dest{out: out, present: present, n: len(entities)})
}

// FetchRows is Fetch with row-major buffers: entity i's values are
// out[i*p.Width():(i+1)*p.Width()] and its presence present[i*p.NumFeatures():...]. A cache
// hit is then one copy per entity instead of one store per column, several times faster for
// wide plans (BenchmarkFetchHit), and rows match the model's row-major input.
func (s *Store) FetchRows(ctx context.Context, p *Plan, entities []string, out []float64, present []bool) (Result, error) {
	return s.fetch(ctx, p, entities, dest{out: out, present: present, n: len(entities), rows: true})
}

// dest is where a fetch writes: n entities' values and presence, by column or by row.
type dest struct {
	out     []float64
	present []bool
	n       int
	rows    bool
}

func (s *Store) fetch(ctx context.Context, p *Plan, entities []string, d dest) (Result, error) {
	n := len(entities)
	if p == nil || p.store != s {
		return Result{}, fmt.Errorf("features: plan was not made by this store")
	}
	if len(d.out) != n*p.width || len(d.present) != n*len(p.feats) {
		return Result{}, fmt.Errorf("%w: %d entities of group %q need out of %d and present of %d, got %d and %d",
			ErrShape, n, p.g.Name, n*p.width, n*len(p.feats), len(d.out), len(d.present))
	}
	var res Result
	now := time.Now().UnixNano()
	ttl, swr := int64(p.g.TTL), int64(s.cfg.StaleWhileRevalidate)
	fs, _ := s.pool.Get().(*fetchScratch)
	if fs == nil {
		fs = &fetchScratch{}
	}
	defer func() { fs.reset(); s.pool.Put(fs) }()

	revalidating := 0 // entities answered past their TTL (metrics)
	for i, ent := range entities {
		k := cacheKey{p.id, ent}
		h := keyHash(k)
		e := s.cache.get(k, h)
		if e != nil {
			age := now - e.fetched
			if age < ttl || (swr > 0 && age < ttl+swr) {
				if age >= ttl {
					revalidating++
					if e.refresh.CompareAndSwap(false, true) {
						fs.swr = append(fs.swr, ent)
					}
				}
				e.used.Store(now)
				p.copyOut(e, i, d)
				if e.absent {
					res.Absent++
				} else {
					res.Hits++
				}
				continue
			}
		}
		fs.miss = append(fs.miss, i)
		fs.old = append(fs.old, e)
	}
	if len(fs.swr) > 0 {
		s.revalidate(p, fs.swr)
	}
	if len(fs.miss) > 0 {
		s.fetchMisses(ctx, p, entities, d, fs, &res, now)
	}
	s.m.record(p.g.Name, n, &res, len(fs.miss), revalidating)
	return res, nil
}

// fetchMisses reads the missed entities (fs.miss) from the backend, or answers them from
// stale cache or defaults.
func (s *Store) fetchMisses(ctx context.Context, p *Plan, entities []string, d dest, fs *fetchScratch, res *Result, now int64) {
	if !s.breaker.allow(time.Now()) {
		for j, i := range fs.miss {
			s.fallback(p, fs.old[j], i, d, res, now, ErrCircuitOpen)
		}
		return
	}
	for j, i := range fs.miss {
		k := cacheKey{p.id, entities[i]}
		h := keyHash(k)
		cl, owner := s.cache.begin(k, h)
		fs.calls = append(fs.calls, cl)
		if owner {
			fs.own = append(fs.own, j)
		}
	}
	if len(fs.own) > 0 {
		keys := make([]string, len(fs.own))
		calls := make([]*call, len(fs.own))
		for x, j := range fs.own {
			keys[x] = strings.Clone(entities[fs.miss[j]])
			calls[x] = fs.calls[j]
		}
		var waitUntil time.Time
		if d, ok := ctx.Deadline(); ok {
			waitUntil = d.Add(-s.cfg.Reserve)
		}
		s.wg.Add(1)
		go s.read(p, keys, calls, waitUntil)
	}
	var timeout <-chan time.Time
	if d, ok := ctx.Deadline(); ok {
		t := time.NewTimer(time.Until(d.Add(-s.cfg.Reserve)))
		defer t.Stop()
		timeout = t.C
	}
	var cause error
	for j, i := range fs.miss {
		cl := fs.calls[j]
		if cause == nil {
			select {
			case <-cl.done:
			case <-ctx.Done():
				cause = ctx.Err()
			case <-timeout:
				cause = context.DeadlineExceeded
			}
		}
		if cause == nil && cl.e != nil {
			p.copyOut(cl.e, i, d)
			if cl.e.absent {
				res.Absent++
			}
			continue
		}
		why := cause
		if why == nil {
			why = cl.err
		}
		s.fallback(p, fs.old[j], i, d, res, now, why)
	}
}

// fallback answers entity i from e when it is at most MaxStale old, else with defaults.
func (s *Store) fallback(p *Plan, e *entry, i int, d dest, res *Result, now int64, cause error) {
	res.Degraded = true
	if res.Cause == nil {
		res.Cause = cause
	}
	if e != nil && now-e.fetched < int64(p.g.MaxStale) {
		p.copyOut(e, i, d)
		res.Stale++
		return
	}
	p.copyOut(p.defaultEntry, i, d)
	res.Defaulted++
}

// copyOut writes entry e as entity i.
func (p *Plan) copyOut(e *entry, i int, d dest) {
	if d.rows {
		copy(d.out[i*p.width:(i+1)*p.width], e.vals)
		copy(d.present[i*len(p.feats):(i+1)*len(p.feats)], e.present)
		return
	}
	n := d.n
	for c, v := range e.vals {
		d.out[c*n+i] = v
	}
	for j, ok := range e.present {
		d.present[j*n+i] = ok
	}
}

// read is the single backend round trip for owned misses: it publishes an entry (or the
// failure) for each key and tells the breaker how it went. A read that ends after its
// requester stopped waiting (waitUntil) counts as a failure for the breaker: a Redis that
// answers too late is as useless as one that does not answer.
func (s *Store) read(p *Plan, keys []string, calls []*call, waitUntil time.Time) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FetchTimeout)
	defer cancel()
	nf := len(p.fields)
	vals := make([]string, len(keys)*nf)
	ok := make([]bool, len(keys)*nf)
	err := s.be.get(ctx, p.g, p.fields, keys, vals, ok)
	late := !waitUntil.IsZero() && time.Now().After(waitUntil)
	s.breaker.record(err == nil && !late, time.Now())
	if err != nil {
		s.m.backendErrors.Add(context.Background(), 1)
		err = fmt.Errorf("feature group %q: %w", p.g.Name, err)
	}
	now := time.Now().UnixNano()
	var buf []byte
	for x, k := range keys {
		ck := cacheKey{p.id, k}
		if err != nil {
			s.cache.finish(ck, keyHash(ck), calls[x], nil, err)
			continue
		}
		var e *entry
		e, buf = s.decodeEntry(p, vals[x*nf:(x+1)*nf], ok[x*nf:(x+1)*nf], len(k), now, buf)
		s.cache.finish(ck, keyHash(ck), calls[x], e, nil)
	}
}

// revalidate refreshes entries served stale-while-revalidate, in the background.
func (s *Store) revalidate(p *Plan, ents []string) {
	if !s.breaker.allow(time.Now()) {
		return
	}
	keys := make([]string, 0, len(ents))
	calls := make([]*call, 0, len(ents))
	for _, ent := range ents {
		k := cacheKey{p.id, ent}
		cl, owner := s.cache.begin(k, keyHash(k))
		if owner {
			keys = append(keys, strings.Clone(ent))
			calls = append(calls, cl)
		}
	}
	if len(keys) > 0 {
		s.wg.Add(1)
		go s.read(p, keys, calls, time.Time{})
	}
}

// decodeEntry builds a cache entry from one entity's raw fields (vals[0] the timestamp).
// A value that does not decode counts as absent (and as a decode error): one corrupt field
// must not fail a request.
func (s *Store) decodeEntry(p *Plan, vals []string, ok []bool, keyLen int, now int64, buf []byte) (*entry, []byte) {
	e := &entry{fetched: now, vals: make([]float64, p.width), present: make([]bool, len(p.feats))}
	e.used.Store(now)
	e.size = int64(8*p.width+len(p.feats)+keyLen) + entryOverhead
	e.absent = !ok[0]
	if e.absent {
		for j := range p.feats {
			ok[j+1] = false
		}
	}
	for j, f := range p.feats {
		c := p.col[j]
		if ok[j+1] {
			var err error
			buf, err = decodeNumeric(f, bytesOf(vals[j+1]), e.vals[c:c+f.Width()], buf)
			if err == nil {
				e.present[j] = true
				continue
			}
			s.m.decodeErrors.Add(context.Background(), 1)
		}
		for w := range f.Width() {
			e.vals[c+w] = p.defaults[j]
		}
	}
	return e, buf
}

// Group returns the store's declaration of group name.
func (s *Store) Group(name string) (*Group, bool) {
	g, ok := (*s.groups.Load())[name]
	return g, ok
}

// SetGroups replaces the store's group declarations (a reload of the *.group.yaml
// files). Plans made before keep the declarations they were made with and keep working;
// Plan, Group and Lookup use the new ones from now on. A changed group's new plans get
// their own cache entries (entries are keyed by plan), so no value decoded under the old
// declaration is read under the new one.
func (s *Store) SetGroups(groups map[string]*Group) {
	s.groups.Store(&groups)
	s.m.addGroups(groups)
}

// Lookup reads every feature of one entity straight from the backend (no cache), decoded by
// type; found is false when the store does not hold the entity. For tools and tests.
func (s *Store) Lookup(ctx context.Context, group, entity string) (vals map[string]Value, updated time.Time, found bool, err error) {
	g, ok := (*s.groups.Load())[group]
	if !ok {
		return nil, time.Time{}, false, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	return lookup(ctx, s.be, g, entity)
}

func lookup(ctx context.Context, be backend, g *Group, entity string) (map[string]Value, time.Time, bool, error) {
	fields := []string{string(fieldKey(nil, timestampField))}
	for i := range g.Features {
		fields = append(fields, string(fieldKey(nil, g.Features[i].id)))
	}
	raw := make([]string, len(fields))
	ok := make([]bool, len(fields))
	if err := be.get(ctx, g, fields, []string{entity}, raw, ok); err != nil {
		return nil, time.Time{}, false, err
	}
	if !ok[0] {
		return nil, time.Time{}, false, nil
	}
	ts, err := decodeTimestamp(raw[0])
	if err != nil {
		return nil, time.Time{}, true, err
	}
	vals := make(map[string]Value, len(g.Features))
	for i := range g.Features {
		if !ok[i+1] {
			continue
		}
		v, err := DecodeValue(&g.Features[i], bytesOf(raw[i+1]))
		if err != nil {
			return nil, ts, true, fmt.Errorf("entity %q: %w", entity, err)
		}
		vals[g.Features[i].Name] = v
	}
	return vals, ts, true, nil
}
