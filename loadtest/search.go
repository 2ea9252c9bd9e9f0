package loadtest

// Search mode (docs/loadtest.md, "Scenarios"): find the knee and agree with it. The
// headline is the highest rate whose confirm step passed; trials the generator could not
// drive are reported apart and stop the search from raising the rate; every trial starts
// after the target drained.

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Verdicts of a search trial or confirm step (StepResult.Verdict).
const (
	VerdictPass      = "pass"
	VerdictFail      = "fail"              // the sidecar missed the SLO or was unstable
	VerdictGenerator = "generator-limited" // the generator could not drive the rate
)

// maxConfirms is how many confirm steps a search runs, from the highest passing trial
// rate down, before it gives up on a headline.
const maxConfirms = 3

// searchOutcome is what the search procedure decided.
type searchOutcome struct {
	MaxRate            float64 // highest rate whose confirm step passed; 0 if none
	HighestTrialRate   float64 // highest rate a trial passed at
	ConfirmAttempts    int
	SidecarFailedRate  float64 // lowest rate whose trial failed on the sidecar; 0 if none
	GeneratorLimitRate float64 // lowest rate the generator could not drive; 0 if none
	Trials             int
}

// searchProcedure runs the search: the rate is multiplied by Factor from Start while
// trials pass; a sidecar failure or a generator limit ends the climb (a generator-limited
// trial is no failure of the sidecar, but no higher rate can be measured either; it is
// run once more first, since a busy machine can stall the generator for a moment); then
// Bisections trials between the highest pass and the lowest rate that ended the climb.
// The first confirm step runs at the highest passing rate. When one fails, the next runs
// lower by the search's resolution (what bisection left between the highest pass and the
// lowest rate that ended the climb; when nothing ended it, the climb's last step over
// 2^Bisections), the step doubling with each failure, but never below the next passing
// trial; at most maxConfirms in all, and the first that passes is the answer. Stepping by
// the resolution keeps the answer near the knee when the longer confirm step fails just
// above it: falling back to the next passing trial would fall a whole climb step. trial
// and confirm run one step at a rate; stop reports an interrupted run.
func searchProcedure(s *Search, trial, confirm func(rate float64) string, stop func() bool) searchOutcome {
	var o searchOutcome
	var good, prev float64 // the highest passing rate and the climb's rate before it
	var passing []float64  // every passing trial rate
	lowest := func(a, b float64) float64 {
		if a == 0 || (b > 0 && b < a) {
			return b
		}
		return a
	}
	// upper is the lowest rate that ended the climb: a sidecar failure or a generator limit.
	upper := func() float64 { return lowest(o.SidecarFailedRate, o.GeneratorLimitRate) }
	run := func(rate float64) bool {
		o.Trials++
		v := trial(rate)
		if v == VerdictGenerator && !stop() {
			// Once more: a busy machine can stall the generator for a moment; a real
			// limit holds again.
			o.Trials++
			v = trial(rate)
		}
		switch v {
		case VerdictPass:
			good = max(good, rate)
			passing = append(passing, rate)
			return true
		case VerdictGenerator:
			o.GeneratorLimitRate = lowest(o.GeneratorLimitRate, rate)
		default:
			o.SidecarFailedRate = lowest(o.SidecarFailedRate, rate)
		}
		return false
	}
	for rate := s.Start; rate <= s.Max*(1+1e-9) && !stop(); rate *= s.Factor {
		before := good
		if !run(rate) {
			break
		}
		prev = before
	}
	// resolution is how far apart the search can tell two rates: the interval left
	// between the highest pass and the rate that ended the climb, or, when nothing
	// ended it, the climb's last step cut as often as bisection would have cut it.
	var resolution float64
	if upper() > 0 {
		for i := 0; i < s.Bisections && !stop(); i++ {
			mid := (good + upper()) / 2
			if upper()-mid < 1 {
				break
			}
			run(mid)
		}
		resolution = upper() - good
	} else if good > 0 {
		resolution = (good - prev) / float64(int(1)<<min(s.Bisections, 30))
	}
	o.HighestTrialRate = good
	rate, step := good, resolution
	for rate > 0 && o.ConfirmAttempts < maxConfirms && !stop() {
		o.ConfirmAttempts++
		switch confirm(rate) {
		case VerdictPass:
			o.MaxRate = rate
			return o
		case VerdictGenerator:
			o.GeneratorLimitRate = lowest(o.GeneratorLimitRate, rate)
		default:
			o.SidecarFailedRate = lowest(o.SidecarFailedRate, rate)
		}
		if step <= 0 {
			break
		}
		// The next: one step lower, but no lower than the highest trial that passed below
		// this rate (a coarse search's step can reach zero).
		floor := 0.0
		for _, p := range passing {
			if p < rate {
				floor = max(floor, p)
			}
		}
		if rate = max(rate-step, floor); rate <= 0 {
			break
		}
		step *= 2
	}
	return o
}

// verdict judges a finished search trial or confirm step.
func verdict(st *StepResult) string {
	switch {
	case st.GeneratorLimited:
		return VerdictGenerator
	case st.Stable && st.SLOMet:
		return VerdictPass
	}
	return VerdictFail
}

// probe sends one request of the first workload, alone, and returns its latency in ms
// (or ok false on an error).
func (r *runner) probe() (float64, bool) {
	w := r.wls[0]
	start := time.Now()
	out := r.target.predict(w.bodies[0].Data, w.contentType, r.sc.Timeout.D())
	return ms(time.Since(start)), out.kind == ""
}

// confirmWindows is the fewest windows a confirm step measures (and profiles).
const confirmWindows = 5

// probeGap is the spacing of drain probes: 20 requests/s, light for any target.
const probeGap = 50 * time.Millisecond

// baseline measures the idle target's latency: the median of 7 probes.
func (r *runner) baseline(ctx context.Context) float64 {
	var lat []float64
	for range 7 {
		if ctx.Err() != nil {
			break
		}
		if l, ok := r.probe(); ok {
			lat = append(lat, l)
		}
		sleepCtx(ctx, probeGap)
	}
	if len(lat) == 0 {
		return 0
	}
	return median(lat)
}

// drainLimit bounds the wait for the target to drain.
func (r *runner) drainLimit() time.Duration {
	return max(10*r.sc.Timeout.D(), 30*time.Second)
}

// drain waits until the target is idle: no request of this run in flight, and three
// probes in a row whose median answers within max(2 × baseline, baseline + 2ms). A
// backlog an overloaded trial left in the target (requests the generator gave up on but
// the target still works through) would otherwise slow the next trial whatever its rate.
// It returns the time waited and whether the target drained within drainLimit.
func (r *runner) drain(ctx context.Context, baselineMs float64) (time.Duration, bool) {
	start := time.Now()
	deadline := start.Add(r.drainLimit())
	for r.inFlight.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		sleepCtx(ctx, 10*time.Millisecond)
	}
	bound := max(2*baselineMs, baselineMs+2)
	var last []float64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		l, ok := r.probe()
		if !ok {
			l = 1e9
		}
		last = append(last, l)
		if len(last) > 3 {
			last = last[1:]
		}
		if len(last) == 3 && median(last) <= bound {
			return time.Since(start), true
		}
		sleepCtx(ctx, probeGap)
	}
	return time.Since(start), ctx.Err() != nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// runSearch finds the highest rate that holds the SLO and confirms it with a profiled
// step (searchProcedure); each trial waits for the target to drain first.
func (r *runner) runSearch(ctx context.Context) error {
	s := r.sc.Search
	base := r.baseline(ctx)
	warned := false
	// step runs one trial or confirm phase at rate, after the target drained.
	step := func(rate float64, phaseName string, measured time.Duration, early bool) string {
		waited, drained := r.drain(ctx, base)
		if !drained {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s at %.1f/s started before the target drained: probes stayed above %.2f ms for %s",
				phaseName, rate, max(2*base, base+2), r.drainLimit()))
		}
		if ctx.Err() != nil {
			return VerdictFail
		}
		warm := r.sc.Warmup.D()
		ph := r.newPhase(fmt.Sprintf("%s %.0f/s", phaseName, rate), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(rate) }
		}
		// Trials stop once stable (from 3 windows), confirm steps from 5 (the profiled
		// part); both stop once the SLO is clearly broken, and fail when never stable.
		minWin := 3
		if !early {
			minWin = confirmWindows
			r.planProfile(ph, time.Duration(confirmWindows)*r.sc.Window.D())
		}
		slo := ms(r.sc.SLO.P99.D())
		ph.run(ctx, func(complete int) bool {
			if complete < minWin {
				return false
			}
			st := ph.stats(ph.wls, 0, complete, time.Duration(complete)*ph.window, 0)
			// Stop early once stable, or once the SLO is clearly broken (every window over).
			if r.stable(&st, rate) {
				return true
			}
			last := st.WindowP99Ms[len(st.WindowP99Ms)-3:]
			return last[0] > 2*slo && last[1] > 2*slo && last[2] > 2*slo
		})
		n, m := ph.windowsUsed()
		if n == 0 {
			return VerdictFail
		}
		st := r.stepResult(ph, phaseName, 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(rate) })
		st.DrainS = waited.Seconds()
		st.Verdict = verdict(&st)
		r.res.Steps = append(r.res.Steps, st)
		if st.Verdict == VerdictGenerator && !warned {
			warned = true
			msg := fmt.Sprintf("the generator could not drive %.1f requests/s (p90 send lag %.1f ms, %d waits for max_in_flight %d): "+
				"the search stops raising the rate there; the sidecar was not judged at it. Run the generator on another machine or raise max_in_flight",
				rate, st.SendLagP90Ms, st.InFlightWaits, r.sc.MaxInFlight)
			r.res.Notes = append(r.res.Notes, msg)
			if r.cfg.Progress != nil {
				r.clearProgress()
				fmt.Fprintln(r.cfg.Progress, "warning:", msg)
			}
		}
		return st.Verdict
	}
	trialLen := time.Duration(s.MaxWindows) * r.sc.Window.D()
	confirmLen := time.Duration(max(s.MaxWindows, confirmWindows)) * r.sc.Window.D()
	o := searchProcedure(s,
		func(rate float64) string { return step(rate, "search", trialLen, true) },
		func(rate float64) string { return step(rate, "confirm", confirmLen, false) },
		func() bool { return ctx.Err() != nil })
	var cands float64
	for _, w := range r.wls {
		if w.spec.FixedRate == 0 {
			cands += w.spec.Share * w.meanCands
		}
	}
	r.res.Search = &SearchResult{
		MaxRate: o.MaxRate, MaxPredictionsPerSec: o.MaxRate * cands, Trials: o.Trials,
		HighestTrialRate: o.HighestTrialRate, ConfirmAttempts: o.ConfirmAttempts,
		SidecarFailedRate: o.SidecarFailedRate, GeneratorLimitRate: o.GeneratorLimitRate, BaselineMs: base,
	}
	return nil
}
