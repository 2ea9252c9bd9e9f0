package shadow

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBudget(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	b, err := newBudget(0.5, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	tokens := func(want float64) {
		t.Helper()
		if got := b.Stats().Tokens; math.Abs(got-want) > 1e-9 {
			t.Fatalf("tokens %v s, want %v", got, want)
		}
	}
	tokens(0.5) // starts full: one second of the share
	if !b.take() {
		t.Fatal("a full bucket refused a job")
	}
	b.charge(600 * time.Millisecond) // one job may overdraw
	tokens(-0.1)
	if b.take() {
		t.Fatal("a bucket in debt granted a job")
	}
	c.advance(300 * time.Millisecond) // 0.3 s × 0.5 cores = 0.15 s of CPU
	tokens(0.05)
	if !b.take() {
		t.Fatal("a refilled bucket refused a job")
	}
	c.advance(time.Hour)
	tokens(0.5) // the burst bound
	if err := b.SetShare(0.1); err != nil {
		t.Fatal(err)
	}
	tokens(0.1)
	st := b.Stats()
	if st.Share != 0.1 || st.Granted != 2 || st.Refused != 1 || math.Abs(st.CPUSeconds-0.6) > 1e-9 {
		t.Fatalf("%+v", st)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1), 1025} {
		if _, err := NewBudget(bad); err == nil || !strings.Contains(err.Error(), "cpu share") {
			t.Errorf("NewBudget(%v): %v", bad, err)
		}
		if err := b.SetShare(bad); err == nil {
			t.Errorf("SetShare(%v) accepted", bad)
		}
	}
}

// fill counts minutes of traffic into c: n minutes from start, primary requests each,
// mirrored of them mirrored and the rest dropped.
func fill(c *coverage, start time.Time, n int, primary, mirrored uint64) time.Time {
	for i := 0; i < n; i++ {
		idx := c.index(start)
		c.add(idx, primary, mirrored, 0, primary-mirrored)
		start = start.Add(c.width)
	}
	return start
}

func TestCoverageUnevenAndLow(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := func(quiet, busy [2]uint64, rate float64, uneven, low bool) {
		t.Helper()
		c := &coverage{width: time.Minute}
		end := fill(c, t0, 30, quiet[0], quiet[1])
		end = fill(c, end, 30, busy[0], busy[1])
		cov := c.snapshot(end, rate)
		if cov.Uneven != uneven || cov.Low != low {
			t.Fatalf("quiet %v busy %v rate %v: uneven %v low %v, want %v %v; %+v", quiet, busy, rate, cov.Uneven, cov.Low, uneven, low, cov)
		}
		wantP, wantM := 30*(quiet[0]+busy[0]), 30*(quiet[1]+busy[1])
		if h := cov.LastHour; h.Primary != wantP || h.Mirrored != wantM || h.Dropped != wantP-wantM {
			t.Fatalf("last hour %+v, want %d/%d", h, wantM, wantP)
		}
		if m := cov.LastMinute; m.Primary != busy[0] || m.Mirrored != busy[1] || *m.Start != end.Add(-time.Minute) {
			t.Fatalf("last minute %+v", m)
		}
		if len(cov.Buckets) != 60 || cov.BucketSeconds != 60 {
			t.Fatalf("%d buckets of %v s", len(cov.Buckets), cov.BucketSeconds)
		}
		if len(cov.Warnings) != btoi(uneven)+btoi(low) {
			t.Fatalf("warnings %q", cov.Warnings)
		}
	}
	f([2]uint64{10, 10}, [2]uint64{100, 50}, 1, true, true)     // busy minutes half covered
	f([2]uint64{10, 9}, [2]uint64{100, 90}, 1, false, false)    // even, 90%
	f([2]uint64{10, 5}, [2]uint64{100, 50}, 0.5, false, false)  // rate 0.5, all of it
	f([2]uint64{10, 5}, [2]uint64{100, 30}, 0.5, true, true)    // rate 0.5, busy short
	f([2]uint64{100, 40}, [2]uint64{1000, 400}, 1, false, true) // low but even
	f([2]uint64{1000, 900}, [2]uint64{100, 50}, 1, false, true) // the quiet minutes are the short ones: low, not "uneven"
}

// TestCoverageNoise: a gap between busy and quiet minutes within sampling noise is not
// called uneven.
func TestCoverageNoise(t *testing.T) {
	c := &coverage{width: time.Minute}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	end := fill(c, t0, 50, 0, 0)
	end = fill(c, end, 5, 10, 9)  // quiet: 90%
	end = fill(c, end, 5, 20, 14) // busy: 70%, over 40 requests against 30: z ≈ 2
	cov := c.snapshot(end, 1)
	if cov.Uneven || *cov.BusiestDecile != 0.7 || *cov.QuietestDecile != 0.9 || !cov.Low {
		t.Fatalf("%+v busiest %v quietest %v", cov, *cov.BusiestDecile, *cov.QuietestDecile)
	}
	if len(cov.Buckets) != 10 {
		t.Fatalf("%d buckets with requests, want 10", len(cov.Buckets))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCoverageRing(t *testing.T) {
	c := &coverage{width: time.Minute}
	t0 := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	c.add(c.index(t0), 5, 5, 0, 0)
	old := c.index(t0)
	end := fill(c, t0.Add(time.Minute), 61, 1, 1) // 61 minutes later the first bucket is gone
	c.add(old, 0, 1, 0, 0)                        // a job of that hour-old request finishes: not counted
	cov := c.snapshot(end, 1)
	if h := cov.LastHour; h.Primary != 60 || h.Mirrored != 60 {
		t.Fatalf("%+v", h)
	}
	// An idle stretch: buckets without requests count as empty, not as their old contents.
	cov = c.snapshot(end.Add(30*time.Minute), 1)
	if h := cov.LastHour; h.Primary != 30 || len(cov.Buckets) != 30 {
		t.Fatalf("%+v, %d buckets", h, len(cov.Buckets))
	}
	if got := c.peakRate(end); got != 1.0/60 {
		t.Fatalf("peak rate %v", got)
	}
}

// TestAdaptLowersRateEvenly: shadows on a budget that cannot cover their configured rates
// are sampled at rates scaled by one factor that fits the budget; the rate then stays
// as low when the load falls (it is planned for the hour's busiest minute), so quiet and
// busy minutes are mirrored alike.
func TestAdaptLowersRateEvenly(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m, err := newMirror(Config{}, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := newBudget(0.01, c.Now) // 10 ms of CPU per second
	if err != nil {
		t.Fatal(err)
	}
	primary := linear([]string{"a"})
	a := addShadow(t, m, ShadowConfig{Name: "a", Rate: 1, PrimaryPredictor: primary, Predictor: linear([]string{"a"}), Budget: b})
	h := addShadow(t, m, ShadowConfig{Name: "h", Rate: 0.5, PrimaryPredictor: primary, Predictor: linear([]string{"a"}), Budget: b})
	free := addShadow(t, m, ShadowConfig{Name: "free", Rate: 0.7, PrimaryPredictor: primary, Predictor: linear([]string{"a"})})
	a.recordCPU(time.Millisecond, true) // measured costs: 1 ms and 2 ms a request
	h.recordCPU(2*time.Millisecond, true)
	free.recordCPU(time.Second, false)
	load := func(perSecond int, d time.Duration) {
		for end := c.Now().Add(d); c.Now().Before(end); {
			for _, s := range []*Shadow{a, h, free} {
				s.primaries.Add(uint64(perSecond / 2))
				s.cov.add(s.cov.index(c.Now()), uint64(perSecond/2), 0, 0, 0)
			}
			c.advance(500 * time.Millisecond)
			m.adapt(c.Now())
		}
	}
	// 100 requests/s: demand 1×100×1 ms + 0.5×100×2 ms = 200 ms/s against 9 ms/s (90% of
	// the share): every rate × 0.045.
	const scale = 0.9 * 0.01 / 0.2
	load(100, 3*time.Minute)
	check := func(when string) {
		t.Helper()
		if got := a.rate(); math.Abs(got-scale) > 1e-9 {
			t.Errorf("%s: a at %v, want %v", when, got, scale)
		}
		if got := h.rate(); math.Abs(got-0.5*scale) > 1e-9 {
			t.Errorf("%s: h at %v, want %v", when, got, 0.5*scale)
		}
		if got := free.rate(); got != 0.7 {
			t.Errorf("%s: the shadow without a budget at %v", when, got)
		}
	}
	check("busy")
	load(10, 10*time.Minute) // a tenth of the load: the hour's peak still sets the rate
	check("quiet after busy")
	if st := a.Stats(); st.EffectiveRate != a.rate() || st.Budget == nil || st.Budget.Share != 0.01 {
		t.Errorf("stats %+v", st)
	}
	load(10, 61*time.Minute) // the peak has left the hour: demand 20 ms/s, rates × 0.45
	if got := a.rate(); math.Abs(got-0.45) > 1e-9 {
		t.Errorf("an hour after the peak: a at %v, want 0.45", got)
	}
	load(2, 61*time.Minute) // 4 ms/s: the configured rates fit
	if a.rate() != 1 || h.rate() != 0.5 {
		t.Errorf("within the budget: rates %v and %v, want 1 and 0.5", a.rate(), h.rate())
	}
}

// TestScorePaths: within the budget a job is scored on the worker's thread (normal
// priority) and its CPU time charged; beyond it, on the idle-priority path; with no idle
// path, or when that path times out, the request is dropped for want of CPU, not counted
// as a shadow error.
func TestScorePaths(t *testing.T) {
	const path = "../../examples/models/claims/1/model.txt"
	model, err := engine.LoadFile(path, "", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	nf := model.NumFeatures()
	rows := make([]float64, 50*nf)
	scores := make([]float64, 50)
	if err := model.PredictF64(rows, 50, scores, false); err != nil {
		t.Fatal(err)
	}
	req := Request{Rows: rows, NumRows: 50, NumFeatures: nf, Scores: scores, Outputs: 1}
	var idleCalls int
	idle := func(rows []float64, nrows int, out []float64, raw bool) (time.Duration, error) {
		idleCalls++
		if !model.CanBackground() {
			return time.Microsecond, model.PredictF64(rows, nrows, out, raw)
		}
		return model.PredictF64Background(rows, nrows, out, raw, time.Second)
	}
	timedOut := func([]float64, int, []float64, bool) (time.Duration, error) {
		return 0, fmt.Errorf("scoring: %w", engine.ErrBackgroundTimeout)
	}
	f := func(name string, budget *Budget, bg func([]float64, int, []float64, bool) (time.Duration, error), n int,
		wantNormal, wantIdle, wantNoCPU uint64) *Shadow {
		t.Helper()
		m := testMirror(t, Config{Queue: n})
		s := addShadow(t, m, ShadowConfig{Name: name, PrimaryPredictor: model, Predictor: model, Budget: budget, Background: bg})
		for i := 0; i < n; i++ {
			m.Submit([]*Shadow{s}, req)
		}
		m.Close()
		st := s.Stats()
		if st.NormalPriority != wantNormal || st.IdlePriority != wantIdle || st.DroppedCPU != wantNoCPU || st.Errors != 0 ||
			st.Requests != wantNormal+wantIdle || st.Dropped != wantNoCPU || st.Coverage.LastHour.Primary != 0 {
			t.Fatalf("%s: %+v", name, st)
		}
		if st.Requests > 0 && (st.MaxAbsDiff != 0 || st.CostSeconds <= 0) {
			t.Fatalf("%s: scored wrong or no cost: %+v", name, st)
		}
		return s
	}
	f("no budget, idle path", nil, idle, 3, 0, 3, 0)
	f("no budget, no idle path", nil, nil, 3, 3, 0, 0)
	b, _ := NewBudget(1)
	s := f("budget", b, idle, 3, 3, 0, 0)
	if bs := b.Stats(); bs.Granted != 3 || bs.CPUSeconds <= 0 || s.Stats().CPUSecondsNormal != bs.CPUSeconds {
		t.Fatalf("budget %+v, shadow %+v", bs, s.Stats())
	}
	if idleCalls != 3 {
		t.Fatalf("idle path called %d times, want 3", idleCalls)
	}
	empty, _ := NewBudget(1)
	empty.charge(time.Hour) // in debt for an hour
	f("over budget, idle path", empty, idle, 3, 0, 3, 0)
	f("over budget, no idle path", empty, nil, 3, 0, 0, 3)
	f("idle path timed out", nil, timedOut, 3, 0, 0, 3)
}
