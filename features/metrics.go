package features

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// storeMetrics are the store's OpenTelemetry instruments. Per-group attribute sets are
// built once so that recording allocates nothing.
type storeMetrics struct {
	lookups, absent                          metric.Int64Counter
	hits, misses, stale, defaulted, degraded metric.Int64Counter
	backendErrors, decodeErrors              metric.Int64Counter
	cacheLookups                             metric.Int64Counter
	byGroup                                  atomic.Pointer[map[string]*groupOpts]
	mu                                       sync.Mutex // addGroups
	reg                                      metric.Registration
}

// Results of predictd.features.cache.lookups: every entity a Fetch looks up counts once,
// under one of them, so hit ratio = (hit + revalidate) / all.
const (
	lookupHit        = "hit"        // a fresh entry: the entity's values, or its cached absence
	lookupRevalidate = "revalidate" // past its TTL within --features-stale-while-revalidate: answered, refreshed in the background
	lookupMiss       = "miss"       // no usable entry: read from the backend (or answered stale/defaulted when it fails)
)

// groupOpts are one group's prebuilt attribute options.
type groupOpts struct {
	group                 []metric.AddOption // group
	hit, revalidate, miss []metric.AddOption // group, result
}

func newGroupOpts(name string) *groupOpts {
	g := attribute.String("group", name)
	opt := func(kv ...attribute.KeyValue) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
	}
	return &groupOpts{
		group:      opt(g),
		hit:        opt(g, attribute.String("result", lookupHit)),
		revalidate: opt(g, attribute.String("result", lookupRevalidate)),
		miss:       opt(g, attribute.String("result", lookupMiss)),
	}
}

func newStoreMetrics(m metric.Meter, s *Store) (*storeMetrics, error) {
	if m == nil {
		m = noop.NewMeterProvider().Meter("predictd/features")
	}
	sm := &storeMetrics{}
	sm.byGroup.Store(&map[string]*groupOpts{})
	sm.addGroups(s.cfg.Groups)
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = m.Int64Counter(name, metric.WithDescription(desc))
		return c
	}
	sm.lookups = counter("predictd.features.lookups", "Entity lookups (one per entity id of a Fetch).")
	sm.absent = counter("predictd.features.absent", "Entity lookups the store answered as absent: it holds no such entity (defaults, not degraded). A jump in absent/lookups means the data is gone (FLUSHALL, eviction, a failed load).")
	sm.cacheLookups = counter("predictd.features.cache.lookups", "Entity lookups by cache result: hit (a fresh entry), revalidate (served past its TTL while a background read refreshes it) or miss (went to the backend). Hit ratio = (hit + revalidate) / all.")
	sm.hits = counter("predictd.features.cache.hits", "Entity lookups answered from a cache entry holding the entity's values (fresh or revalidate; a cached absence counts under absent).")
	sm.misses = counter("predictd.features.cache.misses", "Entity lookups that went to the backend (cache.lookups with result miss).")
	sm.stale = counter("predictd.features.stale", "Entities answered from stale cache because the backend could not answer.")
	sm.defaulted = counter("predictd.features.defaulted", "Entities answered with defaults because the backend could not answer.")
	sm.degraded = counter("predictd.features.degraded", "Fetches with a degraded result.")
	sm.backendErrors = counter("predictd.features.backend.errors", "Failed backend round trips.")
	sm.decodeErrors = counter("predictd.features.decode.errors", "Stored values that did not decode (treated as absent).")
	if err != nil {
		return nil, err
	}
	bytes, err := m.Int64ObservableGauge("predictd.features.cache.bytes", metric.WithUnit("By"), metric.WithDescription("Bytes held by the feature cache."))
	if err != nil {
		return nil, err
	}
	entries, err := m.Int64ObservableGauge("predictd.features.cache.entries", metric.WithDescription("Entries held by the feature cache."))
	if err != nil {
		return nil, err
	}
	evictions, err := m.Int64ObservableCounter("predictd.features.cache.evictions", metric.WithDescription("Entries evicted to keep the cache within its byte bound."))
	if err != nil {
		return nil, err
	}
	opens, err := m.Int64ObservableCounter("predictd.features.breaker.opens", metric.WithDescription("Times the circuit breaker opened."))
	if err != nil {
		return nil, err
	}
	open, err := m.Int64ObservableGauge("predictd.features.breaker.open", metric.WithDescription("1 while the circuit breaker keeps reads away from the backend."))
	if err != nil {
		return nil, err
	}
	sm.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
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
	}, bytes, entries, evictions, opens, open)
	if err != nil {
		return nil, err
	}
	return sm, nil
}

// addGroups builds the attribute sets of groups not seen before (a prebuilt slice:
// passing one option variadically to an interface method would allocate the slice on
// every call). Sets of removed groups stay: a plan made before may still record.
func (sm *storeMetrics) addGroups(groups map[string]*Group) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	old := *sm.byGroup.Load()
	next := make(map[string]*groupOpts, len(old)+len(groups))
	for name, opt := range old {
		next[name] = opt
	}
	for name := range groups {
		if _, ok := next[name]; !ok {
			next[name] = newGroupOpts(name)
		}
	}
	sm.byGroup.Store(&next)
}

// record adds the counts of one Fetch of n entities, of which misses were not answered
// from the cache and revalidate were answered from entries past their TTL.
func (sm *storeMetrics) record(ctx context.Context, group string, n int, r *Result, misses, revalidate int) {
	g := (*sm.byGroup.Load())[group]
	if g == nil {
		return
	}
	opt := g.group
	if n > 0 {
		sm.lookups.Add(ctx, int64(n), opt...)
	}
	if hit := n - misses - revalidate; hit > 0 {
		sm.cacheLookups.Add(ctx, int64(hit), g.hit...)
	}
	if revalidate > 0 {
		sm.cacheLookups.Add(ctx, int64(revalidate), g.revalidate...)
	}
	if misses > 0 {
		sm.cacheLookups.Add(ctx, int64(misses), g.miss...)
	}
	if r.Absent > 0 {
		sm.absent.Add(ctx, int64(r.Absent), opt...)
	}
	if r.Hits > 0 {
		sm.hits.Add(ctx, int64(r.Hits), opt...)
	}
	if misses > 0 {
		sm.misses.Add(ctx, int64(misses), opt...)
	}
	if r.Degraded {
		sm.degraded.Add(ctx, 1, opt...)
		if r.Stale > 0 {
			sm.stale.Add(ctx, int64(r.Stale), opt...)
		}
		if r.Defaulted > 0 {
			sm.defaulted.Add(ctx, int64(r.Defaulted), opt...)
		}
	}
}

func (sm *storeMetrics) close() error {
	if sm.reg == nil {
		return nil
	}
	return sm.reg.Unregister()
}
