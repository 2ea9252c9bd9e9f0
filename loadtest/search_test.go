package loadtest

import (
	"math"
	"testing"
	"time"
)

// searchOracle answers trials and confirm steps by rate: trials pass below trialFail,
// confirm steps below confirmFail, and from genLimit up the generator is limited.
type searchOracle struct {
	trialFail, confirmFail, genLimit float64
	trials, confirms                 []float64
}

func (o *searchOracle) judge(rate, fail float64) string {
	switch {
	case o.genLimit > 0 && rate >= o.genLimit:
		return VerdictGenerator
	case rate >= fail:
		return VerdictFail
	}
	return VerdictPass
}

func (o *searchOracle) run(s *Search) searchOutcome {
	return searchProcedure(s,
		func(r float64) string { o.trials = append(o.trials, r); return o.judge(r, o.trialFail) },
		func(r float64) string { o.confirms = append(o.confirms, r); return o.judge(r, o.confirmFail) },
		func() bool { return false })
}

func TestSearchProcedure(t *testing.T) {
	s := &Search{Start: 50, Max: 10_000, Factor: 2, Bisections: 4}
	// The knee at 200/s: 50, 100 pass, 200 fails; 150, 175, 187.5, 193.75 pass; the
	// confirm at 193.75 passes.
	o := &searchOracle{trialFail: 200, confirmFail: 200}
	got := o.run(s)
	if got.MaxRate != 193.75 || got.SidecarFailedRate != 200 || got.GeneratorLimitRate != 0 || got.Trials != 7 || len(o.confirms) != 1 {
		t.Errorf("knee at 200: %+v, trials %v, confirms %v", got, o.trials, o.confirms)
	}
	// A trial passed at 200 but its confirm step fails there: the headline is the
	// highest rate whose confirm passed, never 200, and it is one resolution step lower
	// (the last doubling, 100 to 200, over 2^4), not the next passing trial at 100.
	o = &searchOracle{trialFail: 250, confirmFail: 200}
	s4 := &Search{Start: 50, Max: 200, Factor: 2, Bisections: 4}
	got = o.run(s4)
	if got.MaxRate != 193.75 || got.HighestTrialRate != 200 || got.ConfirmAttempts != 2 || got.SidecarFailedRate != 200 {
		t.Errorf("confirm fails at 200: %+v, confirms %v", got, o.confirms)
	}
	// Trials pass to 6,400/s, the longer confirm steps only below 6,300: bisection
	// leaves 6,400 to 6,800, and the confirm steps go 6,400, then 6,000. Falling back to
	// the next passing trial would answer 3,200, half the knee.
	o = &searchOracle{trialFail: 6500, confirmFail: 6300}
	got = o.run(&Search{Start: 100, Max: 20_000, Factor: 2, Bisections: 4})
	if got.MaxRate != 6000 || got.HighestTrialRate != 6400 || got.SidecarFailedRate != 6400 {
		t.Errorf("confirm fails at the knee: %+v, trials %v, confirms %v", got, o.trials, o.confirms)
	}
	// Confirm steps step down from the highest passing rate until one passes.
	o = &searchOracle{trialFail: 200, confirmFail: 180}
	got = o.run(s)
	if got.MaxRate != 175 || got.HighestTrialRate != 193.75 || got.ConfirmAttempts != 3 {
		t.Errorf("confirms from 193.75 down: %+v, confirms %v", got, o.confirms)
	}
	// Without bisection the resolution is a whole climb step: a failed confirm at 6,400
	// falls back to the passing trial at 3,200, not to zero.
	o = &searchOracle{trialFail: 6500, confirmFail: 6300}
	got = o.run(&Search{Start: 100, Max: 20_000, Factor: 2})
	if got.MaxRate != 3200 || got.ConfirmAttempts != 2 {
		t.Errorf("no bisection: %+v, confirms %v", got, o.confirms)
	}
	// At most three confirm steps: then no headline at all.
	o = &searchOracle{trialFail: 200, confirmFail: 160}
	got = o.run(s)
	if got.MaxRate != 0 || got.ConfirmAttempts != maxConfirms {
		t.Errorf("no confirm passes: %+v, confirms %v", got, o.confirms)
	}
	// The generator is limited from 300/s while the sidecar holds to 1,000/s: no
	// trial counts against the sidecar, and no trial runs above the limit.
	o = &searchOracle{trialFail: 1000, confirmFail: 1000, genLimit: 300}
	got = o.run(s)
	if got.SidecarFailedRate != 0 || got.GeneratorLimitRate != 300 || got.MaxRate < 250 || got.MaxRate >= 300 {
		t.Errorf("generator limit at 300: %+v, trials %v", got, o.trials)
	}
	for _, r := range o.trials {
		if r > 400 {
			t.Errorf("trial at %v after the generator was limited at 400: %v", r, o.trials)
		}
	}
	// A generator-limited trial is run once more: a passing retry continues the climb.
	flaky := 0
	got = searchProcedure(&Search{Start: 50, Max: 400, Factor: 2},
		func(r float64) string {
			if r == 100 && flaky == 0 {
				flaky++
				return VerdictGenerator
			}
			return VerdictPass
		},
		func(float64) string { return VerdictPass }, func() bool { return false })
	if got.MaxRate != 400 || got.GeneratorLimitRate != 0 || got.Trials != 5 {
		t.Errorf("a passing retry: %+v", got)
	}
	// Nothing fails up to max: the answer is max, a lower bound.
	o = &searchOracle{trialFail: 1e9, confirmFail: 1e9}
	got = o.run(&Search{Start: 50, Max: 400, Factor: 2, Bisections: 4})
	if got.MaxRate != 400 || got.SidecarFailedRate != 0 || got.Trials != 4 {
		t.Errorf("no failure: %+v", got)
	}
	// Even the start fails: no headline, no confirm step.
	o = &searchOracle{trialFail: 1, confirmFail: 1}
	got = o.run(s)
	if got.MaxRate != 0 || len(o.confirms) != 0 {
		t.Errorf("start fails: %+v, trials %v, confirms %v", got, o.trials, o.confirms)
	}
}

// TestGeneratorLimitedRule: waits for max_in_flight are the generator's limit only when
// the cap is below twice what a sidecar meeting the SLO holds in flight.
func TestGeneratorLimitedRule(t *testing.T) {
	for _, c := range []struct {
		offered float64
		waits   int64
		lagMs   float64
		cap     int
		want    bool
	}{
		{100, 0, 1, 4096, false},
		{100, 0, 50, 4096, true},   // the generator's own CPU fell behind (p90 lag)
		{100, 10, 50, 4096, false}, // the sidecar's backlog filled the cap
		{100, 10, 0, 8, true},      // 8 < 2 × 100/s × 0.1s
		{100, 0, 8, 4096, false},   // p99 lag 16ms, p90 8ms: a stall, not a limit
		{10, 10, 0, 8, false},
	} {
		s := Stats{OfferedRPS: c.offered, InFlightWaits: c.waits, SendLagP90Ms: c.lagMs, SendLagP99Ms: 2 * c.lagMs}
		if got := generatorLimited(&s, c.cap, 100*time.Millisecond); got != c.want {
			t.Errorf("%+v: got %v", c, got)
		}
	}
	// A request the generator could not send for want of a connection counts as a wait
	// for the cap: the generator's limit under a small cap, the sidecar's backlog
	// under a large one (an overloaded sidecar holds every connection).
	s := Stats{OfferedRPS: 100, Errors: map[string]int64{ErrGeneratorNoFreeConns: 1}}
	if !generatorLimited(&s, 8, 100*time.Millisecond) {
		t.Error("a generator_no_free_conns error under a cap of 8: not generator-limited")
	}
	if generatorLimited(&s, 4096, 100*time.Millisecond) {
		t.Error("a generator_no_free_conns error under a cap of 4096: generator-limited")
	}
	// The SLO's error rate leaves such errors out only when the generator was the limit.
	s = Stats{Requests: 1000, ErrorRate: 0.03, Errors: map[string]int64{ErrGeneratorNoFreeConns: 20, "timeout": 10}}
	if got := sidecarErrorRate(&s, true); math.Abs(got-0.01) > 1e-12 {
		t.Errorf("generator-limited: sidecar error rate %v, want 0.01", got)
	}
	if got := sidecarErrorRate(&s, false); got != 0.03 {
		t.Errorf("not generator-limited: sidecar error rate %v, want 0.03", got)
	}
}
