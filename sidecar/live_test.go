package sidecar

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/predictd/predictd/examples"
)

// liveServer is the demo model's server with the live view on a clock the test moves.
func liveServer(t *testing.T) (*Server, *atomic.Int64) {
	t.Helper()
	s, err := New(Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler), BackgroundAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.Reload()
	var sec atomic.Int64
	sec.Store(1_000_000)
	s.live.now = func() time.Time { return time.Unix(sec.Load(), 0) }
	return s, &sec
}

func claimsBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"claims","candidates":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c%d","features":{"VehBrand":%d,"DrivAge":40}}`, i, i%10)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func predictStatus(t *testing.T, s *Server, body string) int {
	t.Helper()
	st, _, _ := s.Predict([]byte(body), "application/json", nil)
	return st
}

// TestLiveView: the ring counts each second's predictions, candidates, errors by code
// and latency; the view ends at the last whole second; a second five minutes later
// reuses the slot, cleared.
func TestLiveView(t *testing.T) {
	s, sec := liveServer(t)
	t0 := sec.Load()
	for _, n := range []int{10, 20, 30} {
		if st := predictStatus(t, s, string(claimsBody(n))); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	for range 2 {
		if st := predictStatus(t, s, `{"model":"claims","candidates":[{"id":"a","features":{"nope":1}}]}`); st != 400 {
			t.Fatalf("status %d", st)
		}
	}
	if st := predictStatus(t, s, `{"model":"nosuch","candidates":[{"id":"a","features":{}}]}`); st != 404 {
		t.Fatalf("status %d", st)
	}
	sec.Store(t0 + 1)
	predictStatus(t, s, string(claimsBody(4)))
	sec.Store(t0 + 2)

	v := s.Live("claims")
	n := len(v.Requests)
	if n != liveSeconds || v.End != t0+1 {
		t.Fatalf("%d values ending at %d; want %d ending at %d", n, v.End, liveSeconds, t0+1)
	}
	if got := v.Requests[n-2:]; got[0] != 5 || got[1] != 1 {
		t.Errorf("requests %v, want [5 1] (3 scored + 2 errors, then 1)", got)
	}
	if got := v.Candidates[n-2:]; got[0] != 20 || got[1] != 4 {
		t.Errorf("candidates per request %v, want [20 4]", got)
	}
	if e := v.Errors["unknown_feature"]; e == nil || e[n-2] != 2 || e[n-1] != 0 {
		t.Errorf("unknown_feature errors %v", v.Errors)
	}
	if len(v.Errors) != 1 {
		t.Errorf("error codes %v, want only unknown_feature", v.Errors)
	}
	if !(v.P50Ms[n-2] > 0 && v.P99Ms[n-2] >= v.P50Ms[n-2] && v.P99Ms[n-2] < 1000) {
		t.Errorf("p50 %v, p99 %v ms", v.P50Ms[n-2], v.P99Ms[n-2])
	}
	if v.P50Ms[0] != -1 || v.Candidates[0] != -1 || v.Requests[0] != 0 {
		t.Errorf("a second without requests: p50 %v, candidates %v, requests %v; want -1, -1, 0", v.P50Ms[0], v.Candidates[0], v.Requests[0])
	}
	if u := s.Live(""); u.Errors["unknown_model"] == nil || u.Errors["unknown_model"][n-2] != 1 {
		t.Errorf("the unresolved request: %v", u.Errors)
	}
	if got := s.LiveModels(); len(got) != 2 || got[0] != "" || got[1] != "claims" {
		t.Errorf("LiveModels %q", got)
	}

	// Five minutes on, t0's slot holds a new second: cleared before it counts.
	sec.Store(t0 + liveSeconds)
	predictStatus(t, s, string(claimsBody(1)))
	sec.Store(t0 + liveSeconds + 1)
	v = s.Live("claims")
	if v.Requests[n-1] != 1 || v.Candidates[n-1] != 1 || v.Errors["unknown_feature"] != nil {
		t.Errorf("after five minutes: requests %d, candidates %v, errors %v; want 1, 1 and none", v.Requests[n-1], v.Candidates[n-1], v.Errors)
	}
	if v.Requests[n-300] != 1 || v.Requests[n-299] != 0 {
		t.Errorf("t0+1 should be the oldest second shown: %v", v.Requests[:2])
	}
}

// TestLiveLatencyBuckets: each duration falls in a bucket whose bounds hold it, and a
// quantile read from the buckets is within 25% of the true one.
func TestLiveLatencyBuckets(t *testing.T) {
	f := func(d time.Duration) {
		t.Helper()
		i := liveLatIndex(d)
		lo, hi := liveLatBounds(i)
		s := d.Seconds()
		if i > 0 && i < liveLatBucket-1 && !(lo <= s && s < hi) {
			t.Errorf("%v: bucket %d [%g, %g)", d, i, lo, hi)
		}
	}
	for _, d := range []time.Duration{8200 * time.Nanosecond, 10 * time.Microsecond, 99 * time.Microsecond,
		time.Millisecond, 1500 * time.Microsecond, 37 * time.Millisecond, 2 * time.Second, 16 * time.Second} {
		f(d)
	}
	if liveLatIndex(time.Nanosecond) != 0 || liveLatIndex(time.Minute) != liveLatBucket-1 {
		t.Error("out-of-range latencies are not clamped to the end buckets")
	}
	var h [liveLatBucket]uint32
	for i := 1; i <= 1000; i++ {
		h[liveLatIndex(time.Duration(i)*10*time.Microsecond)]++ // 10 µs to 10 ms, uniform
	}
	for _, q := range []struct{ q, want float64 }{{0.5, 5e-3}, {0.99, 9.9e-3}} {
		if got := latQuantile(&h, q.q); math.Abs(got-q.want)/q.want > 0.25 {
			t.Errorf("q%g: %g s, want %g ± 25%%", q.q, got, q.want)
		}
	}
	var empty [liveLatBucket]uint32
	if !math.IsNaN(latQuantile(&empty, 0.5)) {
		t.Error("an empty histogram has no quantile")
	}
}
