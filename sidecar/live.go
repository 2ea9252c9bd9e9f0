package sidecar

import (
	"errors"
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/predictd/predictd/sidecar/admission"
)

// The live view (GET /ui/api/live, docs/portal.md) keeps the last liveSeconds of each
// model's predictions in an in-process ring of one-second buckets, so an operator sees
// requests/s, latency, candidates, errors and degraded answers without a Prometheus.
// Recording is a few atomic adds on the request goroutine and allocates nothing; a
// bucket is cleared under the model's lock only when its second comes round again.

// liveSeconds is the window: five minutes at one-second resolution.
const liveSeconds = 300

// liveCodes are the error codes errorStatus answers, in a fixed order so a bucket counts
// them in an array; a code not listed counts as "internal" (errorStatus's fallback).
var liveCodes = [...]string{
	"bad_request", "unsupported_media_type", "not_ready", "unknown_model", "unknown_version",
	"unknown_feature", "feature_count", "too_many_candidates", "too_many_cells", "deadline_exceeded",
	"feature_store_unavailable", "busy", "bad_input", "overloaded", "internal",
}

// Latency buckets: two per power of two of nanoseconds, from 2^liveMinOctave ns (8 µs)
// to 2^(liveMinOctave+liveOctaves) ns (17 s), the first and last also holding what lies
// beyond. A bucket spans at most 50% of its lower bound, so a percentile read from it is
// within ±25% at the bucket's midpoint: coarse, but enough to draw a trend, and 4 bytes
// per bucket keeps five minutes of a model at 75 KiB (300 one-second buckets of 256 bytes).
const (
	liveMinOctave = 13
	liveOctaves   = 21
	liveLatBucket = 2 * liveOctaves
)

// liveBucket is one second of one model. sec says which second it holds; a reader
// ignores a bucket whose sec is not the second it wants.
type liveBucket struct {
	sec      atomic.Int64
	ok       atomic.Uint32 // successful predictions
	rows     atomic.Uint64 // candidates of the successful predictions
	degraded atomic.Uint32 // successful predictions answered degraded
	errs     [len(liveCodes)]atomic.Uint32
	lat      [liveLatBucket]atomic.Uint32 // latency of the successful predictions
}

// liveModel is one model's ring.
type liveModel struct {
	mu   sync.Mutex // clears a bucket for its new second
	ring [liveSeconds]liveBucket
}

// liveStats holds every model's ring. models is replaced, copied, when a model first
// records (rare), so the request path reads it with one atomic load and no lock.
type liveStats struct {
	models atomic.Pointer[map[string]*liveModel]
	mu     sync.Mutex       // adding a model
	now    func() time.Time // which second a prediction counts in (tests set it)
}

func newLiveStats() *liveStats {
	l := &liveStats{now: time.Now}
	l.models.Store(&map[string]*liveModel{})
	return l
}

// model returns name's ring, creating it on first use.
func (l *liveStats) model(name string) *liveModel {
	if m := (*l.models.Load())[name]; m != nil {
		return m
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.models.Load()
	if m := old[name]; m != nil {
		return m
	}
	next := make(map[string]*liveModel, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	m := &liveModel{}
	next[name] = m
	l.models.Store(&next)
	return m
}

// bucket returns the bucket of second sec, cleared when it last held an older second.
func (m *liveModel) bucket(sec int64) *liveBucket {
	b := &m.ring[sec%liveSeconds]
	if b.sec.Load() == sec {
		return b
	}
	m.mu.Lock()
	if b.sec.Load() != sec {
		b.ok.Store(0)
		b.rows.Store(0)
		b.degraded.Store(0)
		for i := range b.errs {
			b.errs[i].Store(0)
		}
		for i := range b.lat {
			b.lat[i].Store(0)
		}
		b.sec.Store(sec)
	}
	m.mu.Unlock()
	return b
}

// record counts one answered prediction: its model ("" when it never resolved to one),
// its latency, rows and degraded flag when it succeeded, else its error's code.
func (l *liveStats) record(p *prediction, err error) {
	now := l.now()
	name := ""
	if p.v != nil {
		name = p.v.model
	} else if err != nil {
		// Rejected before decoding (admitEarly): the model is known, its version not yet.
		// Other unresolved requests are not split by the name they sent, which is input.
		var oe *admission.OverloadedError
		if errors.As(err, &oe) {
			name = oe.Model
		}
	}
	b := l.model(name).bucket(now.Unix())
	if err != nil {
		_, code := errorStatus(err)
		b.errs[liveCodeIndex(code)].Add(1)
		return
	}
	b.ok.Add(1)
	b.rows.Add(uint64(p.req.numRows()))
	if len(p.req.degraded) > 0 {
		b.degraded.Add(1)
	}
	b.lat[liveLatIndex(time.Since(p.start))].Add(1)
}

func liveCodeIndex(code string) int {
	for i, c := range liveCodes {
		if c == code {
			return i
		}
	}
	return len(liveCodes) - 1 // "internal"
}

// liveLatIndex is the latency bucket of d: the octave of its nanoseconds and which half
// of the octave it is in.
func liveLatIndex(d time.Duration) int {
	ns := uint64(max(d, 1))
	oct := bits.Len64(ns) - 1
	if oct < liveMinOctave {
		return 0
	}
	if oct >= liveMinOctave+liveOctaves {
		return liveLatBucket - 1
	}
	half := int(ns>>(oct-1)) & 1 // the bit after the leading one
	return (oct-liveMinOctave)*2 + half
}

// liveLatBounds returns bucket i's lower and upper bounds in seconds.
func liveLatBounds(i int) (lo, hi float64) {
	oct, half := liveMinOctave+i/2, i%2
	base := math.Ldexp(1, oct)
	lo = base * (1 + 0.5*float64(half))
	hi = base * (1.5 + 0.5*float64(half))
	return lo / 1e9, hi / 1e9
}

// LiveView is one model's last minutes, one value per second, oldest first: the JSON
// the portal's live charts poll. Seconds without a successful prediction have -1 as
// their latencies and candidates per request.
type LiveView struct {
	Model string `json:"model"`
	// End is the unix second of the last value: the last whole second before the call.
	End int64 `json:"end"`
	// Requests counts the predictions answered in each second, errors included.
	Requests []uint32 `json:"requests"`
	// P50Ms and P99Ms are latency percentiles of the successful predictions, read from
	// buckets half an octave wide (within ±25%).
	P50Ms []float64 `json:"p50_ms"`
	P99Ms []float64 `json:"p99_ms"`
	// Candidates is the mean candidates per successful prediction.
	Candidates []float64 `json:"candidates"`
	// Degraded counts successful predictions answered degraded (store values from stale
	// cache or defaults).
	Degraded []uint32 `json:"degraded"`
	// Errors counts failed predictions per error code, for the codes seen in the window.
	Errors map[string][]uint32 `json:"errors"`
}

// Live returns model's last minutes ("" for the requests that named no loaded model).
// A model that never recorded reads as all zeros.
func (s *Server) Live(model string) LiveView { return s.live.view(model) }

// LiveModels lists the models with a live ring, sorted.
func (s *Server) LiveModels() []string {
	m := *s.live.models.Load()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (l *liveStats) view(model string) LiveView {
	end := l.now().Unix() - 1
	v := LiveView{Model: model, End: end, Requests: make([]uint32, liveSeconds),
		P50Ms: make([]float64, liveSeconds), P99Ms: make([]float64, liveSeconds),
		Candidates: make([]float64, liveSeconds), Degraded: make([]uint32, liveSeconds),
		Errors: map[string][]uint32{}}
	m := (*l.models.Load())[model]
	var lat [liveLatBucket]uint32
	for i := range liveSeconds {
		sec := end - liveSeconds + 1 + int64(i)
		v.P50Ms[i], v.P99Ms[i], v.Candidates[i] = -1, -1, -1
		if m == nil {
			continue
		}
		b := &m.ring[sec%liveSeconds]
		if b.sec.Load() != sec {
			continue
		}
		ok := b.ok.Load()
		total := ok
		for c := range b.errs {
			n := b.errs[c].Load()
			if n == 0 {
				continue
			}
			total += n
			e := v.Errors[liveCodes[c]]
			if e == nil {
				e = make([]uint32, liveSeconds)
				v.Errors[liveCodes[c]] = e
			}
			e[i] = n
		}
		v.Requests[i] = total
		v.Degraded[i] = b.degraded.Load()
		if ok == 0 {
			continue
		}
		v.Candidates[i] = float64(b.rows.Load()) / float64(ok)
		for j := range lat {
			lat[j] = b.lat[j].Load()
		}
		v.P50Ms[i] = latQuantile(&lat, 0.50) * 1e3
		v.P99Ms[i] = latQuantile(&lat, 0.99) * 1e3
	}
	return v
}

// latQuantile reads quantile q (seconds) from a bucket histogram, interpolating
// linearly inside the bucket it falls in.
func latQuantile(h *[liveLatBucket]uint32, q float64) float64 {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return math.NaN()
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range h {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := liveLatBounds(i)
			return lo + (hi-lo)*(rank-seen)/float64(c)
		}
		seen += float64(c)
	}
	_, hi := liveLatBounds(liveLatBucket - 1)
	return hi
}
