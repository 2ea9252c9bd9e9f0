package loadtest

// Windows and stability (docs/loadtest.md, "How it measures"): a phase's windows are
// summed into a step's statistics, and the last windows decide whether it was stable.

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// sparseHist lists h's non-empty buckets as pairs of value (µs, the bucket's highest
// equivalent value, as ValueAtQuantile reports) and count, values ascending.
func sparseHist(h *hdrhistogram.Histogram) []int64 {
	out := []int64{}
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			out = append(out, b.To, b.Count)
		}
	}
	return out
}

// windowsUsed is how many windows a finished phase reports: all of them, or those begun
// before an early stop.
func (ph *phase) windowsUsed() (n int, measured time.Duration) {
	n = ph.nWin
	if ph.keep > 0 {
		return ph.keep, time.Duration(ph.keep) * ph.window
	}
	if !ph.stopAt.IsZero() {
		d := ph.stopAt.Sub(ph.measureStart)
		if d <= 0 {
			return 0, 0
		}
		n = min(ph.nWin, int(math.Ceil(float64(d)/float64(ph.window))))
		if full := d.Truncate(ph.window); full < time.Duration(n)*ph.window {
			return n, min(d, time.Duration(n)*ph.window)
		}
	}
	return n, time.Duration(n) * ph.window
}

// stats summarizes windows [from, to) of the phase for the given workloads.
func (ph *phase) stats(pws []*phaseWL, from, to int, measured time.Duration, offered float64) Stats {
	s := Stats{OfferedRPS: offered, Errors: map[string]int64{}}
	h := newHist()
	lag := newHist()
	var compl, sent, pred int64
	for _, pw := range pws {
		pw.mu.Lock()
		for i := from; i < to; i++ {
			ws := pw.win[i]
			h.Merge(ws.hist)
			s.OK += ws.ok
			s.Degraded += ws.degraded
			s.LateSends += ws.late
			for k, n := range ws.errs {
				s.Errors[k] += n
			}
			compl += pw.compl[i].Load()
			sent += pw.sent[i].Load()
			pred += pw.predOK[i].Load()
		}
		lag.Merge(pw.lag)
		pw.mu.Unlock()
		s.InFlightWaits += pw.waits.Load()
	}
	s.Requests = h.TotalCount()
	var nerr int64
	for _, n := range s.Errors {
		nerr += n
	}
	if len(s.Errors) == 0 {
		s.Errors = nil
	}
	if s.Requests > 0 {
		s.ErrorRate = float64(nerr) / float64(s.Requests)
	}
	if sec := measured.Seconds(); sec > 0 {
		s.AchievedRPS = float64(compl) / sec
		s.SentRPS = float64(sent) / sec
		s.PredictionsPerSec = float64(pred) / sec
	}
	us := func(v int64) float64 { return float64(v) / 1000 }
	if h.TotalCount() > 0 {
		s.Latency = Latency{
			P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P95: us(h.ValueAtQuantile(95)),
			P99: us(h.ValueAtQuantile(99)), P999: us(h.ValueAtQuantile(99.9)),
			Max: us(h.Max()), Mean: h.Mean() / 1000,
		}
	}
	if lag.TotalCount() > 0 {
		s.SendLagP90Ms = us(lag.ValueAtQuantile(90))
		s.SendLagP99Ms = us(lag.ValueAtQuantile(99))
		s.SendLagMaxMs = us(lag.Max())
	}
	// Per-window p99 and achieved rate, for the stability rule.
	for i := from; i < to; i++ {
		wh := newHist()
		var c, nerr, pred int64
		for _, pw := range pws {
			pw.mu.Lock()
			wh.Merge(pw.win[i].hist)
			for _, n := range pw.win[i].errs {
				nerr += n
			}
			pw.mu.Unlock()
			c += pw.compl[i].Load()
			pred += pw.predOK[i].Load()
		}
		s.WindowLatencyUs = append(s.WindowLatencyUs, sparseHist(wh))
		s.WindowErrors = append(s.WindowErrors, nerr)
		s.WindowPredictions = append(s.WindowPredictions, pred)
		s.WindowP99Ms = append(s.WindowP99Ms, us(wh.ValueAtQuantile(99)))
		s.WindowMeanMs = append(s.WindowMeanMs, wh.Mean()/1000)
		s.WindowAchieved = append(s.WindowAchieved, float64(c)/ph.window.Seconds())
	}
	return s
}

// Stable applies the stability rule: the last three values lie within tol of their mean,
// and they are not a climb (rising window after window by more than tol of their mean in
// all: a queue that grows every window, whose values a loose tol would still accept).
func Stable(vals []float64, tol float64) bool {
	if len(vals) < 3 {
		return false
	}
	last := vals[len(vals)-3:]
	mean := (last[0] + last[1] + last[2]) / 3
	for _, v := range last {
		if math.Abs(v-mean) > tol*mean {
			return false
		}
	}
	if last[0] < last[1] && last[1] < last[2] && last[2]-last[0] > tol*mean {
		return false
	}
	return true
}

// generatorLimited says whether the generator, not the sidecar, shaped a step (see
// StepResult.GeneratorLimited).
func generatorLimited(s *Stats, maxInFlight int, sloP99 time.Duration) bool {
	if s.InFlightWaits > 0 || s.Errors[ErrGeneratorNoFreeConns] > 0 {
		return float64(maxInFlight) < 2*s.OfferedRPS*sloP99.Seconds()
	}
	return s.SendLagP90Ms > ms(LimitedLag)
}

// sidecarErrorRate is the error rate the SLO judges. Requests the generator could not
// send for want of a connection are its own errors when its cap is the limit (limited:
// generatorLimited), not the sidecar's, and are left out; under a larger cap they are
// the sidecar's backlog holding every connection, and count.
func sidecarErrorRate(s *Stats, limited bool) float64 {
	if g := s.Errors[ErrGeneratorNoFreeConns]; g > 0 && limited && s.Requests > 0 {
		return max(0, s.ErrorRate-float64(g)/float64(s.Requests))
	}
	return s.ErrorRate
}

// stable applies the stability rule to a step's windows at offered requests/s, with
// two allowances for what is noise, not a change of state:
//   - the achieved rate's band is at least 3/√n of its mean, n the requests a window
//     expects: Poisson arrivals put a window's count about 1/√n off its mean (50
//     requests a window: 14%), so a fixed 10% band fails a steady low-rate step;
//   - mean latencies that all stay under a quarter of the SLO's p99 are stable: jitter of
//     a fraction of a millisecond is not a queue, and a growing queue climbs toward the
//     SLO, which a higher rate's step then shows.
func (r *runner) stable(st *Stats, offered float64) bool {
	tol := r.stabilityTol()
	rateTol := tol
	if n := offered * r.sc.Window.D().Seconds(); n > 0 {
		rateTol = max(tol, 3/math.Sqrt(n))
	}
	latOK := Stable(st.WindowMeanMs, tol)
	if !latOK && len(st.WindowMeanMs) >= 3 {
		latOK = true
		for _, v := range st.WindowMeanMs[len(st.WindowMeanMs)-3:] {
			if v > ms(r.sc.SLO.P99.D())/4 {
				latOK = false
			}
		}
	}
	return latOK && Stable(st.WindowAchieved, rateTol)
}

// stabilityTol is the tolerance of the stability rule outside search mode.
func (r *runner) stabilityTol() float64 {
	if r.sc.Search != nil {
		return r.sc.Search.Stability
	}
	return 0.10
}

// stepResult builds a StepResult from windows [from, to) of a finished phase.
func (r *runner) stepResult(ph *phase, phaseName string, from, to int, measured time.Duration, offered func(*phaseWL) float64) StepResult {
	return r.sideResult(ph, false, phaseName, from, to, measured, offered)
}

// sideResult is stepResult for side A (b false: the run's only side, if not
// interleaved) or side B of an interleaved run.
func (r *runner) sideResult(ph *phase, b bool, phaseName string, from, to int, measured time.Duration, offered func(*phaseWL) float64) StepResult {
	wls, cpuAt, rssAt, pid, missAt, missOK := ph.wls, ph.cpuAt, ph.rssAt, r.pid, ph.missAt, ph.missOK
	if b {
		wls, cpuAt, rssAt, pid, missAt, missOK = ph.wlsB, ph.cpuAtB, ph.rssAtB, r.pidB, ph.missAtB, ph.missOKB
	}
	var total float64
	for _, pw := range wls {
		total += offered(pw)
	}
	st := StepResult{Index: len(r.res.Steps), Phase: phaseName, MeasuredS: measured.Seconds()}
	st.Stats = ph.stats(wls, from, to, measured, total)
	st.Stable = r.stable(&st.Stats, total)
	st.GeneratorLimited = generatorLimited(&st.Stats, r.sc.MaxInFlight, r.sc.SLO.P99.D())
	st.SLOMet = st.Requests > 0 && st.Latency.P99 <= ms(r.sc.SLO.P99.D()) &&
		sidecarErrorRate(&st.Stats, st.GeneratorLimited) <= r.sc.SLO.MaxErrorRate
	if pid != 0 && to > from {
		cpu := cpuAt[to] - cpuAt[from]
		if cpu >= 0 && cpuAt[to] > 0 {
			st.SidecarCPUSeconds = cpu
			if measured > 0 {
				st.SidecarCores = cpu / measured.Seconds()
			}
			if pred := st.PredictionsPerSec * measured.Seconds(); pred > 0 {
				st.CPUSecondsPer1kPredictions = cpu / (pred / 1000)
			}
		}
		for k := from; k <= to; k++ {
			st.RSSBytes = max(st.RSSBytes, rssAt[k])
		}
		// Per-window CPU only when every boundary was sampled.
		wcpu, whole := make([]float64, 0, to-from), true
		for k := from; k < to; k++ {
			if cpuAt[k] <= 0 || cpuAt[k+1] <= 0 {
				whole = false
				break
			}
			wcpu = append(wcpu, max(cpuAt[k+1]-cpuAt[k], 0))
		}
		if whole {
			st.WindowCPUSeconds = wcpu
		}
	}
	if to > from && missOK[from] && missOK[to] && measured > 0 {
		st.StoreMissesPerSec = max(missAt[to]-missAt[from], 0) / measured.Seconds()
	}
	if len(wls) > 1 {
		for _, pw := range wls {
			ws := WorkloadStats{
				Name: pw.w.spec.Name, Model: pw.w.model,
				Stats: ph.stats([]*phaseWL{pw}, from, to, measured, offered(pw)),
			}
			ws.WindowLatencyUs = nil // the step's windows carry the histograms
			st.Workloads = append(st.Workloads, ws)
		}
	}
	return st
}
