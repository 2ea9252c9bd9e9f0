package shadow

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// coverageBuckets is how many complete buckets the coverage ring keeps: an hour of
// one-minute buckets. The ring holds one more, the bucket being filled.
const coverageBuckets = 60

// Thresholds of the coverage warnings (documented in docs/production.md).
const (
	// unevenRatio: coverage is uneven when the busiest decile of buckets mirrors less
	// than this fraction of what the quietest decile mirrors…
	unevenRatio = 0.8
	// unevenZ: …and the difference is beyond sampling noise: a two-proportion z-test
	// statistic of at least 3 (about 1 in 700 for equal coverage).
	unevenZ = 3
	// unevenMinBuckets: deciles need at least this many buckets with traffic.
	unevenMinBuckets = 10
	// decileMinRequests: a decile takes further buckets (towards the middle) until it
	// holds this many requests, so that a nearly empty bucket (the first or last of a
	// burst of traffic) cannot stand for a load level alone.
	decileMinRequests = 30
	// lowRatio: coverage is low when the hour's mirrored fraction is below this share of
	// the configured rate, over at least lowMinExpected expected mirrors.
	lowRatio       = 0.9
	lowMinExpected = 50
)

// coverage counts, per time bucket, the primary requests a shadow saw and what became of
// them. Events are counted in the bucket of the primary request, so a job scored after
// the bucket ended still counts where its request did.
type coverage struct {
	width time.Duration
	mu    sync.Mutex
	ring  [coverageBuckets + 1]bucket
}

type bucket struct {
	idx                                    int64 // start / width; 0: unused
	primary, mirrored, sampledOut, dropped uint64
}

// index returns the bucket number of t.
func (c *coverage) index(t time.Time) int64 { return t.UnixNano() / int64(c.width) }

// add counts into bucket idx (a request's), if the ring still holds it.
func (c *coverage) add(idx int64, primary, mirrored, sampledOut, dropped uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.ring[idx%int64(len(c.ring))]
	if b.idx != idx {
		if b.idx > idx {
			return // an hour-old request: its bucket is gone
		}
		*b = bucket{idx: idx}
	}
	b.primary += primary
	b.mirrored += mirrored
	b.sampledOut += sampledOut
	b.dropped += dropped
}

// complete returns the complete buckets of the last hour before now, oldest first
// (buckets without any request included, zeroed).
func (c *coverage) complete(now time.Time) []bucket {
	cur := c.index(now)
	out := make([]bucket, 0, coverageBuckets)
	c.mu.Lock()
	defer c.mu.Unlock()
	for idx := cur - coverageBuckets; idx < cur; idx++ {
		if idx <= 0 {
			continue
		}
		b := c.ring[idx%int64(len(c.ring))]
		if b.idx != idx {
			b = bucket{idx: idx}
		}
		out = append(out, b)
	}
	return out
}

// peakRate returns the highest request rate (per second) of the last hour's complete
// buckets.
func (c *coverage) peakRate(now time.Time) float64 {
	var peak uint64
	for _, b := range c.complete(now) {
		peak = max(peak, b.primary)
	}
	return float64(peak) / c.width.Seconds()
}

// Window is what became of the primary requests of one time window.
type Window struct {
	Start      *time.Time `json:"start,omitempty"` // a bucket's start; absent on the hour's sum
	Primary    uint64     `json:"primary"`         // primary requests
	Mirrored   uint64     `json:"mirrored"`        // scored by the shadow
	SampledOut uint64     `json:"sampled_out"`     // not sampled (rate, lowered by the CPU budget)
	Dropped    uint64     `json:"dropped"`         // sampled, not scored: queue full or no CPU
	Fraction   float64    `json:"fraction"`        // mirrored / primary; 0 without requests
}

func (w *Window) add(b bucket) {
	w.Primary += b.primary
	w.Mirrored += b.mirrored
	w.SampledOut += b.sampledOut
	w.Dropped += b.dropped
}

func (w *Window) finish() {
	if w.Primary > 0 {
		w.Fraction = float64(w.Mirrored) / float64(w.Primary)
	}
}

// Coverage is how much of the primary's traffic a shadow saw: per bucket (one minute) and
// over the last hour, and whether the busy minutes were covered as well as the quiet ones.
type Coverage struct {
	BucketSeconds float64 `json:"bucket_seconds"`
	// LastMinute is the last complete bucket; LastHour the last 60.
	LastMinute Window `json:"last_minute"`
	LastHour   Window `json:"last_hour"`
	// BusiestDecile and QuietestDecile are the mirrored fractions over the tenth of the
	// hour's buckets with the most and the fewest primary requests (among buckets with
	// any; each extended towards the middle to at least 30 requests, never past half the
	// buckets; absent below 10 buckets with requests).
	BusiestDecile  *float64 `json:"busiest_decile,omitempty"`
	QuietestDecile *float64 `json:"quietest_decile,omitempty"`
	// Uneven: the busiest decile's fraction is below 0.8× the quietest's, beyond
	// sampling noise (z ≥ 3): the agreement statistics over-weight quiet traffic.
	Uneven bool `json:"uneven"`
	// Low: the hour's fraction is below 0.9× the configured rate.
	Low bool `json:"low"`
	// Warnings say in words what Uneven and Low found and what to change.
	Warnings []string `json:"warnings,omitempty"`
	// Buckets are the hour's complete buckets that had requests, oldest first.
	Buckets []Window `json:"buckets,omitempty"`
}

// snapshot computes the coverage at now for a shadow sampled at rate.
func (c *coverage) snapshot(now time.Time, rate float64) Coverage {
	out := Coverage{BucketSeconds: c.width.Seconds()}
	bs := c.complete(now)
	var busy []bucket
	for i, b := range bs {
		if i == len(bs)-1 {
			start := time.Unix(0, b.idx*int64(c.width)).UTC()
			out.LastMinute.Start = &start
			out.LastMinute.add(b)
		}
		out.LastHour.add(b)
		if b.primary > 0 {
			start := time.Unix(0, b.idx*int64(c.width)).UTC()
			w := Window{Start: &start}
			w.add(b)
			w.finish()
			out.Buckets = append(out.Buckets, w)
			busy = append(busy, b)
		}
	}
	out.LastMinute.finish()
	out.LastHour.finish()
	if len(busy) >= unevenMinBuckets {
		slices.SortStableFunc(busy, func(a, b bucket) int { return cmp.Compare(b.primary, a.primary) })
		n := len(busy) / 10
		var hi, lo Window
		for i := 0; i < len(busy)/2 && (i < n || hi.Primary < decileMinRequests); i++ {
			hi.add(busy[i])
		}
		for i := len(busy) - 1; i >= len(busy)/2 && (i >= len(busy)-n || lo.Primary < decileMinRequests); i-- {
			lo.add(busy[i])
		}
		hi.finish()
		lo.finish()
		out.BusiestDecile, out.QuietestDecile = &hi.Fraction, &lo.Fraction
		if hi.Fraction < unevenRatio*lo.Fraction && twoProportionZ(hi, lo) >= unevenZ {
			out.Uneven = true
			out.Warnings = append(out.Warnings, fmt.Sprintf(
				"uneven coverage: the busiest tenth of the last hour's buckets mirrored %.0f%% of their requests, the quietest %.0f%%: "+
					"the shadow's statistics over-weight quiet traffic; give it a CPU share (model.yaml shadow.cpu_share or --shadow-cpu-share)",
				100*hi.Fraction, 100*lo.Fraction))
		}
	}
	if h := out.LastHour; float64(h.Primary)*rate >= lowMinExpected && h.Fraction < lowRatio*rate {
		out.Low = true
		out.Warnings = append(out.Warnings, fmt.Sprintf(
			"low coverage: mirrored %.0f%% of the last hour's requests at a configured rate of %.0f%% (%d dropped for want of CPU or queue room, %d sampled out); "+
				"raise shadow.cpu_share or --shadow-cpu-share",
			100*h.Fraction, 100*rate, h.Dropped, h.SampledOut))
	}
	return out
}

// twoProportionZ is the z statistic of "a's fraction is below b's" with a pooled
// variance; 0 when undefined.
func twoProportionZ(a, b Window) float64 {
	na, nb := float64(a.Primary), float64(b.Primary)
	if na == 0 || nb == 0 {
		return 0
	}
	p := (float64(a.Mirrored) + float64(b.Mirrored)) / (na + nb)
	se := math.Sqrt(p * (1 - p) * (1/na + 1/nb))
	if se == 0 {
		return 0
	}
	return (b.Fraction - a.Fraction) / se
}
