package loadtest

// A CPU model of the sidecar (docs/loadtest.md, "Capacity and comparison"): CPU-seconds
// per request as a fixed cost plus a cost per candidate, fitted to a profile's steps, so
// capacity can answer for a request shape that was not profiled.

import (
	"fmt"
	"math"
)

// CPUFit is sidecar cores ≈ PerRequestS × requests/s + PerCandidateS × predictions/s,
// fitted by least squares on relative error over a profile's steps.
type CPUFit struct {
	PerRequestS   float64 // fixed CPU-seconds per request
	PerCandidateS float64 // CPU-seconds per candidate scored
	Steps         int     // steps fitted
	// MinCandidates and MaxCandidates bound the request shapes the fit saw; a query
	// outside them is an extrapolation.
	MinCandidates, MaxCandidates float64
	// R2 is the coefficient of determination of the fitted cores; WorstErr the largest
	// relative error of a fitted step's CPU, and LOOErr the largest relative error of a
	// step's CPU predicted by the fit to the other steps (leave one out): how far to trust
	// an answer for a shape between those profiled.
	R2, WorstErr, LOOErr float64
}

// PerRequest is the fitted CPU-seconds of one request of k candidates.
func (f *CPUFit) PerRequest(k float64) float64 { return f.PerRequestS + f.PerCandidateS*k }

// String describes the fit for people.
func (f *CPUFit) String() string {
	return fmt.Sprintf("CPU per request = %.3f ms + %.3f µs × candidates, fitted to %d steps of %s–%s candidates per request (R² %.3f; worst step off by %.0f%%, by %.0f%% when left out of the fit)",
		f.PerRequestS*1e3, f.PerCandidateS*1e6, f.Steps, num(f.MinCandidates), num(f.MaxCandidates), f.R2, 100*f.WorstErr, 100*f.LOOErr)
}

// cpuPoint is one step's rates: requests/s answered OK, predictions/s, and sidecar cores.
type cpuPoint struct{ rps, pps, cores float64 }

// cpuPoints are the steps a fit may use: CPU measured, answers, errors within the
// profile's bound, not generator-limited.
func cpuPoints(r *Result) []cpuPoint {
	var out []cpuPoint
	for _, st := range r.Steps {
		ok := st.AchievedRPS * (1 - st.ErrorRate)
		if st.Requests == 0 || st.GeneratorLimited || st.SidecarCores <= 0 || ok <= 0 || st.PredictionsPerSec <= 0 ||
			st.ErrorRate > r.SLO.MaxErrorRate || math.IsNaN(ok+st.PredictionsPerSec+st.SidecarCores) || math.IsInf(ok+st.PredictionsPerSec+st.SidecarCores, 0) {
			continue
		}
		out = append(out, cpuPoint{rps: ok, pps: st.PredictionsPerSec, cores: st.SidecarCores})
	}
	return out
}

// fitCPU solves min Σ ((a·rps + b·pps − cores) / cores)² for a, b.
func fitCPU(ps []cpuPoint) (a, b float64, ok bool) {
	var sxx, sxy, syy, sx1, sy1 float64
	for _, p := range ps {
		x, y := p.rps/p.cores, p.pps/p.cores // each row divided by its cores: relative error
		sxx += x * x
		sxy += x * y
		syy += y * y
		sx1 += x
		sy1 += y
	}
	det := sxx*syy - sxy*sxy
	if !(math.Abs(det) > 1e-12*sxx*syy) {
		return 0, 0, false
	}
	a = (sx1*syy - sy1*sxy) / det
	b = (sy1*sxx - sx1*sxy) / det
	return a, b, !math.IsNaN(a) && !math.IsNaN(b)
}

// FitCPU fits the CPU model to the steps of one or more profiles (of one machine: the
// caller's business). It needs at least three usable steps of at least two request
// shapes (candidates per request differing by more than 10%), and a fit with no negative
// cost; otherwise it says why not.
func FitCPU(rs ...*Result) (*CPUFit, error) {
	var ps []cpuPoint
	for _, r := range rs {
		ps = append(ps, cpuPoints(r)...)
	}
	if len(ps) < 3 {
		return nil, fmt.Errorf("%d steps with CPU figures; the CPU model needs 3", len(ps))
	}
	f := &CPUFit{Steps: len(ps), MinCandidates: math.Inf(1)}
	for _, p := range ps {
		k := p.pps / p.rps
		f.MinCandidates = math.Min(f.MinCandidates, k)
		f.MaxCandidates = math.Max(f.MaxCandidates, k)
	}
	if f.MaxCandidates <= 1.1*f.MinCandidates {
		return nil, fmt.Errorf("every step had about %s candidates per request: one request shape cannot separate the fixed cost from the per-candidate cost", num(f.MinCandidates))
	}
	a, b, ok := fitCPU(ps)
	if !ok {
		return nil, fmt.Errorf("the steps' rates do not determine a fit")
	}
	if a < 0 || b < 0 {
		return nil, fmt.Errorf("the fit has a negative cost (%.3g CPU-s per request, %.3g per candidate): too noisy to use", a, b)
	}
	f.PerRequestS, f.PerCandidateS = a, b
	var mean, ssTot, ssRes float64
	for _, p := range ps {
		mean += p.cores
	}
	mean /= float64(len(ps))
	for i, p := range ps {
		pred := a*p.rps + b*p.pps
		ssRes += (pred - p.cores) * (pred - p.cores)
		ssTot += (p.cores - mean) * (p.cores - mean)
		f.WorstErr = math.Max(f.WorstErr, math.Abs(pred-p.cores)/p.cores)
		rest := append(append([]cpuPoint{}, ps[:i]...), ps[i+1:]...)
		if la, lb, ok := fitCPU(rest); ok {
			f.LOOErr = math.Max(f.LOOErr, math.Abs(la*p.rps+lb*p.pps-p.cores)/p.cores)
		} else {
			f.LOOErr = math.Inf(1)
		}
	}
	f.R2 = 1
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	return f, nil
}
