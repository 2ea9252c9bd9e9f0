package features

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// storeMetrics are the store's OpenTelemetry instruments. The per-lookup counts are
// atomics in groupCounts, added on the Fetch path and reported by one observable callback
// at collection: an atomic add costs nanoseconds where a synchronous SDK counter's Add costs
// hundreds, and a Fetch of one entity adds to three or more of them
// (BenchmarkFetchHitMetrics).
type storeMetrics struct {
	on                          bool // a meter was given: count
	backendErrors, decodeErrors metric.Int64Counter
	byGroup                     atomic.Pointer[map[string]*groupCounts]
	mu                          sync.Mutex // addGroups
	reg                         metric.Registration
}

// Results of predictd.features.cache.lookups: every entity a Fetch looks up counts once,
// under one of them, so hit ratio = (hit + revalidate) / all.
const (
	lookupHit        = "hit"        // a fresh entry: the entity's values, or its cached absence
	lookupRevalidate = "revalidate" // past its TTL within --features-stale-while-revalidate: answered, refreshed in the background
	lookupMiss       = "miss"       // no usable entry: read from the backend (or answered stale/defaulted when it fails)
)

// groupCounts are one group's counts since the store opened, and its attribute sets.
type groupCounts struct {
	lookups, absent, hits, misses   atomic.Int64 // entities
	stale, defaulted                atomic.Int64 // entities
	degraded                        atomic.Int64 // fetches
	cacheHit, cacheRevalidate       atomic.Int64 // entities (cache misses are misses)
	group, hit, revalidate, missOpt []metric.ObserveOption
}

func newGroupCounts(name string) *groupCounts {
	g := attribute.String("group", name)
	opt := func(kv ...attribute.KeyValue) []metric.ObserveOption {
		return []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
	}
	return &groupCounts{
		group:      opt(g),
		hit:        opt(g, attribute.String("result", lookupHit)),
		revalidate: opt(g, attribute.String("result", lookupRevalidate)),
		missOpt:    opt(g, attribute.String("result", lookupMiss)),
	}
}

func newStoreMetrics(m metric.Meter, s *Store) (*storeMetrics, error) {
	sm := &storeMetrics{on: m != nil}
	if m == nil {
		m = noop.NewMeterProvider().Meter("predictd/features")
	}
	sm.byGroup.Store(&map[string]*groupCounts{})
	sm.addGroups(s.cfg.Groups)
	var errs []error
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		c, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	lookups := counter("predictd.features.lookups", "Entity lookups (one per entity id of a Fetch).")
	absent := counter("predictd.features.absent", "Entity lookups the store answered as absent: it holds no such entity (defaults, not degraded). A jump in absent/lookups means the data is gone (FLUSHALL, eviction, a failed load).")
	cacheLookups := counter("predictd.features.cache.lookups", "Entity lookups by cache result: hit (a fresh entry), revalidate (served past its TTL while a background read refreshes it) or miss (went to the backend). Hit ratio = (hit + revalidate) / all.")
	hits := counter("predictd.features.cache.hits", "Entity lookups answered from a cache entry holding the entity's values (fresh or revalidate; a cached absence counts under absent).")
	misses := counter("predictd.features.cache.misses", "Entity lookups that went to the backend (cache.lookups with result miss).")
	stale := counter("predictd.features.stale", "Entities answered from stale cache because the backend could not answer.")
	defaulted := counter("predictd.features.defaulted", "Entities answered with defaults because the backend could not answer.")
	degraded := counter("predictd.features.degraded", "Fetches with a degraded result.")
	evictions := counter("predictd.features.cache.evictions", "Entries evicted to keep the cache within its byte bound.")
	opens := counter("predictd.features.breaker.opens", "Times the circuit breaker opened.")
	bytes := gauge("predictd.features.cache.bytes", "By", "Bytes held by the feature cache.")
	entries := gauge("predictd.features.cache.entries", "", "Entries held by the feature cache.")
	open := gauge("predictd.features.breaker.open", "", "1 while the circuit breaker keeps reads away from the backend.")
	var err error
	sm.backendErrors, err = m.Int64Counter("predictd.features.backend.errors", metric.WithDescription("Failed backend round trips."))
	errs = append(errs, err)
	sm.decodeErrors, err = m.Int64Counter("predictd.features.decode.errors", metric.WithDescription("Stored values that did not decode (treated as absent)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sm.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, g := range *sm.byGroup.Load() {
			o.ObserveInt64(lookups, g.lookups.Load(), g.group...)
			o.ObserveInt64(absent, g.absent.Load(), g.group...)
			o.ObserveInt64(hits, g.hits.Load(), g.group...)
			o.ObserveInt64(misses, g.misses.Load(), g.group...)
			o.ObserveInt64(stale, g.stale.Load(), g.group...)
			o.ObserveInt64(defaulted, g.defaulted.Load(), g.group...)
			o.ObserveInt64(degraded, g.degraded.Load(), g.group...)
			o.ObserveInt64(cacheLookups, g.cacheHit.Load(), g.hit...)
			o.ObserveInt64(cacheLookups, g.cacheRevalidate.Load(), g.revalidate...)
			o.ObserveInt64(cacheLookups, g.misses.Load(), g.missOpt...)
		}
		o.ObserveInt64(bytes, s.cache.bytes.Load())
		o.ObserveInt64(entries, int64(s.cache.len()))
		o.ObserveInt64(evictions, s.cache.evictions.Load())
		st, n := s.breaker.snapshot()
		o.ObserveInt64(opens, n)
		v := int64(0)
		if st != breakerClosed {
			v = 1
		}
		o.ObserveInt64(open, v)
		return nil
	}, lookups, absent, cacheLookups, hits, misses, stale, defaulted, degraded, evictions, opens, bytes, entries, open)
	if err != nil {
		return nil, err
	}
	return sm, nil
}

// addGroups adds the counts of groups not seen before. Counts of removed groups stay: a
// plan made before may still record, and a counter must not go back.
func (sm *storeMetrics) addGroups(groups map[string]*Group) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	old := *sm.byGroup.Load()
	next := make(map[string]*groupCounts, len(old)+len(groups))
	for name, g := range old {
		next[name] = g
	}
	for name := range groups {
		if _, ok := next[name]; !ok {
			next[name] = newGroupCounts(name)
		}
	}
	sm.byGroup.Store(&next)
}

// record adds the counts of one Fetch of n entities, of which misses were not answered
// from the cache and revalidate were answered from entries past their TTL.
func (sm *storeMetrics) record(group string, n int, r *Result, misses, revalidate int) {
	if !sm.on {
		return
	}
	g := (*sm.byGroup.Load())[group]
	if g == nil {
		return
	}
	add := func(c *atomic.Int64, v int) {
		if v > 0 {
			c.Add(int64(v))
		}
	}
	add(&g.lookups, n)
	add(&g.absent, r.Absent)
	add(&g.hits, r.Hits)
	add(&g.misses, misses)
	add(&g.cacheHit, n-misses-revalidate)
	add(&g.cacheRevalidate, revalidate)
	if r.Degraded {
		g.degraded.Add(1)
		add(&g.stale, r.Stale)
		add(&g.defaulted, r.Defaulted)
	}
}

func (sm *storeMetrics) close() error {
	if sm.reg == nil {
		return nil
	}
	return sm.reg.Unregister()
}
