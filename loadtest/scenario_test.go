package loadtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseScenarioErrors(t *testing.T) {
	const ok = "name: x\nsteps: [{rate: 10, duration: 2s}]\nworkloads: [{model: m}]\n"
	f := func(yaml, wantErr string) {
		t.Helper()
		_, err := ParseScenario([]byte(yaml))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseScenario(%q) = %v, want error containing %q", yaml, err, wantErr)
		}
	}
	f("", "empty scenario")
	f("steps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m}]", "name: required")
	f("name: a/b\n"+ok[8:], "path separators")
	f(ok+"bogus: 1\n", "field bogus not found")
	f(ok+"protocol: grpc\n", "protocol")
	f(ok+"arrival: bursty\n", "arrival")
	f(ok+"mode: chaos\n", "mode")
	f(ok+"warmup: 10\n", "bad duration")
	f(ok+"warmup: 5s\n", "longer than warmup")
	f(ok+"window: 1ms\n", "at least 10ms")
	f("name: x\nsteps: []\nworkloads: [{model: m}]", "at least one step")
	f("name: x\nsteps: [{rate: -1, duration: 2s}]\nworkloads: [{model: m}]", "steps[0].rate")
	f("name: x\nsteps: [{rate: .nan, duration: 2s}]\nworkloads: [{model: m}]", "steps[0].rate")
	f("name: x\nmode: ramp\nworkloads: [{model: m}]", "ramp")
	f("name: x\nmode: search\nsearch: {start: 10, max: 5}\nworkloads: [{model: m}]", "start <= max")
	f("name: x\nmode: search\nsearch: {start: 1, max: 5, max_windows: 2}\nworkloads: [{model: m}]", "max_windows")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]", "at least one workload")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{}]", "model: required")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, candidates: 0}]", "candidates 0")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, candidates: {dist: uniform, min: 5, max: 2}}]", "min <= max")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, candidates: {dist: zipf}}]", "candidates.dist")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, candidates: {mean: 3}}]", "unknown key \"mean\"")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, candidates: [1]}]", "candidates")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, keys: [{name: k, cardinality: 0}]}]", "cardinality 0")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, keys: [{name: k, cardinality: 5, dist: zipf, zipf_s: 1}]}]", "zipf_s")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, dense: true, keys: [{name: k, cardinality: 5}]}]", "dense")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, dense: true, features: {vectors: [{name: e, dim: 2}]}}]", "dense rows carry no vectors")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, features: {vectors: [{name: e}]}}]", "features.vectors[0]")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, features: {vectors: [{dim: 3}]}}]", "features.vectors[0]")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, features: {count: 2, names: [a]}}]", "not both")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{name: a, model: m}, {name: a, model: n}]", "duplicate name")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{name: a, model: m, share: 0.7}, {name: b, model: n, share: 0.7}]", "shares sum")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, share: 0.5, fixed_rate: 3}]", "not both")
	f("name: x\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m}]\nhooks: [{at: 1s}]", "hooks[0].run")
}

func TestParseScenarioDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte(`
name: d
steps: [{rate: 100, duration: 3s}, {rate: 300, duration: 3s}]
workloads:
  - {name: q, model: a, fixed_rate: 20}
  - {name: x, model: b, share: 0.25}
  - {name: y, model: c}
`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Protocol != "protobuf" || sc.Arrival != "poisson" || sc.Mode != "steps" || sc.Warmup.D() != time.Second ||
		sc.Window.D() != time.Second || sc.Timeout.D() != 5*time.Second || sc.MaxInFlight != 4096 ||
		sc.SLO.P99.D() != 100*time.Millisecond || sc.SLO.MaxErrorRate != 0.01 {
		t.Errorf("defaults: %+v", sc)
	}
	w := sc.Workloads
	if w[0].Share != 0 || w[1].Share != 0.25 || w[2].Share != 0.75 || w[2].Candidates.N != 1 || w[2].Pool != 64 || w[2].Features.Prefix != "f" {
		t.Errorf("workloads: %+v", w)
	}
	if got := sc.PeakRate(); got != 320 {
		t.Errorf("PeakRate = %v, want 320", got)
	}
}

// TestShippedScenarios: every scenario in loadtest/scenarios parses.
func TestShippedScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"smoke": false, "ranking-1k": false, "homepage-recs": false, "noisy-neighbor": false, "redis-degraded": false, "concurrency-sweep": false, "regression-gate": false}
	for _, f := range files {
		sc, err := LoadScenario(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if strings.TrimSuffix(filepath.Base(f), ".yaml") != sc.Name {
			t.Errorf("%s: name %q differs from the file name", f, sc.Name)
		}
		want[sc.Name] = true
	}
	for n, found := range want {
		if !found {
			t.Errorf("scenario %s missing", n)
		}
	}
	if _, err := os.Stat("scenarios/redis-degraded.yaml"); err != nil {
		t.Error(err)
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte("name: x\nsteps: [{rate: 10, duration: 2s}]\nworkloads: [{model: m}]\n"))
	f.Add([]byte("name: x\nmode: search\nsearch: {start: 1, max: 5}\nworkloads: [{model: m, candidates: {dist: uniform, min: 1, max: 3}}]"))
	f.Add([]byte("name: x\nmode: ramp\nramp: {from: 0, to: 5, duration: 2s}\nworkloads: [{model: m, keys: [{name: k, cardinality: 9, dist: zipf}]}]"))
	if files, _ := filepath.Glob("scenarios/*.yaml"); len(files) > 0 {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenario(data)
		if err != nil {
			return
		}
		// A valid scenario has what Run relies on.
		if sc.Name == "" || len(sc.Workloads) == 0 || sc.Window.D() <= 0 || sc.MaxInFlight < 1 {
			t.Fatalf("accepted an incomplete scenario: %+v", sc)
		}
		for _, w := range sc.Workloads {
			if w.Pool < 1 || w.Candidates.Mean() < 1 {
				t.Fatalf("workload %+v", w)
			}
		}
	})
}
