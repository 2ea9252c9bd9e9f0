package loadtest

// The run modes (docs/loadtest.md, "Scenarios"): steps, ramp and search, each a sequence
// of phases.

import (
	"context"
	"fmt"
	"time"
)

// runSteps runs each step in turn; the CPU profile is taken at the highest rate.
func (r *runner) runSteps(ctx context.Context) error {
	peak := 0
	for i, st := range r.sc.Steps {
		if st.Rate > r.sc.Steps[peak].Rate {
			peak = i
		}
	}
	for i, st := range r.sc.Steps {
		if ctx.Err() != nil {
			break
		}
		warm := r.sc.Warmup.D()
		measured := st.Duration.D() - warm
		ph := r.newPhase(fmt.Sprintf("step %d/%d", i+1, len(r.sc.Steps)), warm, measured)
		rate := st.Rate
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(rate) }
		}
		if i == peak {
			r.planProfile(ph, measured)
		}
		ph.run(ctx, nil)
		n, m := ph.windowsUsed()
		if n == 0 {
			break
		}
		r.res.Steps = append(r.res.Steps, r.stepResult(ph, "step", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(rate) }))
	}
	return nil
}

func (r *runner) planProfile(ph *phase, measured time.Duration) {
	if !r.res.Sidecar.PprofEnabled {
		return
	}
	ph.profileSecs = r.profileSeconds(measured)
	ph.profileAt = ph.measureStart
	r.res.Sidecar.CPUProfileStep = len(r.res.Steps)
}

// runRamp runs one linear ramp; each window becomes a step.
func (r *runner) runRamp(ctx context.Context) error {
	rp := r.sc.Ramp
	warm := r.sc.Warmup.D()
	dur := rp.Duration.D()
	ph := r.newPhase("ramp", warm, dur)
	total := func(el time.Duration) float64 {
		if el < warm {
			return rp.From
		}
		f := float64(el-warm) / float64(dur)
		return rp.From + (rp.To-rp.From)*min(f, 1)
	}
	for _, pw := range ph.wls {
		w := pw.w
		pw.rate = func(el time.Duration) float64 { return w.rate(total(el)) }
	}
	if r.res.Sidecar.PprofEnabled {
		secs := r.profileSeconds(dur / 3)
		ph.profileSecs = secs
		// Profile where the rate peaks: the end of the ramp, or its start when it falls.
		ph.profileAt = ph.measureStart
		if rp.To >= rp.From {
			ph.profileAt = ph.measureStart.Add(max(0, dur-time.Duration(secs)*time.Second))
		}
	}
	ph.run(ctx, nil)
	n, _ := ph.windowsUsed()
	peakStep, peakRate := 0, -1.0
	for k := 0; k < n; k++ {
		mid := warm + ph.window*time.Duration(k) + ph.window/2
		st := r.stepResult(ph, "ramp", k, k+1, ph.window, func(pw *phaseWL) float64 { return pw.rate(mid) })
		if st.OfferedRPS > peakRate {
			peakStep, peakRate = st.Index, st.OfferedRPS
		}
		st.Stable = false // one window cannot show stability
		r.res.Steps = append(r.res.Steps, st)
	}
	r.res.Sidecar.CPUProfileStep = peakStep
	return nil
}

// runSearch finds the highest rate that holds the SLO, then confirms it with a profiled
// step.
func (r *runner) runSearch(ctx context.Context) error {
	s := r.sc.Search
	trial := func(rate float64) (StepResult, bool) {
		warm := r.sc.Warmup.D()
		measured := time.Duration(s.MaxWindows) * r.sc.Window.D()
		ph := r.newPhase(fmt.Sprintf("search %.0f/s", rate), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(rate) }
		}
		slo := ms(r.sc.SLO.P99.D())
		ph.run(ctx, func(complete int) bool {
			if complete < 3 {
				return false
			}
			st := ph.stats(ph.wls, 0, complete, time.Duration(complete)*ph.window, 0)
			// Stop early once stable, or once the SLO is clearly broken (every window over).
			if Stable(st.WindowMeanMs, s.Stability) && Stable(st.WindowAchieved, s.Stability) {
				return true
			}
			last := st.WindowP99Ms[len(st.WindowP99Ms)-3:]
			return last[0] > 2*slo && last[1] > 2*slo && last[2] > 2*slo
		})
		n, m := ph.windowsUsed()
		st := r.stepResult(ph, "search", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(rate) })
		r.res.Steps = append(r.res.Steps, st)
		return st, st.Stable && st.SLOMet
	}
	// settle follows a failed trial: an overloaded target may still hold a backlog of
	// requests the generator gave up on, which would fail the next trial whatever its
	// rate. One request timeout lets it drain (or time out) first.
	settle := func() {
		select {
		case <-time.After(r.sc.Timeout.D()):
		case <-ctx.Done():
		}
	}
	var good, bad float64
	trials := 0
	for rate := s.Start; rate <= s.Max*(1+1e-9) && ctx.Err() == nil; rate *= s.Factor {
		_, ok := trial(rate)
		trials++
		if !ok {
			bad = rate
			settle()
			break
		}
		good = rate
	}
	if bad > 0 {
		for i := 0; i < s.Bisections && ctx.Err() == nil; i++ {
			mid := (good + bad) / 2
			if bad-mid < 1 {
				break
			}
			_, ok := trial(mid)
			trials++
			if ok {
				good = mid
			} else {
				bad = mid
				settle()
			}
		}
	}
	var cands float64
	for _, w := range r.wls {
		if w.spec.FixedRate == 0 {
			cands += w.spec.Share * w.meanCands
		}
	}
	r.res.Search = &SearchResult{MaxRate: good, MaxPredictionsPerSec: good * cands, Trials: trials}
	if good > 0 && ctx.Err() == nil {
		warm := r.sc.Warmup.D()
		measured := 5 * r.sc.Window.D()
		ph := r.newPhase(fmt.Sprintf("confirm %.0f/s", good), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(good) }
		}
		r.planProfile(ph, measured)
		ph.run(ctx, nil)
		if n, m := ph.windowsUsed(); n > 0 {
			r.res.Steps = append(r.res.Steps, r.stepResult(ph, "confirm", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(good) }))
		}
	}
	return nil
}
