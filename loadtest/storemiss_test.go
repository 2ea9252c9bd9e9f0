package loadtest

import (
	"context"
	"math"
	"strings"
	"testing"
)

func TestParseStoreMisses(t *testing.T) {
	text := `# HELP predictd_features_cache_misses_total Entity lookups that went to the backend.
# TYPE predictd_features_cache_misses_total counter
predictd_features_cache_misses_total{group="store_stats",otel_scope_name="predictd"} 1500
predictd_features_cache_misses_total{group="user_stats"} 2.5e2
predictd_features_cache_misses_other 99
predictd_features_cache_missesx 7
predictd_features_cache_hits_total{group="store_stats"} 100000
`
	if v, ok := ParseStoreMisses([]byte(text)); !ok || v != 1750 {
		t.Errorf("got %v, %v; want 1750", v, ok)
	}
	if _, ok := ParseStoreMisses([]byte("predictd_requests_total 5\n")); ok {
		t.Error("a /metrics without the counter read as misses")
	}
	if v, ok := ParseStoreMisses([]byte("predictd_features_cache_misses_total NaN\npredictd_features_cache_misses_total -1\npredictd_features_cache_misses_total{a=\"}\"} 3\n")); !ok || v != 3 {
		t.Errorf("bad samples: %v, %v", v, ok)
	}
}

func FuzzParseStoreMisses(f *testing.F) {
	f.Add([]byte("predictd_features_cache_misses_total{group=\"a\"} 12\n"))
	f.Add([]byte("predictd_features_cache_misses{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, ok := ParseStoreMisses(data); ok && !(v >= 0) {
			t.Fatalf("total %v", v)
		}
	})
}

// TestStoreMissSampling: the generator reads the target's miss counter at window
// boundaries; the server counts one miss per two candidates.
func TestStoreMissSampling(t *testing.T) {
	ts := startTestServer(t, nil)
	sc := testScenario(t, `
name: misses
warmup: 200ms
window: 500ms
arrival: constant
steps: [{rate: 40, duration: 1700ms}]
workloads: [{model: m, candidates: 10}]
`)
	res, _ := runTest(t, context.Background(), sc, ts.tcp)
	st := res.Steps[0]
	if want := st.PredictionsPerSec / 2; math.Abs(st.StoreMissesPerSec-want) > 0.15*want+10 {
		t.Errorf("store misses %.1f/s, want about %.1f/s (half of %.1f predictions/s)", st.StoreMissesPerSec, want, st.PredictionsPerSec)
	}
}

// TestFitCPUMisses: steps whose cache hit rates differ let the model price a miss.
func TestFitCPUMisses(t *testing.T) {
	const perReq, perCand, perMiss = 1e-3, 2e-6, 20e-6
	mk := func(rps, k, missRatio, noise float64) StepResult {
		miss := rps * k * missRatio
		st := cpuStep(rps, k, 5, perReq, perCand, 1)
		st.StoreMissesPerSec = miss
		st.SidecarCores = (rps*perReq + rps*k*perCand + miss*perMiss) * noise
		return st
	}
	r := planResult(mk(100, 100, 0.5, 1.01), mk(200, 100, 0.1, 0.99), mk(50, 1000, 0.3, 1), mk(100, 1000, 0.05, 1.01), mk(150, 500, 0.2, 0.99))
	f, err := FitCPU(r)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(f.PerMissS-perMiss) > 0.1*perMiss || math.Abs(f.PerCandidateS-perCand) > 0.1*perCand || f.MissNote != "" ||
		!strings.Contains(f.String(), "µs × store misses") {
		t.Errorf("fit %+v: %s", f, f)
	}
	// Misses that move with the predictions (one hit rate) add nothing the candidates
	// did not: the model leaves them out and says so.
	r = planResult(mk(100, 100, 0.2, 1.01), mk(200, 100, 0.2, 0.99), mk(50, 1000, 0.2, 1), mk(100, 1000, 0.2, 1.01), mk(150, 500, 0.2, 0.99))
	if f, err = FitCPU(r); err != nil || f.PerMissS != 0 || f.MissNote == "" {
		t.Errorf("collinear misses: %+v, %v", f, err)
	}
}
