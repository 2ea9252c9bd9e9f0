package loadtest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrencySweep: a closed loop keeps exactly level requests in flight at the
// server (never more), and its rate follows level ÷ the server's hold time.
func TestConcurrencySweep(t *testing.T) {
	eventually(t, func(c *checker) {
		var inFlight, peak atomic.Int64
		ts := startTestServer(t, func(time.Time) time.Duration {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
			inFlight.Add(-1)
			return 0
		})
		sc := testScenario(t, `
name: sweep
mode: concurrency
warmup: 200ms
window: 500ms
concurrency: {levels: [1, 4], duration: 1700ms}
workloads: [{model: m}]
`)
		done := make(chan struct{})
		got := make(chan [2]int64)
		go func() {
			// Sample the server's peak per level: the second level starts after the first
			// level's 1.7s.
			time.Sleep(1600 * time.Millisecond)
			first := peak.Swap(0)
			<-done
			got <- [2]int64{first, peak.Load()}
		}()
		var progress bytes.Buffer
		res, _, err := Run(context.Background(), sc, Config{Target: ts.tcp, OutDir: t.TempDir(), RunID: "test", Progress: &syncWriter{w: &progress}})
		if err != nil {
			t.Fatal(err)
		}
		close(done)
		peaks := <-got
		if len(res.Steps) != 2 {
			t.Fatalf("%d steps", len(res.Steps))
		}
		mean := float64(ts.held.Mean()) / 1e6 // seconds a request was held
		for i, st := range res.Steps {
			level := []int{1, 4}[i]
			c.Logf("level %d: sent %.1f/s achieved %.1f/s p50 %.2fms server peak %d", level, st.SentRPS, st.AchievedRPS, st.Latency.P50, peaks[i])
			if st.Phase != "concurrency" || st.Concurrency != level || st.OfferedRPS != st.SentRPS {
				c.Errorf("step %d: %+v", i, st)
			}
			if peaks[i] != int64(level) {
				c.Errorf("level %d: the server saw up to %d requests at once", level, peaks[i])
			}
			if want := float64(level) / mean; !within(st.AchievedRPS, want, 0.3, 0) {
				c.Errorf("level %d: achieved %.1f/s, want about %.1f/s (held %.2fms)", level, st.AchievedRPS, want, mean*1000)
			}
		}
	})
}

// syncWriter serializes writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestConcurrencyScenario(t *testing.T) {
	if _, err := ParseScenario([]byte("name: x\nmode: concurrency\nconcurrency: {levels: [0], duration: 2s}\nworkloads: [{model: m}]")); err == nil ||
		!strings.Contains(err.Error(), "levels[0]") {
		t.Errorf("level 0: %v", err)
	}
}
