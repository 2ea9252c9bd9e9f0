package features

import (
	"context"
	"fmt"
	"slices"
	"time"
	"weak"
)

// Read-only views of a Store for tools and the sidecar's portal (docs/portal.md). None
// of them is on the request path.

// Groups returns the store's group declarations, sorted by name.
func (s *Store) Groups() []*Group {
	m := *s.groups.Load()
	out := make([]*Group, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *Group) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Backend names where the store reads: "redis" or "embedded".
func (s *Store) Backend() string {
	if s.cfg.Redis != nil {
		return "redis"
	}
	return "embedded"
}

// CacheStats is the local cache's size and the breaker's state.
type CacheStats struct {
	Bytes, MaxBytes int64
	Entries         int
	Evictions       int64
	// BreakerOpen is true while the circuit breaker keeps reads away from the backend.
	BreakerOpen  bool
	BreakerOpens int64
}

// CacheStats returns the cache's size now.
func (s *Store) CacheStats() CacheStats {
	st, opens := s.breaker.snapshot()
	return CacheStats{Bytes: s.cache.bytes.Load(), MaxBytes: s.cfg.CacheBytes, Entries: s.cache.len(),
		Evictions: s.cache.evictions.Load(), BreakerOpen: st != breakerClosed, BreakerOpens: opens}
}

// Inspection is one entity as Inspect found it: the backend's record and what the cache
// holds of it.
type Inspection struct {
	Group, Entity string
	// Found is true when the backend holds the entity; Updated is its freshness
	// timestamp then.
	Found   bool
	Updated time.Time
	// BackendErr is why the backend could not be read (the values then come from the
	// cache or defaults, as a request's would).
	BackendErr error
	Features   []InspectedFeature
}

// InspectedFeature is one declared feature of an inspected entity.
type InspectedFeature struct {
	Feature *Feature
	// From is where a request reading the feature now gets it: "cache" (a fresh cache
	// entry of a model's plan holds it), "redis" or "embedded" (the backend), or
	// "default" (the declared default, or NaN when none: the entity or the value is
	// absent).
	From string
	// Value is the backend's decoded value (Stored), else the cache's when the backend
	// could not be read.
	Value  Value
	Stored bool
	// Cached is when the freshest cache entry holding the feature was read from the
	// backend (zero: no entry holds it); CachedVals are its values there (Width columns).
	Cached     time.Time
	CachedVals []float64
	Fresh      bool // the entry is younger than the group's TTL
}

// Inspect reads every declared feature of one entity straight from the backend and
// looks up the cache entries the models' plans hold for it, so a reader sees each value,
// its age and where a request would take it from. It neither fills nor refreshes the
// cache.
func (s *Store) Inspect(ctx context.Context, group, entity string) (*Inspection, error) {
	g, ok := s.Group(group)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	in := &Inspection{Group: group, Entity: entity}
	vals, updated, found, err := lookup(ctx, s.be, g, entity)
	in.Found, in.Updated, in.BackendErr = found, updated, err
	now := time.Now()
	type cached struct {
		at    time.Time
		vals  []float64
		fresh bool
	}
	byName := map[string]cached{}
	s.plans.Range(func(k, v any) bool {
		p := v.(weak.Pointer[Plan]).Value()
		if p == nil {
			s.plans.Delete(k) // its version retired
			return true
		}
		if p.g.Name != group {
			return true
		}
		key := cacheKey{p.id, entity}
		e := s.cache.get(key, keyHash(key))
		if e == nil || e.absent {
			return true
		}
		at := time.Unix(0, e.fetched)
		for j, f := range p.feats {
			if !e.present[j] {
				continue
			}
			if c, seen := byName[f.Name]; seen && !c.at.Before(at) {
				continue
			}
			byName[f.Name] = cached{at: at, vals: e.vals[p.col[j] : p.col[j]+f.Width()], fresh: now.Sub(at) < time.Duration(g.TTL)}
		}
		return true
	})
	for i := range g.Features {
		f := &g.Features[i]
		x := InspectedFeature{Feature: f, From: "default"}
		if v, ok := vals[f.Name]; ok && err == nil {
			x.Value, x.Stored, x.From = v, true, s.Backend()
		}
		if c, ok := byName[f.Name]; ok {
			x.Cached, x.CachedVals, x.Fresh = c.at, c.vals, c.fresh
			if c.fresh || err != nil {
				x.From = "cache"
			}
		}
		in.Features = append(in.Features, x)
	}
	return in, nil
}
