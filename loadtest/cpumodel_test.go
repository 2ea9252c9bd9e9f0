package loadtest

import (
	"math"
	"strings"
	"testing"
)

// cpuStep is a step of rps requests/s of k candidates on a sidecar costing perReq
// CPU-seconds per request plus perCand per candidate, times noise.
func cpuStep(rps, k, p99, perReq, perCand, noise float64) StepResult {
	cores := (rps*perReq + rps*k*perCand) * noise
	st := step(rps, rps*k, p99, cores/(rps*k)*1000, 0)
	st.SidecarCores = cores
	return st
}

func TestFitCPU(t *testing.T) {
	const perReq, perCand = 1e-3, 2e-6 // 1 ms per request + 2 µs per candidate
	r := planResult(
		cpuStep(100, 100, 5, perReq, perCand, 1.02),
		cpuStep(200, 100, 6, perReq, perCand, 0.98),
		cpuStep(50, 1000, 8, perReq, perCand, 1.01),
		cpuStep(100, 1000, 9, perReq, perCand, 0.99),
		cpuStep(150, 1000, 200, perReq, perCand, 1), // missed the SLO: still a CPU figure
	)
	f, err := FitCPU(r)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(f.PerRequestS-perReq) > 0.05*perReq || math.Abs(f.PerCandidateS-perCand) > 0.05*perCand || f.Steps != 5 ||
		f.MinCandidates != 100 || f.MaxCandidates != 1000 || f.R2 < 0.99 || f.WorstErr > 0.03 || f.LOOErr > 0.05 {
		t.Errorf("fit %+v", f)
	}
	if !strings.Contains(f.String(), "fitted to 5 steps of 100–1000 candidates per request") {
		t.Errorf("String: %s", f)
	}
	// capacity answers another shape from the fit: 1,000 requests/s of 500 candidates
	// cost 1000 × (1 ms + 1 ms) = 2 cores, ÷ 0.7 → 3; the best step (100/s of 1,000,
	// 0.3 cores busy) serves 0.3 / 2 ms = 150 requests/s = 75,000 predictions/s of 500
	// candidates; 500,000 ÷ (75,000 × 0.7) = 9.5 → 10 sidecars.
	q := CapacityQuery{RequestsPerSec: 1000, Candidates: 500, P99Ms: 50, Headroom: 0.3}
	a, err := Capacity(r, q)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fit == nil || a.Cores != 3 || a.Sidecars != 10 || math.Abs(a.ShapePerSidecar-75_000) > 3000 {
		t.Errorf("fit answer %+v\n%s", a, a.String(q))
	}
	if s := a.String(q); !strings.Contains(s, "from the CPU model: CPU per request = 0.999 ms + 2.001 µs × candidates") || strings.Contains(s, "extrapolation") {
		t.Errorf("answer:\n%s", s)
	}
	q.Candidates = 5000
	if a, _ = Capacity(r, q); !strings.Contains(a.String(q), "outside the profiled shapes") {
		t.Errorf("extrapolation not said:\n%s", a.String(q))
	}
	// The profile's own shape: no model needed.
	q.Candidates = 1000
	if a, _ = Capacity(r, q); a.Fit != nil {
		t.Errorf("the model was used for the profiled shape: %+v", a)
	}
}

func TestFitCPURefuses(t *testing.T) {
	const perReq, perCand = 1e-3, 2e-6
	oneShape := planResult(
		cpuStep(100, 100, 5, perReq, perCand, 1),
		cpuStep(200, 100, 6, perReq, perCand, 1),
		cpuStep(300, 100, 7, perReq, perCand, 1),
	)
	if _, err := FitCPU(oneShape); err == nil || !strings.Contains(err.Error(), "one request shape") {
		t.Errorf("one shape: %v", err)
	}
	// capacity keeps the constant-CPU-per-prediction answer and says why.
	q := CapacityQuery{RequestsPerSec: 100, Candidates: 1000, P99Ms: 50, Headroom: 0.3}
	a, err := Capacity(oneShape, q)
	if err != nil {
		t.Fatal(err)
	}
	if s := a.String(q); a.Fit != nil || !strings.Contains(s, "assume CPU per prediction stays the same") || !strings.Contains(s, "no CPU model: every step had about 100") {
		t.Errorf("one shape:\n%s", s)
	}
	// A second profile of another shape, from the same machine, gives the model its
	// second shape; one from another machine does not.
	big := planResult(cpuStep(50, 1000, 8, perReq, perCand, 1), cpuStep(100, 1000, 9, perReq, perCand, 1))
	other := planResult(cpuStep(50, 1000, 8, perReq, perCand, 1), cpuStep(100, 1000, 9, perReq, perCand, 1))
	other.Machine.Cores = 64
	q.FitWith = []*Result{oneShape, other}
	if a, _ = Capacity(oneShape, q); a.Fit != nil {
		t.Errorf("fitted with another machine's profile: %+v", a.Fit)
	}
	q.FitWith = []*Result{oneShape, big}
	if a, _ = Capacity(oneShape, q); a.Fit == nil || a.Fit.Steps != 5 || math.Abs(a.Fit.PerRequestS-perReq) > 0.01*perReq {
		t.Errorf("two profiles of two shapes: %+v, %s", a.Fit, a.FitNote)
	}
	if _, err := FitCPU(planResult(cpuStep(100, 100, 5, perReq, perCand, 1))); err == nil {
		t.Error("one step fitted")
	}
	// Costs that fall with more candidates make a negative per-candidate cost.
	neg := planResult(
		cpuStep(100, 100, 5, perReq, perCand, 1),
		cpuStep(100, 1000, 5, perReq, perCand, 0.2),
		cpuStep(200, 1000, 5, perReq, perCand, 0.2),
	)
	if _, err := FitCPU(neg); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative cost: %v", err)
	}
}
