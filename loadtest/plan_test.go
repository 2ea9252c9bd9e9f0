package loadtest

import (
	"encoding/json"
	"strings"
	"testing"
)

func planResult(steps ...StepResult) *Result {
	for i := range steps {
		steps[i].Index = i
		if steps[i].Phase == "" {
			steps[i].Phase = "step"
		}
	}
	return &Result{Schema: ResultSchema, Scenario: "s", RunID: "r", Machine: Machine{CPUModel: "cpu", Cores: 4},
		SLO: SLOJSON{P99Ms: 50, MaxErrorRate: 0.01}, Steps: steps}
}

func step(offered, predPerSec, p99, cpuPer1k, errRate float64) StepResult {
	return StepResult{Stats: Stats{OfferedRPS: offered, AchievedRPS: offered, Requests: 100, PredictionsPerSec: predPerSec,
		ErrorRate: errRate, Latency: Latency{P50: p99 / 2, P99: p99}}, CPUSecondsPer1kPredictions: cpuPer1k}
}

func TestCapacity(t *testing.T) {
	r := planResult(
		step(10, 10_000, 5, 0.002, 0),
		step(20, 20_000, 9, 0.002, 0),
		step(40, 40_000, 30, 0.0025, 0),  // best within 50ms
		step(80, 60_000, 400, 0.003, 0),  // missed the bound: step 2 is at saturation
		step(30, 50_000, 20, 0.002, 0.5), // errors: excluded
	)
	q := CapacityQuery{PredictionsPerSec: 100_000, P99Ms: 50, Headroom: 0.3}
	a, err := Capacity(r, q)
	if err != nil {
		t.Fatal(err)
	}
	// 100k/s × 2.5e-6 CPU-s ÷ 0.7 = 0.357 → 1 core; 100k ÷ (40k × 0.7) = 3.57 → 4 sidecars.
	if a.Step != 2 || a.Cores != 1 || a.Sidecars != 4 || !a.Saturated || a.StepCandidates != 1000 {
		t.Errorf("got %+v", a)
	}
	q.PredictionsPerSec = 10_000_000
	a, _ = Capacity(r, q)
	// 1e7 × 2.5e-6 ÷ 0.7 = 35.7 → 36 cores; 1e7 ÷ 28k = 357.1 → 358 sidecars.
	if a.Cores != 36 || a.Sidecars != 358 || !strings.Contains(a.String(q), "you need 36 cores / 358 sidecars at 30% headroom") {
		t.Errorf("got %s", a.String(q))
	}
	// The same load asked in requests/s: 10,000 requests of the profile's 1,000 candidates.
	rq := CapacityQuery{RequestsPerSec: 10_000, P99Ms: 50, Headroom: 0.3}
	a, _ = Capacity(r, rq)
	if a.Cores != 36 || a.Sidecars != 358 || a.Candidates != 1000 {
		t.Errorf("requests/s: %+v", a)
	}
	for _, want := range []string{"for 10000 requests/s of 1000 candidates (10000000 predictions/s)", "step 2: 40 requests/s of 1000 candidates",
		"at saturation"} {
		if !strings.Contains(a.String(rq), want) {
			t.Errorf("answer lacks %q:\n%s", want, a.String(rq))
		}
	}
	// Another request shape is answered, and says so.
	rq.Candidates = 10
	if a, _ = Capacity(r, rq); a.PredictionsPerSec != 100_000 || !strings.Contains(a.String(rq), "had 1000 candidates, not 10") {
		t.Errorf("other shape: %+v\n%s", a, a.String(rq))
	}
	if _, err := Capacity(r, CapacityQuery{PredictionsPerSec: 1, P99Ms: 1, Headroom: 0.3}); err == nil || !strings.Contains(err.Error(), "best p99 5.00 ms") {
		t.Errorf("unreachable bound: %v", err)
	}
	if _, err := Capacity(r, CapacityQuery{PredictionsPerSec: 1, P99Ms: 1, Headroom: 1}); err == nil {
		t.Error("headroom 100% accepted")
	}
	if _, err := Capacity(r, CapacityQuery{P99Ms: 1, Headroom: 0.3}); err == nil {
		t.Error("a query without a rate accepted")
	}
	noCPU := planResult(step(10, 10, 1, 0, 0))
	if _, err := Capacity(noCPU, CapacityQuery{PredictionsPerSec: 1, P99Ms: 5, Headroom: 0}); err == nil || !strings.Contains(err.Error(), "CPU") {
		t.Errorf("no CPU figures: %v", err)
	}
}

// TestCapacityBelowSaturation: a profile whose every step held the bound never found the
// sidecar's capacity; the answer must say it is a bound, not a capacity.
func TestCapacityBelowSaturation(t *testing.T) {
	r := planResult(step(10, 10_000, 5, 0.002, 0), step(20, 20_000, 6, 0.002, 0))
	r.Steps[1].SidecarCores = 0.24
	q := CapacityQuery{RequestsPerSec: 5000, Candidates: 1000, P99Ms: 20, Headroom: 0.3}
	a, err := Capacity(r, q)
	if err != nil {
		t.Fatal(err)
	}
	s := a.String(q)
	if a.Saturated || !strings.Contains(s, "at most") || !strings.Contains(s, "NOT a capacity") ||
		!strings.Contains(s, "at least 20000 predictions/s") || !strings.Contains(s, "used 0.24 of 4 cores") {
		t.Errorf("%+v\n%s", a, s)
	}
	// A generator-limited step that missed the bound does not make it a capacity.
	r.Steps = append(r.Steps, step(40, 30_000, 90, 0.002, 0))
	r.Steps[2].Index, r.Steps[2].GeneratorLimited = 2, true
	if a, _ := Capacity(r, q); a.Saturated {
		t.Error("a generator-limited step counted as the sidecar's saturation")
	}
}

func TestResultRoundTrip(t *testing.T) {
	r := planResult(step(10, 1000, 5, 0.002, 0))
	r.Steps[0].Errors = map[string]int64{"timeout": 1}
	dir := t.TempDir()
	if err := WriteResult(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := LoadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(got)
	if string(a) != string(b) {
		t.Errorf("round trip differs:\n%s\n%s", a, b)
	}
	for _, bad := range []string{`{}`, `{"schema":1}`, `{"schema":3,"scenario":"x"}`, `{"schema":0,"scenario":"x"}`, `{"schema":1,"scenario":"x","extra":1}`, `[`} {
		if _, err := ParseResult([]byte(bad)); err == nil {
			t.Errorf("ParseResult(%s) accepted", bad)
		}
	}
}

func FuzzParseResult(f *testing.F) {
	b, _ := json.Marshal(planResult(step(10, 1000, 5, 0.002, 0), step(20, 2000, 10, 0.002, 0)))
	f.Add(b)
	f.Add([]byte(`{"schema":1,"scenario":"x","steps":[{"offered_rps":1e308,"requests":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseResult(data)
		if err != nil {
			return
		}
		// Whatever parses can be planned from, compared and reported without a panic.
		_, _ = Capacity(r, CapacityQuery{PredictionsPerSec: 1000, P99Ms: 10, Headroom: 0.3})
		_, _ = Capacity(r, CapacityQuery{RequestsPerSec: 100, Candidates: 7, P99Ms: 10, Headroom: 0.3})
		_, _ = FitCPU(r)
		_, _ = Compare([]*Result{r}, []*Result{r}, CompareThresholds{})
		_ = reportHTML(r)
	})
}

// TestStableRejectsClimb: values inside a loose tolerance that rise window after window
// (a queue growing) are not stable; the same spread without a trend is.
func TestStableRejectsClimb(t *testing.T) {
	for _, c := range []struct {
		vals []float64
		tol  float64
		want bool
	}{
		{[]float64{110, 152, 187}, 0.3, false}, // the search test's overloaded trial
		{[]float64{152, 110, 187}, 0.3, true},
		{[]float64{4.40, 4.42, 4.45}, 0.1, true}, // a small rise is noise
		{[]float64{100, 100, 100}, 0.1, true},
		{[]float64{100, 120, 100}, 0.1, false},
		{[]float64{1, 2}, 0.5, false},
	} {
		if got := Stable(c.vals, c.tol); got != c.want {
			t.Errorf("Stable(%v, %v) = %v, want %v", c.vals, c.tol, got, c.want)
		}
	}
}

// TestStableAllowsNoise: a search step's stability allows Poisson counting noise in the
// achieved rate (3/√n of n requests a window) and sub-millisecond jitter far under the
// SLO, and still refuses a rate that swings past that and latency climbing toward the SLO.
func TestStableAllowsNoise(t *testing.T) {
	sc, err := LoadScenario("scenarios/capacity-search.yaml") // 500 ms windows, 10%, p99 25 ms
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{sc: sc}
	for _, c := range []struct {
		offered      float64
		means, achvd []float64
		want         bool
	}{
		// 100/s: 50 a window, ±14% is one standard deviation of a Poisson count.
		{100, []float64{0.4, 0.6, 0.3}, []float64{100, 84, 112}, true},
		{100, []float64{0.4, 0.6, 0.3}, []float64{100, 40, 160}, false},
		// 1,000/s: 500 a window, the band is 13%.
		{1000, []float64{0.4, 0.4, 0.4}, []float64{1000, 800, 1200}, false},
		{1000, []float64{0.4, 0.4, 0.4}, []float64{1000, 950, 1060}, true},
		// Latency climbing toward the SLO is no jitter.
		{1000, []float64{5, 10, 20}, []float64{1000, 1000, 1000}, false},
		{1000, []float64{12, 12.5, 12.2}, []float64{1000, 1000, 1000}, true},
	} {
		st := &Stats{WindowMeanMs: c.means, WindowAchieved: c.achvd}
		if got := r.stable(st, c.offered); got != c.want {
			t.Errorf("offered %v, means %v, achieved %v: stable %v, want %v", c.offered, c.means, c.achvd, got, c.want)
		}
	}
}
