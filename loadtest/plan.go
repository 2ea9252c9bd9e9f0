package loadtest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// CapacityQuery asks what it takes to serve a load at p99 ≤ P99Ms with Headroom spare
// (0.3: plan to run at 70% of measured capacity). The load is RequestsPerSec requests of
// Candidates candidates each (Candidates 0: the profile's own request shape), or, when
// RequestsPerSec is 0, PredictionsPerSec candidates scored per second.
type CapacityQuery struct {
	RequestsPerSec    float64
	Candidates        float64
	PredictionsPerSec float64
	P99Ms             float64
	Headroom          float64
	// FitWith are more profiles whose steps the CPU model is fitted to, besides the one
	// answering: those of the same machine (CPU model, cores and label) count. Profiles of
	// two request shapes give the model what one shape cannot.
	FitWith []*Result
}

// CapacityAnswer is the plan derived from one profile.
type CapacityAnswer struct {
	Profile string // scenario/run-id
	Machine string
	// Step is the measured step the plan rests on: the one with the most predictions/s
	// among those that held the p99 bound, the error bound, and were not generator-limited.
	Step int
	// PerSidecar is that step's predictions/s; CPUPerPrediction its sidecar CPU-seconds
	// per prediction.
	PerSidecar       float64
	CPUPerPrediction float64
	StepP99Ms        float64
	// StepCandidates is the profile's request shape at that step: candidates per
	// successful request.
	StepCandidates float64
	// Candidates and PredictionsPerSec are the query in the profile's terms: candidates
	// per request asked for (StepCandidates when the query named none) and the
	// predictions/s they make.
	Candidates        float64
	PredictionsPerSec float64
	// Saturated says the step is a real capacity: a step at a higher rate (not limited by
	// the generator) missed the bound. Otherwise the profile never pushed the sidecar past
	// its capacity, PerSidecar is only a lower bound, and Sidecars an upper bound.
	Saturated bool
	// StepCores is the sidecar's CPU use at the step (cores busy); MachineCores the
	// machine's. Below saturation they say how far the profile fell short.
	StepCores    float64
	MachineCores int
	// Fit is the profile's CPU model, used when the query's request shape differs from
	// the step's by more than 10%; nil otherwise, with FitNote saying why when the shapes
	// differ.
	Fit     *CPUFit
	FitNote string
	// ShapePerSidecar is, with Fit, the per-sidecar predictions/s at the query's shape:
	// the step's busy cores ÷ fitted CPU per request × candidates.
	ShapePerSidecar float64
	// StepMissRatio is the step's feature-store misses per prediction, which the CPU model
	// assumes for the query's shape.
	StepMissRatio   float64
	Cores           int // total sidecar cores: predictions/s × CPU per prediction ÷ (1 − headroom), rounded up
	Sidecars        int // predictions/s ÷ (per-sidecar capacity × (1 − headroom)), rounded up
	CoresPerSidecar float64
}

// String is the answer in a few lines: the plan, then what it rests on.
func (a CapacityAnswer) String(q CapacityQuery) string {
	var b strings.Builder
	if q.RequestsPerSec > 0 {
		fmt.Fprintf(&b, "for %s requests/s of %s candidates (%s predictions/s) at p99 ≤ %g ms",
			num(q.RequestsPerSec), num(a.Candidates), num(a.PredictionsPerSec), q.P99Ms)
	} else {
		fmt.Fprintf(&b, "for %s predictions/s at p99 ≤ %g ms", num(a.PredictionsPerSec), q.P99Ms)
	}
	sidecars := plural(a.Sidecars, "sidecar")
	if !a.Saturated {
		sidecars = "at most " + sidecars
	}
	fmt.Fprintf(&b, " you need %s / %s at %.0f%% headroom (%.2f cores per sidecar)\n",
		plural(a.Cores, "core"), sidecars, 100*q.Headroom, a.CoresPerSidecar)
	fmt.Fprintf(&b, "  rests on %s (%s), step %d: %s requests/s of %s candidates = %s predictions/s at p99 %.2f ms, %.3f CPU-ms per 1k predictions, %.2f sidecar cores busy\n",
		a.Profile, a.Machine, a.Step, num(a.PerSidecar/a.StepCandidates), num(a.StepCandidates), num(a.PerSidecar),
		a.StepP99Ms, a.CPUPerPrediction*1e6, a.StepCores)
	if a.Saturated {
		b.WriteString("  the step is at saturation: a higher rate in the profile missed the bound, so this is the sidecar's capacity")
	} else {
		fmt.Fprintf(&b, "  NOT a capacity: no step of the profile missed the bound, so one sidecar serves at least %s predictions/s; "+
			"the busiest step used %.2f of %d cores. Profile up to the knee (mode: search) for a real answer",
			num(a.PerSidecar), a.StepCores, a.MachineCores)
	}
	switch {
	case a.Fit != nil:
		fmt.Fprintf(&b, "\n  the profile's requests had %s candidates, not %s: cores and sidecars come from the CPU model: %s; "+
			"one sidecar's %.2f busy cores serve %s predictions/s at %s candidates",
			num(a.StepCandidates), num(a.Candidates), a.Fit, a.StepCores, num(a.ShapePerSidecar), num(a.Candidates))
		if a.Fit.PerMissS > 0 {
			fmt.Fprintf(&b, " (store misses at the step's %.1f per 1,000 predictions)", 1000*a.StepMissRatio)
		}
		if a.Candidates < a.Fit.MinCandidates/1.1 || a.Candidates > a.Fit.MaxCandidates*1.1 {
			fmt.Fprintf(&b, "; %s candidates lies outside the profiled shapes: an extrapolation", num(a.Candidates))
		}
	case a.Candidates > 0 && math.Abs(a.Candidates-a.StepCandidates) > 0.1*a.StepCandidates:
		fmt.Fprintf(&b, "\n  the profile's requests had %s candidates, not %s: cores and sidecars assume CPU per prediction stays the same; "+
			"per-request costs make small requests dearer than this says (no CPU model: %s)", num(a.StepCandidates), num(a.Candidates), a.FitNote)
	}
	return b.String()
}

// num formats a rate or count for people: no decimals from 100 up.
func num(x float64) string {
	if x >= 100 || x == math.Trunc(x) {
		return strconv.FormatFloat(math.Round(x), 'f', -1, 64)
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

// Capacity plans q from profile r. Steps count only if they met the p99 bound and the
// profile's error bound, carried CPU figures, and were not limited by the generator.
func Capacity(r *Result, q CapacityQuery) (CapacityAnswer, error) {
	if !(q.RequestsPerSec > 0 || q.PredictionsPerSec > 0) || !(q.P99Ms > 0) || !(q.Headroom >= 0 && q.Headroom < 1) ||
		q.Candidates < 0 {
		return CapacityAnswer{}, errors.New("capacity: want requests/s (or predictions/s) > 0, p99 > 0 and headroom in [0, 1)")
	}
	best := -1
	var bestP99 = math.Inf(1)
	noCPU := false
	for i, st := range r.Steps {
		if st.Requests == 0 {
			continue
		}
		bestP99 = math.Min(bestP99, st.Latency.P99)
		if !meets(r, &st, q.P99Ms) || st.PredictionsPerSec <= 0 {
			continue
		}
		if st.CPUSecondsPer1kPredictions <= 0 {
			noCPU = true
			continue
		}
		if best < 0 || st.PredictionsPerSec > r.Steps[best].PredictionsPerSec {
			best = i
		}
	}
	name := r.Scenario + "/" + r.RunID
	if best < 0 {
		switch {
		case noCPU:
			return CapacityAnswer{}, fmt.Errorf("%s: steps within p99 ≤ %g ms have no sidecar CPU figures (the sidecar pid was unknown)", name, q.P99Ms)
		case math.IsInf(bestP99, 1):
			return CapacityAnswer{}, fmt.Errorf("%s: no measured step", name)
		}
		return CapacityAnswer{}, fmt.Errorf("%s: no step held p99 ≤ %g ms without errors or generator limits (best p99 %.2f ms)", name, q.P99Ms, bestP99)
	}
	st := r.Steps[best]
	a := CapacityAnswer{
		Profile: name, Step: st.Index, PerSidecar: st.PredictionsPerSec,
		CPUPerPrediction: st.CPUSecondsPer1kPredictions / 1000, StepP99Ms: st.Latency.P99,
		StepCores: st.SidecarCores, MachineCores: r.Machine.Cores,
	}
	if ok := st.AchievedRPS * (1 - st.ErrorRate); ok > 0 {
		a.StepCandidates = st.PredictionsPerSec / ok
	}
	if a.StepCandidates <= 0 {
		a.StepCandidates = 1
	}
	a.Candidates, a.PredictionsPerSec = q.Candidates, q.PredictionsPerSec
	if q.RequestsPerSec > 0 {
		if a.Candidates == 0 {
			a.Candidates = a.StepCandidates
		}
		a.PredictionsPerSec = q.RequestsPerSec * a.Candidates
	}
	for _, o := range r.Steps {
		if o.Requests > 0 && !o.GeneratorLimited && o.OfferedRPS > st.OfferedRPS && !meets(r, &o, q.P99Ms) {
			a.Saturated = true
		}
	}
	a.Machine = r.Machine.CPUModel
	if r.Machine.Label != "" {
		a.Machine = r.Machine.Label + ", " + a.Machine
	}
	a.Machine += fmt.Sprintf(", %d cores", r.Machine.Cores)
	usable := 1 - q.Headroom
	a.Cores = int(math.Ceil(a.PredictionsPerSec * a.CPUPerPrediction / usable))
	a.Sidecars = int(math.Ceil(a.PredictionsPerSec / (a.PerSidecar * usable)))
	if q.RequestsPerSec > 0 && math.Abs(a.Candidates-a.StepCandidates) > 0.1*a.StepCandidates {
		pool := []*Result{r}
		for _, o := range q.FitWith {
			if o != r && o.Machine.CPUModel == r.Machine.CPUModel && o.Machine.Cores == r.Machine.Cores && o.Machine.Label == r.Machine.Label {
				pool = append(pool, o)
			}
		}
		fit, err := FitCPU(pool...)
		if err != nil {
			a.FitNote = err.Error()
		} else if per := fit.PerRequest(a.Candidates, missesPerRequest(&st, a.Candidates)); per > 0 && st.SidecarCores > 0 {
			a.Fit = fit
			a.StepMissRatio = missesPerRequest(&st, 1)
			a.ShapePerSidecar = st.SidecarCores / per * a.Candidates
			a.Cores = int(math.Ceil(q.RequestsPerSec * per / usable))
			a.Sidecars = int(math.Ceil(a.PredictionsPerSec / (a.ShapePerSidecar * usable)))
		} else {
			a.FitNote = "the step has no busy-core figure"
		}
	}
	a.Cores = max(a.Cores, 1)
	a.Sidecars = max(a.Sidecars, 1)
	a.CoresPerSidecar = float64(a.Cores) / float64(a.Sidecars)
	return a, nil
}

// missesPerRequest is the store misses a request of k candidates makes at the step's
// miss ratio per prediction.
func missesPerRequest(st *StepResult, k float64) float64 {
	if st.PredictionsPerSec <= 0 || st.StoreMissesPerSec <= 0 {
		return 0
	}
	return k * st.StoreMissesPerSec / st.PredictionsPerSec
}

// meets says whether a step held the bound: p99 within p99Ms, errors within the
// profile's bound, and not shaped by the generator.
func meets(r *Result, st *StepResult, p99Ms float64) bool {
	return st.Latency.P99 <= p99Ms && st.ErrorRate <= r.SLO.MaxErrorRate && !st.GeneratorLimited
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
