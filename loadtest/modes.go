package loadtest

// The run modes (docs/loadtest.md, "Scenarios"): steps, ramp and search, each a sequence
// of phases.

import (
	"context"
	"fmt"
	"math"
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
			if pw.twin != nil {
				pw.twin.rate = pw.rate
			}
		}
		if i == peak {
			r.planProfile(ph, measured)
		}
		ph.run(ctx, nil)
		n, m := ph.windowsUsed()
		if n == 0 {
			break
		}
		offered := func(pw *phaseWL) float64 { return pw.w.rate(rate) }
		// B first: both take their Index from A's steps so far.
		if r.resB != nil {
			r.resB.Steps = append(r.resB.Steps, r.sideResult(ph, true, "step", 0, n, m, offered))
		}
		r.res.Steps = append(r.res.Steps, r.stepResult(ph, "step", 0, n, m, offered))
	}
	return nil
}

func (r *runner) planProfile(ph *phase, measured time.Duration) {
	if !r.res.Sidecar.PprofEnabled || r.targetB != nil {
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

// runConcurrency runs the closed-loop sweep: each level is a step (phase "concurrency")
// whose offered rate is what it sent. Workloads with a fixed_rate keep their open-loop
// rate; the others get round(level × share) senders, at least one. The CPU profile is
// taken at the highest level.
func (r *runner) runConcurrency(ctx context.Context) error {
	c := r.sc.Concurrency
	peak := 0
	for i, n := range c.Levels {
		if n > c.Levels[peak] {
			peak = i
		}
	}
	for i, level := range c.Levels {
		if ctx.Err() != nil {
			break
		}
		warm := r.sc.Warmup.D()
		measured := c.Duration.D() - warm
		ph := r.newPhase(fmt.Sprintf("concurrency %d (%d/%d)", level, i+1, len(c.Levels)), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			if w.spec.FixedRate > 0 {
				pw.rate = func(time.Duration) float64 { return w.spec.FixedRate }
				continue
			}
			pw.workers = max(1, int(math.Round(float64(level)*w.spec.Share)))
			pw.rate = func(time.Duration) float64 { return 0 } // a closed loop has no schedule
		}
		if i == peak {
			r.planProfile(ph, measured)
		}
		ph.run(ctx, nil)
		n, m := ph.windowsUsed()
		if n == 0 {
			break
		}
		st := r.stepResult(ph, "concurrency", 0, n, m, func(pw *phaseWL) float64 { return pw.w.spec.FixedRate })
		st.Concurrency = level
		st.OfferedRPS = st.SentRPS
		for k := range st.Workloads {
			if st.Workloads[k].OfferedRPS == 0 {
				st.Workloads[k].OfferedRPS = st.Workloads[k].SentRPS
			}
		}
		r.res.Steps = append(r.res.Steps, st)
	}
	return nil
}
