package loadtest

import (
	"math"
	"math/rand"
	"strings"
	"testing"
	"time"
)

// synthNoise shapes synthetic profiles like runs on a shared, oversubscribed machine:
// a factor per run and per window (machine load drifting), lognormal request latencies,
// and rare stalls that put a heavy tail on p99.
type synthNoise struct {
	baseMs    float64 // median service time
	slowdown  float64 // multiplies the service time (1: the same build)
	runSigma  float64 // lognormal sigma of the per-run factor
	winSigma  float64 // per-window factor
	reqSigma  float64 // per-request spread
	stallP    float64 // probability a request hits a stall
	stallMs   float64 // mean stall (exponential)
	windows   int
	rates     []float64
	cpuPer1kS float64 // sidecar CPU-seconds per 1k predictions
	cands     int
	machine   float64 // the machine's speed factor during the run (0: 1)
}

func defaultNoise() synthNoise {
	return synthNoise{baseMs: 2, slowdown: 1, runSigma: 0.03, winSigma: 0.08, reqSigma: 0.4,
		stallP: 0.01, stallMs: 15, windows: 10, rates: []float64{100, 200, 400}, cpuPer1kS: 0.002, cands: 100}
}

// synthRun draws one run's result: per step, per window, real histograms recorded and
// written as the runner writes them.
func synthRun(rng *rand.Rand, n synthNoise) *Result {
	runF := math.Exp(rng.NormFloat64() * n.runSigma)
	if n.machine > 0 {
		runF *= n.machine
	}
	var steps []StepResult
	for i, rate := range n.rates {
		st := StepResult{Index: i, Phase: "step", MeasuredS: float64(n.windows)}
		st.OfferedRPS = rate
		all := newHist()
		for range n.windows {
			winF := math.Exp(rng.NormFloat64() * n.winSigma)
			h := newHist()
			reqs := int(rate)
			var errs int64
			for range reqs {
				ms := n.baseMs * n.slowdown * runF * winF * math.Exp(rng.NormFloat64()*n.reqSigma)
				if rng.Float64() < n.stallP {
					ms += rng.ExpFloat64() * n.stallMs
				}
				if rng.Float64() < 0.001 {
					errs++
				}
				_ = h.RecordValue(int64(ms * 1000))
			}
			all.Merge(h)
			ach := rate * (1 + 0.01*rng.NormFloat64())
			preds := (int64(reqs) - errs) * int64(n.cands)
			cpu := float64(preds) / 1000 * n.cpuPer1kS * n.slowdown * runF * math.Exp(rng.NormFloat64()*0.05)
			st.WindowLatencyUs = append(st.WindowLatencyUs, sparseHist(h))
			st.WindowMeanMs = append(st.WindowMeanMs, h.Mean()/1000)
			st.WindowP99Ms = append(st.WindowP99Ms, float64(h.ValueAtQuantile(99))/1000)
			st.WindowAchieved = append(st.WindowAchieved, ach)
			st.WindowErrors = append(st.WindowErrors, errs)
			st.WindowPredictions = append(st.WindowPredictions, preds)
			st.WindowCPUSeconds = append(st.WindowCPUSeconds, cpu)
			st.AchievedRPS += ach / float64(n.windows)
			st.SidecarCPUSeconds += cpu
			st.PredictionsPerSec += float64(preds) / float64(n.windows)
		}
		st.Requests = all.TotalCount()
		st.Latency = Latency{P50: float64(all.ValueAtQuantile(50)) / 1000, P99: float64(all.ValueAtQuantile(99)) / 1000}
		st.CPUSecondsPer1kPredictions = st.SidecarCPUSeconds / (st.PredictionsPerSec * float64(n.windows) / 1000)
		steps = append(steps, st)
	}
	return &Result{Schema: ResultSchema, Scenario: "synth", RunID: "r", Steps: steps}
}

// anyFlag reports whether any finding is a regression, and whether any passed its
// threshold.
func anyFlag(fs []Finding) (reg, beyond bool) {
	for _, f := range fs {
		reg = reg || f.Regression
		beyond = beyond || f.Beyond
	}
	return reg, beyond
}

// simulateCompare runs tries comparisons of runsPerSide draws of a against as many of b
// and counts the comparisons that flagged any regression, and those where any figure
// passed its threshold on point estimates alone (the rule without intervals).
func simulateCompare(t *testing.T, seed int64, tries, runsPerSide int, a, b synthNoise) (flagged, naive int, example string) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	for range tries {
		var as, bs []*Result
		for range runsPerSide {
			as = append(as, synthRun(rng, a))
		}
		for range runsPerSide {
			bs = append(bs, synthRun(rng, b))
		}
		fs, err := Compare(as, bs, CompareThresholds{MinRuns: 1})
		if err != nil {
			t.Fatal(err)
		}
		reg, beyond := anyFlag(fs)
		if reg {
			flagged++
		}
		if beyond {
			naive++
		}
		example = FormatFindings(fs)
	}
	return flagged, naive, example
}

// TestCompareNoiseSimulation is the acceptance rule of compare, on synthetic profiles:
// two draws of the same build compare clean in 10 of 10 tries, and a 20% slower build is
// flagged in 10 of 10, with one run per side and with three. The same draws judged on
// point estimates alone (the threshold without intervals) flag the identical builds,
// which shows the simulated noise is enough to matter.
func TestCompareNoiseSimulation(t *testing.T) {
	same := defaultNoise()
	slow := defaultNoise()
	slow.slowdown = 1.2
	for _, runs := range []int{1, 3} {
		fp, naiveFP, ex := simulateCompare(t, 11, 10, runs, same, same)
		t.Logf("%d run(s) per side, same build: %d/10 flagged (point estimates alone: %d/10)", runs, fp, naiveFP)
		if fp != 0 {
			t.Errorf("%d run(s) per side: identical builds flagged in %d of 10 tries; last:\n%s", runs, fp, ex)
		}
		if runs == 1 && naiveFP == 0 {
			t.Errorf("the simulation is too quiet: point estimates alone never passed a threshold")
		}
		det, _, ex := simulateCompare(t, 12, 10, runs, same, slow)
		t.Logf("%d run(s) per side, 20%% slower: %d/10 flagged", runs, det)
		if det != 10 {
			t.Errorf("%d run(s) per side: a 20%% slowdown flagged in only %d of 10 tries; last:\n%s", runs, det, ex)
		}
	}
}

// simulatePaired draws tries comparisons of pairs runs per side whose pairs share the
// machine's speed of the moment (a factor with lognormal sigma drift, drawn per pair and
// applied to both of its runs) and counts those compare flagged, paired and unpaired.
func simulatePaired(t *testing.T, seed int64, tries, pairs int, drift float64, a, b synthNoise) (paired, unpaired int, example string) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	for range tries {
		var as, bs []*Result
		for i := range pairs {
			m := math.Exp(rng.NormFloat64() * drift)
			a.machine, b.machine = m, m
			ra, rb := synthRun(rng, a), synthRun(rng, b)
			// A before B, pair by pair: the start times compare pairs by.
			ra.StartedAt = time.Unix(int64(100*i), 0)
			rb.StartedAt = time.Unix(int64(100*i+50), 0)
			as, bs = append(as, ra), append(bs, rb)
		}
		for _, p := range []bool{true, false} {
			fs, err := Compare(as, bs, CompareThresholds{Paired: p})
			if err != nil {
				t.Fatal(err)
			}
			reg, _ := anyFlag(fs)
			if reg && p {
				paired++
			}
			if reg && !p {
				unpaired++
			}
			if p {
				example = FormatFindings(fs)
			}
		}
	}
	return paired, unpaired, example
}

// TestComparePairedSimulation: where the machine's speed drifts between runs far more
// than a run's own noise (sigma 0.17 against 0.03; 0.17 is the spread of one build's
// CPU per prediction over thirty real runs on the shared VM), six pairs of
// alternating runs find a 20% slowdown in 10 of 10 tries (unpaired, the same runs miss
// it), and two draws of one build compare clean in 10 of 10.
func TestComparePairedSimulation(t *testing.T) {
	same := defaultNoise()
	slow := defaultNoise()
	slow.slowdown = 1.2
	fp, ufp, ex := simulatePaired(t, 21, 10, 6, 0.17, same, same)
	t.Logf("6 pairs, same build: %d/10 flagged paired, %d/10 unpaired", fp, ufp)
	if fp != 0 {
		t.Errorf("identical builds flagged in %d of 10 paired tries; last:\n%s", fp, ex)
	}
	det, udet, ex := simulatePaired(t, 22, 10, 6, 0.17, same, slow)
	t.Logf("6 pairs, 20%% slower: %d/10 flagged paired, %d/10 unpaired", det, udet)
	if det != 10 {
		t.Errorf("a 20%% slowdown flagged in only %d of 10 paired tries; last:\n%s", det, ex)
	}
	if udet == 10 {
		t.Errorf("the simulated drift is too small to matter: unpaired compare flagged all 10")
	}
}

// TestComparePairedNeedsEqualSides: --paired with unequal sides is an error, not a
// silent drop of runs.
func TestComparePairedNeedsEqualSides(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	n := defaultNoise()
	_, err := Compare([]*Result{synthRun(rng, n), synthRun(rng, n)}, []*Result{synthRun(rng, n)}, CompareThresholds{Paired: true})
	if err == nil || !strings.Contains(err.Error(), "A has 2 runs, B has 1") {
		t.Fatalf("err = %v", err)
	}
}

// TestComparePairedPerRunSamples: a paired p99 rests on each run's own p99, so runs of
// 250 requests each leave it not judged however many pairs pool to 1,000; the mean of
// the same runs is judged.
func TestComparePairedPerRunSamples(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	n := defaultNoise()
	n.rates = []float64{25}
	var as, bs []*Result
	for i := range 6 {
		a, b := synthRun(rng, n), synthRun(rng, n)
		a.StartedAt, b.StartedAt = time.Unix(int64(10*i), 0), time.Unix(int64(10*i+5), 0)
		as, bs = append(as, a), append(bs, b)
	}
	if !PairsAlternate(as, bs) {
		t.Fatal("PairsAlternate: false for A_1 < B_1 < A_2 < ...")
	}
	fs, err := Compare(as, bs, CompareThresholds{Paired: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range fs {
		switch f.Metric {
		case "p99_ms":
			seen++
			if f.Judged || !strings.Contains(f.NotJudged, "each judged on its own runs, has 0") {
				t.Errorf("p99 from 250-request runs: judged %v, %q", f.Judged, f.NotJudged)
			}
		case "mean_ms":
			seen++
			if !f.Judged || f.Pairs != 6 {
				t.Errorf("mean: judged %v from %d pairs (%q), want judged from 6", f.Judged, f.Pairs, f.NotJudged)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("%d of p99 and mean found:\n%s", seen, FormatFindings(fs))
	}
	// All of A before all of B: the pairs do not alternate.
	for i := range bs {
		bs[i].StartedAt = time.Unix(int64(1000+10*i), 0)
	}
	if PairsAlternate(as, bs) {
		t.Error("PairsAlternate: true for A_1 < ... < A_6 < B_1 < ...")
	}
}

// TestStudentTQuantile against tabulated values.
func TestStudentTQuantile(t *testing.T) {
	for _, c := range []struct {
		p    float64
		df   int
		want float64
	}{{0.975, 1, 12.706}, {0.975, 2, 4.303}, {0.975, 5, 2.571}, {0.975, 10, 2.228}, {0.95, 5, 2.015}, {0.995, 30, 2.750}, {0.025, 5, -2.571}, {0.5, 3, 0}} {
		if got := studentTQuantile(c.p, c.df); math.Abs(got-c.want) > 0.001 {
			t.Errorf("t(%v, %d) = %.4f, want %.3f", c.p, c.df, got, c.want)
		}
	}
}

// TestCompareMinSamples: a p99 from 200 requests is reported but not judged, however far
// it moved; the mean of the same windows is.
func TestCompareMinSamples(t *testing.T) {
	n := defaultNoise()
	n.rates = []float64{20}
	rng := rand.New(rand.NewSource(3))
	a := synthRun(rng, n)
	n.slowdown, n.stallMs = 2, 200
	b := synthRun(rng, n)
	fs, err := Compare([]*Result{a}, []*Result{b}, CompareThresholds{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Judged || !strings.Contains(f.NotJudged, "needs ≥ 2 runs per side") {
			t.Errorf("one run per side judged by default: %+v", f)
		}
	}
	fs, err = Compare([]*Result{a}, []*Result{b}, CompareThresholds{MinRuns: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Finding{}
	for _, f := range fs {
		got[f.Metric] = f
	}
	if f := got["p99_ms"]; f.Judged || f.Regression || !strings.Contains(f.NotJudged, "1000 requests") || f.NA != 200 {
		t.Errorf("p99 from 200 requests: %+v", f)
	}
	if f := got["mean_ms"]; !f.Regression {
		t.Errorf("a doubled mean not flagged: %+v\n%s", f, FormatFindings(fs))
	}
	if !strings.Contains(FormatFindings(fs), "not judged: A: p99 needs ≥ 1000 requests per side, a side has 200") {
		t.Errorf("table:\n%s", FormatFindings(fs))
	}
}

// TestCompareSchema1: profiles without per-window histograms compare on their window
// means and rates; percentiles are reported as not judged.
func TestCompareSchema1(t *testing.T) {
	mk := func(mean, ach float64) *Result {
		r := planResult(step(10, 1000, 5, 0.002, 0))
		r.Schema = 1
		r.Steps[0].WindowMeanMs = []float64{mean, mean * 1.01, mean * 0.99, mean}
		r.Steps[0].WindowAchieved = []float64{ach, ach, ach * 1.01, ach * 0.99}
		return r
	}
	fs, err := Compare([]*Result{mk(5, 10)}, []*Result{mk(8, 7)}, CompareThresholds{MinRuns: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Finding{}
	for _, f := range fs {
		got[f.Metric] = f
	}
	if !got["mean_ms"].Regression || !got["achieved_rps"].Regression {
		t.Errorf("schema 1 mean and rate regressions not flagged:\n%s", FormatFindings(fs))
	}
	if got["p99_ms"].Judged || !strings.Contains(got["p99_ms"].NotJudged, "schema 1") {
		t.Errorf("schema 1 p99 judged: %+v", got["p99_ms"])
	}
	if _, ok := got["cpu_ms_per_1k_predictions"]; ok {
		t.Error("CPU shown without per-window CPU")
	}
	// Identical windows: nothing flagged.
	fs, _ = Compare([]*Result{mk(5, 10)}, []*Result{mk(5, 10)}, CompareThresholds{MinRuns: 1})
	for _, f := range fs {
		if f.Regression || f.Beyond {
			t.Errorf("identical flagged: %+v", f)
		}
	}
}

// TestCompareSearchRepeats: search max rates are judged with two runs per side or more,
// on the ranges of the rates.
func TestCompareSearchRepeats(t *testing.T) {
	mk := func(rate float64) *Result {
		r := planResult(step(10, 1000, 5, 0.002, 0))
		r.Search = &SearchResult{MaxRate: rate}
		return r
	}
	find := func(as, bs []*Result) Finding {
		fs, err := Compare(as, bs, CompareThresholds{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Metric == "search_max_rate" {
				return f
			}
		}
		t.Fatal("no search finding")
		return Finding{}
	}
	if f := find([]*Result{mk(200)}, []*Result{mk(100)}); f.Judged || f.Regression {
		t.Errorf("one run per side judged: %+v", f)
	}
	if f := find([]*Result{mk(200), mk(210)}, []*Result{mk(150), mk(160)}); !f.Regression {
		t.Errorf("separated ranges not flagged: %+v", f)
	}
	if f := find([]*Result{mk(200), mk(150)}, []*Result{mk(160), mk(140)}); f.Regression || !f.Beyond {
		t.Errorf("overlapping ranges flagged: %+v", f)
	}
	other := planResult(step(10, 1, 1, 0, 0))
	other.Scenario = "t"
	if _, err := Compare([]*Result{mk(1)}, []*Result{other}, CompareThresholds{}); err == nil {
		t.Error("different scenarios accepted")
	}
	if _, err := Compare([]*Result{planResult(step(500, 1, 1, 0, 0))}, []*Result{planResult(step(10, 1, 1, 0, 0))}, CompareThresholds{}); err == nil {
		t.Error("no matching step accepted")
	}
}

// BenchmarkCompare shows the bootstrap's cost for three runs per side of three steps.
func BenchmarkCompare(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	var as, bs []*Result
	for range 3 {
		as = append(as, synthRun(rng, defaultNoise()))
		bs = append(bs, synthRun(rng, defaultNoise()))
	}
	for b.Loop() {
		if _, err := Compare(as, bs, CompareThresholds{}); err != nil {
			b.Fatal(err)
		}
	}
}
