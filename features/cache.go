package features

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// entry is one cached entity of one plan: its decoded columns and presence. An entry is
// immutable once published, except for used and refreshing; a newer read replaces it.
type entry struct {
	vals    []float64 // Plan.width values; defaults where not present
	present []bool    // per plan feature
	fetched int64     // unix nanoseconds when read from the backend
	absent  bool      // the backend has no such entity (negative cache entry)
	size    int64     // bytes charged against the cache budget
	used    atomic.Int64
	refresh atomic.Bool // a stale-while-revalidate refresh is in flight
}

// entryOverhead approximates the bytes of an entry beyond its slices: the struct, its map
// slot, the key's string header and slice headers.
const entryOverhead = 160

type cacheKey struct {
	plan   uint32
	entity string
}

// call is one backend read of one key that concurrent misses wait for (single flight).
type call struct {
	done chan struct{}
	e    *entry // nil when the read failed
	err  error
}

type shard struct {
	mu       sync.RWMutex
	m        map[cacheKey]*entry
	inflight map[cacheKey]*call
	bytes    int64
	_        [40]byte // keeps neighbouring shards' locks off one cache line
}

// cache is a sharded map bounded in bytes with sampled-LRU eviction: when a shard is over
// its share of the budget, it evicts the least recently used of a few entries sampled from
// its map (Go randomizes map iteration order), as Redis does. It is safe for concurrent use.
type cache struct {
	shards    []shard
	mask      uint64
	perShard  int64
	bytes     atomic.Int64
	evictions atomic.Int64
}

// evictSamples is how many entries one eviction looks at; Redis's maxmemory-samples
// default, which approximates LRU closely enough at a fraction of its bookkeeping.
const evictSamples = 5

func newCache(maxBytes int64, shards int) *cache {
	n := 1
	for n < shards {
		n <<= 1
	}
	c := &cache{shards: make([]shard, n), mask: uint64(n - 1), perShard: maxBytes / int64(n)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*entry)
		c.shards[i].inflight = make(map[cacheKey]*call)
	}
	return c
}

func keyHash(k cacheKey) uint64 {
	return xxhash.Sum64String(k.entity) ^ uint64(k.plan)*0x9E3779B97F4A7C15
}

func (c *cache) shard(h uint64) *shard { return &c.shards[h&c.mask] }

// get returns the cached entry of k or nil.
func (c *cache) get(k cacheKey, h uint64) *entry {
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	return e
}

// begin registers a read of k. The first caller becomes its owner (owner true) and must
// finish the call; later callers get the same call to wait on.
func (c *cache) begin(k cacheKey, h uint64) (cl *call, owner bool) {
	s := c.shard(h)
	s.mu.Lock()
	if cl = s.inflight[k]; cl != nil {
		s.mu.Unlock()
		return cl, false
	}
	cl = &call{done: make(chan struct{})}
	// The caller's entity may alias a request buffer; the map keeps its own copy.
	s.inflight[cacheKey{k.plan, strings.Clone(k.entity)}] = cl
	s.mu.Unlock()
	return cl, true
}

// finish publishes the outcome of an owned call: e (nil when the read failed, err says
// why) replaces the cached entry of k, and waiters are released.
func (c *cache) finish(k cacheKey, h uint64, cl *call, e *entry, err error) {
	s := c.shard(h)
	s.mu.Lock()
	delete(s.inflight, k)
	if e != nil {
		if old := s.m[k]; old != nil {
			s.bytes -= old.size
			c.bytes.Add(-old.size)
		}
		s.m[k] = e
		s.bytes += e.size
		c.bytes.Add(e.size)
		for s.bytes > c.perShard && len(s.m) > 1 {
			c.evictOne(s, k)
		}
	}
	s.mu.Unlock()
	cl.e, cl.err = e, err
	close(cl.done)
}

// evictOne removes the least recently used of a few sampled entries, never keep (the entry
// just stored). s.mu is held.
func (c *cache) evictOne(s *shard, keep cacheKey) {
	var (
		victim cacheKey
		ve     *entry
		n      int
	)
	for k, e := range s.m {
		if k == keep {
			continue
		}
		if ve == nil || e.used.Load() < ve.used.Load() {
			victim, ve = k, e
		}
		if n++; n == evictSamples {
			break
		}
	}
	if ve == nil {
		return
	}
	delete(s.m, victim)
	s.bytes -= ve.size
	c.bytes.Add(-ve.size)
	c.evictions.Add(1)
}

// len returns the number of cached entries (for tests and stats).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
