package loadtest

// A CPU model of the sidecar (docs/loadtest.md, "Capacity and comparison"): CPU-seconds
// per request as a fixed cost plus a cost per candidate, fitted to a profile's steps, so
// capacity can answer for a request shape that was not profiled.

import (
	"fmt"
	"math"
)

// CPUFit is sidecar cores ≈ PerRequestS × requests/s + PerCandidateS × predictions/s
// (+ PerMissS × feature-store misses/s, when the profile measured misses and they
// improved the fit), fitted by least squares on relative error over a profile's steps.
type CPUFit struct {
	PerRequestS   float64 // fixed CPU-seconds per request
	PerCandidateS float64 // CPU-seconds per candidate scored
	// PerMissS is the CPU-seconds per feature-store miss; 0 when misses are not in the
	// model (MissNote says why when the profile measured some).
	PerMissS float64
	MissNote string
	Steps    int // steps fitted
	// MinCandidates and MaxCandidates bound the request shapes the fit saw; a query
	// outside them is an extrapolation.
	MinCandidates, MaxCandidates float64
	// R2 is the coefficient of determination of the fitted cores; WorstErr the largest
	// relative error of a fitted step's CPU, and LOOErr the largest relative error of a
	// step's CPU predicted by the fit to the other steps (leave one out): how far to trust
	// an answer for a shape between those profiled.
	R2, WorstErr, LOOErr float64
}

// PerRequest is the fitted CPU-seconds of one request of k candidates that misses the
// feature store misses times.
func (f *CPUFit) PerRequest(k, misses float64) float64 {
	return f.PerRequestS + f.PerCandidateS*k + f.PerMissS*misses
}

// String describes the fit for people.
func (f *CPUFit) String() string {
	miss := ""
	if f.PerMissS > 0 {
		miss = fmt.Sprintf(" + %.3f µs × store misses", f.PerMissS*1e6)
	}
	s := fmt.Sprintf("CPU per request = %.3f ms + %.3f µs × candidates%s, fitted to %d steps of %s–%s candidates per request (R² %.3f; worst step off by %.0f%%, by %.0f%% when left out of the fit)",
		f.PerRequestS*1e3, f.PerCandidateS*1e6, miss, f.Steps, num(f.MinCandidates), num(f.MaxCandidates), f.R2, 100*f.WorstErr, 100*f.LOOErr)
	if f.MissNote != "" {
		s += "; " + f.MissNote
	}
	return s
}

// cpuPoint is one step's rates: requests/s answered OK, predictions/s, store misses/s,
// and sidecar cores.
type cpuPoint struct{ rps, pps, miss, cores float64 }

// x is the point's regressors: with misses or without.
func (p cpuPoint) x(misses bool) []float64 {
	if misses {
		return []float64{p.rps, p.pps, p.miss}
	}
	return []float64{p.rps, p.pps}
}

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
		out = append(out, cpuPoint{rps: ok, pps: st.PredictionsPerSec, miss: max(st.StoreMissesPerSec, 0), cores: st.SidecarCores})
	}
	return out
}

// fitCPU solves min Σ ((β·x − cores) / cores)² over the points (each row divided by its
// cores: relative error), by the normal equations.
func fitCPU(ps []cpuPoint, misses bool) ([]float64, bool) {
	n := 2
	if misses {
		n = 3
	}
	if len(ps) < n {
		return nil, false
	}
	a := make([][]float64, n)
	for i := range a {
		a[i] = make([]float64, n+1)
	}
	for _, p := range ps {
		x := p.x(misses)
		for i := range x {
			x[i] /= p.cores
		}
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				a[i][j] += x[i] * x[j]
			}
			a[i][n] += x[i] // y / cores = 1
		}
	}
	// Gaussian elimination with partial pivoting.
	scale := 0.0
	for i := 0; i < n; i++ {
		scale = math.Max(scale, math.Abs(a[i][i]))
	}
	for c := 0; c < n; c++ {
		piv := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[piv][c]) {
				piv = r
			}
		}
		if !(math.Abs(a[piv][c]) > 1e-12*scale) {
			return nil, false
		}
		a[c], a[piv] = a[piv], a[c]
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k <= n; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	beta := make([]float64, n)
	for i := range beta {
		beta[i] = a[i][n] / a[i][i]
		if math.IsNaN(beta[i]) || math.IsInf(beta[i], 0) {
			return nil, false
		}
	}
	return beta, true
}

// predict is the fitted cores at p.
func predict(beta []float64, p cpuPoint) float64 {
	var y float64
	for i, x := range p.x(len(beta) == 3) {
		y += beta[i] * x
	}
	return y
}

// fitStats are a fit's worst relative error and worst leave-one-out error.
func fitStats(ps []cpuPoint, beta []float64) (worst, loo float64) {
	misses := len(beta) == 3
	for i, p := range ps {
		worst = math.Max(worst, math.Abs(predict(beta, p)-p.cores)/p.cores)
		rest := append(append([]cpuPoint{}, ps[:i]...), ps[i+1:]...)
		if lb, ok := fitCPU(rest, misses); ok {
			loo = math.Max(loo, math.Abs(predict(lb, p)-p.cores)/p.cores)
		} else {
			loo = math.Inf(1)
		}
	}
	return worst, loo
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
	beta, ok := fitCPU(ps, false)
	if !ok {
		return nil, fmt.Errorf("the steps' rates do not determine a fit")
	}
	if beta[0] < 0 || beta[1] < 0 {
		return nil, fmt.Errorf("the fit has a negative cost (%.3g CPU-s per request, %.3g per candidate): too noisy to use", beta[0], beta[1])
	}
	f.WorstErr, f.LOOErr = fitStats(ps, beta)
	// Store misses join the model when the profile measured some, and only when that
	// fits the steps left out better with no negative cost.
	anyMiss := false
	for _, p := range ps {
		anyMiss = anyMiss || p.miss > 0
	}
	if anyMiss {
		switch mb, ok := fitCPU(ps, true); {
		case len(ps) < 4:
			f.MissNote = "store misses were measured but 4 steps are needed to fit their cost"
		case !ok || mb[0] < 0 || mb[1] < 0 || mb[2] < 0:
			f.MissNote = "store misses were measured but their fitted cost was not physical (they move with the predictions)"
		default:
			worst, loo := fitStats(ps, mb)
			if loo < f.LOOErr {
				beta, f.WorstErr, f.LOOErr = mb, worst, loo
			} else {
				f.MissNote = "store misses were measured but did not predict left-out steps better"
			}
		}
	}
	f.PerRequestS, f.PerCandidateS = beta[0], beta[1]
	if len(beta) == 3 {
		f.PerMissS = beta[2]
	}
	var mean, ssTot, ssRes float64
	for _, p := range ps {
		mean += p.cores
	}
	mean /= float64(len(ps))
	for _, p := range ps {
		pred := predict(beta, p)
		ssRes += (pred - p.cores) * (pred - p.cores)
		ssTot += (p.cores - mean) * (p.cores - mean)
	}
	f.R2 = 1
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	return f, nil
}
