package loadtest

// Comparison that knows noise (docs/loadtest.md, "Capacity and comparison"): each side is
// one or more runs of the same scenario; every figure of a matched step gets a bootstrap
// confidence interval from resampling runs and, within them, measured windows; a figure
// regressed only when it moved past its threshold AND the two intervals separate.

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

const (
	// compareResamples is the number of bootstrap resamples per step.
	compareResamples = 2000
	// minTail is how many samples a quantile needs beyond it on each side: p99 is judged
	// from 1,000 requests per side, p50 from 20. Fewer, and the p99 is one or two
	// outliers (the 200-request p99 of a 1-second window is its second-largest value).
	minTail = 10
	// minWindows is the fewest measured windows per side a step needs to be judged:
	// the bootstrap resamples windows, and fewer than three cannot show their spread.
	minWindows = 3
	// minErrorRequests is the fewest requests per side an error rate is judged from.
	minErrorRequests = 100
)

// CompareThresholds are the smallest changes that count as regressions, and the
// confidence of the intervals that must separate as well.
type CompareThresholds struct {
	Latency    float64 // p50/p99/mean increase; default 0.10
	Throughput float64 // achieved rate or search max rate decrease; default 0.05
	CPU        float64 // CPU per prediction increase; default 0.10
	ErrorRate  float64 // absolute error-rate increase; default 0.005
	// Confidence of each side's bootstrap interval; default 0.95.
	Confidence float64
	// MinRuns is the fewest runs per side a step's figures are judged from; default 2.
	// One run's windows do not show the noise between runs (on a shared VM its p50
	// moved 20–35% from run to run of one build), so single runs are reported only,
	// unless MinRuns is 1. Paired: the fewest pairs.
	MinRuns int
	// Paired pairs the runs: the i-th run of A by start time with the i-th of B (the two
	// sides must have as many runs). Each figure's change is then judged from the pairs'
	// own changes (B_i against A_i): their mean (of logs, for relative figures) and its
	// Student's t interval (a paired t test); a regression is a change past the threshold
	// whose interval excludes no change. A pair counts for a figure only when each of its
	// two runs alone has the samples the figure needs (a p99 from 1,000 requests). Runs of
	// A and B that alternate in time share the machine's state of the moment; on a shared
	// 2-vCPU VM the CPU per prediction of one build varied from run to run with a standard
	// deviation of 11–13%, its ratio to the adjacent run of another build with one of 7%.
	Paired bool
}

func (th *CompareThresholds) defaults() {
	if th.Latency == 0 {
		th.Latency = 0.10
	}
	if th.Throughput == 0 {
		th.Throughput = 0.05
	}
	if th.CPU == 0 {
		th.CPU = 0.10
	}
	if th.ErrorRate == 0 {
		th.ErrorRate = 0.005
	}
	if th.Confidence == 0 {
		th.Confidence = 0.95
	}
	if th.MinRuns == 0 {
		th.MinRuns = 2
	}
}

// Finding is one compared figure: each side's point estimate (all its runs pooled) and
// bootstrap interval.
type Finding struct {
	Step    int // index in B's first run; -1 for run-level figures
	Offered float64
	Metric  string
	A, B    float64
	// ALo..AHi and BLo..BHi are the sides' confidence intervals.
	ALo, AHi, BLo, BHi float64
	// NA and NB are the samples each side rests on: requests for latency and error
	// figures, windows for rates and CPU, runs for the search rate.
	NA, NB int64
	// RunsA and RunsB are the runs on each side that had this step.
	RunsA, RunsB int
	Change       float64 // relative (B-A)/A, or absolute for error rate
	// Judged is false when a side had too few samples (NotJudged says why); such a
	// figure is never a regression.
	Judged    bool
	NotJudged string
	// Beyond: the change passed its threshold. Regression: Beyond and the intervals
	// separate (paired: the change's interval excludes zero). Beyond without Regression is
	// a change within the noise.
	Beyond     bool
	Regression bool
	// Pairs is the number of run pairs the change rests on (CompareThresholds.Paired),
	// ChangeLo..ChangeHi the change's t interval over them; zero when unpaired.
	Pairs              int
	ChangeLo, ChangeHi float64
}

// cmpWindow is one measured window of one run: the unit the bootstrap resamples.
type cmpWindow struct {
	// idx and cnt are the latency histogram, sparse over the step's value grid; hist is
	// false for a window without one.
	idx      []int32
	cnt      []int64
	hist     bool
	n        int64   // requests
	sumUs    float64 // latency sum, µs (from bucket values)
	meanMs   float64 // the stored window mean (schema 1 windows)
	achieved float64
	errors   int64
	preds    int64
	cpu      float64
}

// cmpSide is one side's runs of one step.
type cmpSide struct {
	runs            [][]cmpWindow
	hist, cpu, errs bool // every window carries a histogram / CPU / error counts
	windows         int
	requests        int64
}

// cmpAgg accumulates windows.
type cmpAgg struct {
	counts                  []int64
	n, errors, preds, nwin  int64
	sumUs, meanMs, achieved float64
	cpu                     float64
}

func (g *cmpAgg) reset(v int) {
	if len(g.counts) != v {
		g.counts = make([]int64, v)
	}
	clear(g.counts)
	*g = cmpAgg{counts: g.counts}
}

func (g *cmpAgg) add(w *cmpWindow) {
	for i, c := range w.cnt {
		g.counts[w.idx[i]] += c
	}
	g.n += w.n
	g.errors += w.errors
	g.preds += w.preds
	g.nwin++
	g.sumUs += w.sumUs
	g.meanMs += w.meanMs
	g.achieved += w.achieved
	g.cpu += w.cpu
}

// quantile is the value (ms) at quantile q of the counts over grid, ranked as
// HdrHistogram ranks.
func (g *cmpAgg) quantile(grid []int64, q float64) float64 {
	if g.n == 0 {
		return math.NaN()
	}
	rank := int64(q*float64(g.n) + 0.5)
	rank = min(max(rank, 1), g.n)
	var cum int64
	for i, c := range g.counts {
		cum += c
		if cum >= rank {
			return float64(grid[i]) / 1000
		}
	}
	return float64(grid[len(grid)-1]) / 1000
}

// cmpMetric is one compared figure of a step.
type cmpMetric struct {
	name        string
	higherWorse bool
	absolute    bool // change is B−A, not relative
	tol         float64
	value       func(g *cmpAgg, grid []int64) float64
	// enough says whether a side can be judged, and if not why.
	enough func(s *cmpSide) string
}

func stepMetrics(th CompareThresholds) []cmpMetric {
	needHist := func(q float64, what string) func(s *cmpSide) string {
		need := int64(math.Ceil(minTail / (1 - q)))
		return func(s *cmpSide) string {
			if !s.hist {
				return "no per-window histograms (a schema 1 profile)"
			}
			if s.requests < need {
				return fmt.Sprintf("%s needs ≥ %d requests per side, a side has %d", what, need, s.requests)
			}
			return ""
		}
	}
	return []cmpMetric{
		{name: "p50_ms", higherWorse: true, tol: th.Latency, enough: needHist(0.5, "p50"),
			value: func(g *cmpAgg, grid []int64) float64 { return g.quantile(grid, 0.50) }},
		{name: "p99_ms", higherWorse: true, tol: th.Latency, enough: needHist(0.99, "p99"),
			value: func(g *cmpAgg, grid []int64) float64 { return g.quantile(grid, 0.99) }},
		{name: "mean_ms", higherWorse: true, tol: th.Latency,
			enough: func(s *cmpSide) string {
				if s.requests < 2*minTail && s.hist {
					return fmt.Sprintf("mean needs ≥ %d requests per side, a side has %d", 2*minTail, s.requests)
				}
				return ""
			},
			value: func(g *cmpAgg, grid []int64) float64 {
				if g.counts != nil && g.n > 0 {
					return g.sumUs / float64(g.n) / 1000
				}
				return g.meanMs / float64(g.nwin) // schema 1: mean of window means
			}},
		{name: "achieved_rps", tol: th.Throughput, enough: func(*cmpSide) string { return "" },
			value: func(g *cmpAgg, _ []int64) float64 { return g.achieved / float64(g.nwin) }},
		{name: "error_rate", higherWorse: true, absolute: true, tol: th.ErrorRate,
			enough: func(s *cmpSide) string {
				if !s.errs {
					return "no per-window error counts (a schema 1 profile)"
				}
				if s.requests < minErrorRequests {
					return fmt.Sprintf("error rate needs ≥ %d requests per side, a side has %d", minErrorRequests, s.requests)
				}
				return ""
			},
			value: func(g *cmpAgg, _ []int64) float64 {
				if g.n == 0 {
					return 0
				}
				return float64(g.errors) / float64(g.n)
			}},
		{name: "cpu_ms_per_1k_predictions", higherWorse: true, tol: th.CPU,
			enough: func(s *cmpSide) string {
				if !s.cpu {
					return "no per-window sidecar CPU"
				}
				return ""
			},
			value: func(g *cmpAgg, _ []int64) float64 {
				if g.preds == 0 {
					return math.NaN()
				}
				return g.cpu / float64(g.preds) * 1e6
			}},
	}
}

// Compare compares runs bs (after) with runs as (before), each side one or more runs of
// one scenario (repeats). Steps are matched by phase and offered rate (within 2%; by
// level for concurrency steps) to the steps of bs[0]. Each figure gets, per side, a bootstrap interval from resampling runs
// and then each run's measured windows (so both the noise between runs and within a run
// widen it), and is a regression only when its point change passes the threshold and
// the intervals separate. Figures with too few samples are reported, not judged.
func Compare(as, bs []*Result, th CompareThresholds) ([]Finding, error) {
	th.defaults()
	if len(as) == 0 || len(bs) == 0 {
		return nil, errors.New("compare: want at least one run on each side")
	}
	scen := as[0].Scenario
	for _, r := range append(append([]*Result{}, as...), bs...) {
		if r.Scenario != scen {
			return nil, fmt.Errorf("compare: different scenarios %q and %q", scen, r.Scenario)
		}
	}
	if th.Paired {
		if len(as) != len(bs) {
			return nil, fmt.Errorf("compare --paired: A has %d runs, B has %d; want as many on each side", len(as), len(bs))
		}
		as, bs = byStart(as), byStart(bs)
	}
	var out []Finding
	usedA := make([]map[int]bool, len(as))
	usedB := make([]map[int]bool, len(bs))
	for i := range usedA {
		usedA[i] = map[int]bool{}
	}
	for i := range usedB {
		usedB[i] = map[int]bool{}
	}
	matched := 0
	metrics := stepMetrics(th)
	for _, ref := range bs[0].Steps {
		if ref.Requests == 0 || ref.Phase == "search" {
			continue
		}
		if th.Paired {
			var sa, sb []*StepResult
			for i := range as {
				a := collectSteps(as[i:i+1], usedA[i:i+1], &ref)
				b := collectSteps(bs[i:i+1], usedB[i:i+1], &ref)
				if len(a) == 1 && len(b) == 1 {
					sa, sb = append(sa, a[0]), append(sb, b[0])
				}
			}
			if len(sa) == 0 {
				continue
			}
			matched++
			out = append(out, comparePairs(ref.Index, ref.OfferedRPS, sa, sb, metrics, th.Confidence, th.MinRuns)...)
			continue
		}
		sa := collectSteps(as, usedA, &ref)
		sb := collectSteps(bs, usedB, &ref)
		if len(sa) == 0 || len(sb) == 0 {
			continue
		}
		matched++
		out = append(out, compareStep(ref.Index, ref.OfferedRPS, sa, sb, metrics, th.Confidence, th.MinRuns)...)
	}
	if f, ok := compareSearch(as, bs, th); ok {
		matched++
		out = append(out, f)
	}
	if matched == 0 {
		return nil, errors.New("compare: no step of B matches a step of A by phase and offered rate (within 2%)")
	}
	return out, nil
}

// collectSteps finds, in each run, the first unused step matching ref's phase and
// offered rate.
func collectSteps(runs []*Result, used []map[int]bool, ref *StepResult) []*StepResult {
	var out []*StepResult
	for ri, r := range runs {
		for i := range r.Steps {
			s := &r.Steps[i]
			if used[ri][i] || s.Requests == 0 || s.Phase != ref.Phase {
				continue
			}
			same := math.Abs(s.OfferedRPS-ref.OfferedRPS) <= 0.02*math.Max(ref.OfferedRPS, 1)
			if ref.Phase == "concurrency" {
				same = s.Concurrency == ref.Concurrency // a closed loop's rate is its result
			}
			if same {
				used[ri][i] = true
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// buildSide turns matched steps into bootstrap units over the value grid.
func buildSide(steps []*StepResult, index map[int64]int) *cmpSide {
	s := &cmpSide{hist: true, cpu: true, errs: true}
	for _, st := range steps {
		n := len(st.WindowAchieved)
		if len(st.WindowLatencyUs) != n {
			s.hist = false
		}
		if len(st.WindowCPUSeconds) != n || len(st.WindowPredictions) != n {
			s.cpu = false
		}
		if len(st.WindowErrors) != n {
			s.errs = false
		}
	}
	for _, st := range steps {
		var run []cmpWindow
		for k, ach := range st.WindowAchieved {
			w := cmpWindow{achieved: ach}
			if k < len(st.WindowMeanMs) {
				w.meanMs = st.WindowMeanMs[k]
			}
			if s.hist {
				w.hist = true
				pairs := st.WindowLatencyUs[k]
				for p := 0; p+1 < len(pairs); p += 2 {
					v, c := pairs[p], pairs[p+1]
					if c <= 0 {
						continue
					}
					w.idx = append(w.idx, int32(index[v]))
					w.cnt = append(w.cnt, c)
					w.n += c
					w.sumUs += float64(v) * float64(c)
				}
			}
			if s.errs {
				w.errors = st.WindowErrors[k]
			}
			if s.cpu {
				w.cpu, w.preds = st.WindowCPUSeconds[k], st.WindowPredictions[k]
			}
			s.requests += w.n
			run = append(run, w)
		}
		if len(run) > 0 {
			s.runs = append(s.runs, run)
			s.windows += len(run)
		}
	}
	if !s.hist {
		s.requests = 0
		for _, st := range steps {
			s.requests += st.Requests
		}
	}
	return s
}

// valueGrid is the sorted set of histogram bucket values of the steps, and each value's
// index.
func valueGrid(steps ...[]*StepResult) ([]int64, map[int64]int) {
	set := map[int64]bool{}
	for _, ss := range steps {
		for _, st := range ss {
			for _, pairs := range st.WindowLatencyUs {
				for p := 0; p+1 < len(pairs); p += 2 {
					set[pairs[p]] = true
				}
			}
		}
	}
	grid := make([]int64, 0, len(set))
	for v := range set {
		grid = append(grid, v)
	}
	sort.Slice(grid, func(i, j int) bool { return grid[i] < grid[j] })
	index := make(map[int64]int, len(grid))
	for i, v := range grid {
		index[v] = i
	}
	return grid, index
}

// bootstrap returns, per metric, the point estimate over all of the side's windows and
// the sorted resampled values (runs drawn with replacement, then each drawn run's
// windows with replacement).
func bootstrap(s *cmpSide, grid []int64, metrics []cmpMetric, seed int64) (point []float64, samples [][]float64) {
	var g cmpAgg
	v := 0
	if s.hist {
		v = len(grid)
	}
	point = sidePoint(s, grid, metrics)
	samples = make([][]float64, len(metrics))
	rng := rand.New(rand.NewSource(seed))
	for range compareResamples {
		g.reset(v)
		if !s.hist {
			g.counts = nil
		}
		for range s.runs {
			run := s.runs[rng.Intn(len(s.runs))]
			for range run {
				g.add(&run[rng.Intn(len(run))])
			}
		}
		for i, m := range metrics {
			if x := m.value(&g, grid); !math.IsNaN(x) {
				samples[i] = append(samples[i], x)
			}
		}
	}
	for _, xs := range samples {
		sort.Float64s(xs)
	}
	return point, samples
}

// studentTQuantile is the p quantile of Student's t distribution with df degrees of
// freedom (gonum's).
func studentTQuantile(p float64, df int) float64 {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(df)}.Quantile(p)
}

// sidePoint is each metric's value over all of the side's windows.
func sidePoint(s *cmpSide, grid []int64, metrics []cmpMetric) []float64 {
	var g cmpAgg
	v := 0
	if s.hist {
		v = len(grid)
	}
	g.reset(v)
	if !s.hist {
		g.counts = nil
	}
	for _, run := range s.runs {
		for i := range run {
			g.add(&run[i])
		}
	}
	point := make([]float64, 0, len(metrics))
	for _, m := range metrics {
		point = append(point, m.value(&g, grid))
	}
	return point
}

// PairsAlternate reports whether runs as and bs (one side each, as many runs) alternate
// in time once each side is sorted by start: A_1 < B_1 < A_2 < B_2 ... or B_1 < A_1 <
// B_2 < A_2 ..., so that each pair's runs are neighbours; the two sides of one
// interleaved run (run --interleave) start together and are a pair as well. compare
// --paired warns when not: pairs of runs far apart in time carry the machine's drift
// into their change.
func PairsAlternate(as, bs []*Result) bool {
	if len(as) != len(bs) {
		return false
	}
	as, bs = byStart(as), byStart(bs)
	alt := func(x, y []*Result) bool {
		for i := range x {
			if y[i].StartedAt.Before(x[i].StartedAt) || i+1 < len(x) && !y[i].StartedAt.Before(x[i+1].StartedAt) {
				return false
			}
		}
		return true
	}
	return alt(as, bs) || alt(bs, as)
}

// byStart returns the runs sorted by start time.
func byStart(rs []*Result) []*Result {
	out := append([]*Result(nil), rs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// comparePairs is compareStep for paired runs: sa[i] and sb[i] are one pair's steps. Each
// side's figure and interval are shown as unpaired; the change is the pairs' mean change
// (relative figures: the geometric mean of the ratios B_i / A_i, less one; the error rate:
// the mean difference) and its interval Student's t interval of that mean (a paired t
// test). Not a bootstrap: over a handful of pairs a bootstrap's interval is about their
// range, and three pairs of one build all moving one way (1 in 8) would be a regression.
func comparePairs(idx int, offered float64, sa, sb []*StepResult, metrics []cmpMetric, conf float64, minPairs int) []Finding {
	grid, index := valueGrid(sa, sb)
	A, B := buildSide(sa, index), buildSide(sb, index)
	out := compareSides(idx, offered, A, B, grid, metrics, conf, 1)
	va := make([][]float64, len(sa)) // per pair, per metric
	vb := make([][]float64, len(sb))
	pa := make([]*cmpSide, len(sa)) // per pair, each run as a side of its own
	pb := make([]*cmpSide, len(sb))
	for i := range sa {
		pa[i], pb[i] = buildSide(sa[i:i+1], index), buildSide(sb[i:i+1], index)
		va[i] = sidePoint(pa[i], grid, metrics)
		vb[i] = sidePoint(pb[i], grid, metrics)
	}
	for k := range out {
		f := &out[k]
		mi := -1
		for i, m := range metrics {
			if m.name == f.Metric {
				mi = i
			}
		}
		m := metrics[mi]
		var d []float64 // the pairs' changes: log ratios, or differences
		short := ""     // why a pair was left out, if one was
		for i := range va {
			if why := sidesNotJudged(pa[i], pb[i], m); why != "" {
				short = why
				continue
			}
			x, y := va[i][mi], vb[i][mi]
			c := y - x
			if !m.absolute {
				c = math.Log(y / x)
			}
			if !math.IsNaN(c) && !math.IsInf(c, 0) {
				d = append(d, c)
			}
		}
		f.Pairs = len(d)
		from := func(c float64) float64 {
			if m.absolute {
				return c
			}
			return math.Expm1(c)
		}
		if len(d) > 0 {
			var sum float64
			for _, c := range d {
				sum += c
			}
			mean := sum / float64(len(d))
			f.Change = from(mean)
			f.ChangeLo, f.ChangeHi = math.Inf(-1), math.Inf(1)
			if n := len(d); n >= 2 {
				var ss float64
				for _, c := range d {
					ss += (c - mean) * (c - mean)
				}
				half := studentTQuantile(0.5+conf/2, n-1) * math.Sqrt(ss/float64(n-1)/float64(n))
				f.ChangeLo, f.ChangeHi = from(mean-half), from(mean+half)
			}
		}
		f.NotJudged = sidesNotJudged(A, B, m)
		if f.NotJudged == "" && len(d) < minPairs {
			f.NotJudged = fmt.Sprintf("needs ≥ %d run pairs, has %d", minPairs, len(d))
			if short != "" {
				f.NotJudged = fmt.Sprintf("needs ≥ %d run pairs each judged on its own runs, has %d (a run alone: %s)", minPairs, len(d), short)
			}
		}
		f.Judged = f.NotJudged == ""
		if m.higherWorse {
			f.Beyond = f.Change > m.tol
			f.Regression = f.Judged && f.Beyond && f.ChangeLo > 0
		} else {
			f.Beyond = -f.Change > m.tol
			f.Regression = f.Judged && f.Beyond && f.ChangeHi < 0
		}
	}
	return out
}

// interval is the central conf interval of sorted samples.
func interval(xs []float64, conf float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	a := (1 - conf) / 2
	at := func(q float64) float64 {
		i := int(math.Round(q * float64(len(xs)-1)))
		return xs[min(max(i, 0), len(xs)-1)]
	}
	return at(a), at(1 - a)
}

func compareStep(idx int, offered float64, sa, sb []*StepResult, metrics []cmpMetric, conf float64, minRuns int) []Finding {
	grid, index := valueGrid(sa, sb)
	return compareSides(idx, offered, buildSide(sa, index), buildSide(sb, index), grid, metrics, conf, minRuns)
}

// compareSides is compareStep on the sides built from the steps over their value grid.
func compareSides(idx int, offered float64, A, B *cmpSide, grid []int64, metrics []cmpMetric, conf float64, minRuns int) []Finding {
	pa, xa := bootstrap(A, grid, metrics, 1)
	pb, xb := bootstrap(B, grid, metrics, 2)
	var out []Finding
	for i, m := range metrics {
		if m.name == "cpu_ms_per_1k_predictions" && (!A.cpu || !B.cpu) {
			continue // nothing to show
		}
		f := Finding{Step: idx, Offered: offered, Metric: m.name, A: pa[i], B: pb[i],
			RunsA: len(A.runs), RunsB: len(B.runs)}
		f.ALo, f.AHi = interval(xa[i], conf)
		f.BLo, f.BHi = interval(xb[i], conf)
		switch m.name {
		case "achieved_rps", "cpu_ms_per_1k_predictions":
			f.NA, f.NB = int64(A.windows), int64(B.windows)
		default:
			f.NA, f.NB = A.requests, B.requests
		}
		if m.absolute {
			f.Change = f.B - f.A
		} else {
			f.Change = relChange(f.A, f.B)
		}
		switch why := sidesNotJudged(A, B, m); {
		case len(A.runs) < minRuns || len(B.runs) < minRuns:
			f.NotJudged = fmt.Sprintf("needs ≥ %d runs per side (run --repeat), has %d and %d", minRuns, len(A.runs), len(B.runs))
		case why != "":
			f.NotJudged = why
		case math.IsNaN(f.A) || math.IsNaN(f.B):
			f.NotJudged = "no value"
		default:
			f.Judged = true
		}
		judge(&f, m.higherWorse, m.tol)
		out = append(out, f)
	}
	return out
}

// sidesNotJudged says why sides A and B cannot be judged on metric m (too few windows,
// or what the metric needs), or "".
func sidesNotJudged(A, B *cmpSide, m cmpMetric) string {
	switch {
	case A.windows < minWindows || B.windows < minWindows:
		return fmt.Sprintf("needs ≥ %d measured windows per side, has %d and %d", minWindows, A.windows, B.windows)
	case m.enough(A) != "":
		return "A: " + m.enough(A)
	case m.enough(B) != "":
		return "B: " + m.enough(B)
	}
	return ""
}

// judge sets Beyond and Regression from the change and the intervals.
func judge(f *Finding, higherWorse bool, tol float64) {
	if higherWorse {
		f.Beyond = f.Change > tol
	} else {
		f.Beyond = -f.Change > tol
	}
	sep := f.AHi < f.BLo
	if !higherWorse {
		sep = f.BHi < f.ALo
	}
	f.Regression = f.Judged && f.Beyond && sep
}

func relChange(x, y float64) float64 {
	if x == 0 {
		if y == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return (y - x) / x
}

// compareSearch compares the search max rates: with two or more runs per side, the
// intervals are each side's range of rates.
func compareSearch(as, bs []*Result, th CompareThresholds) (Finding, bool) {
	rates := func(rs []*Result) []float64 {
		var out []float64
		for _, r := range rs {
			if r.Search != nil {
				out = append(out, r.Search.MaxRate)
			}
		}
		sort.Float64s(out)
		return out
	}
	ra, rb := rates(as), rates(bs)
	if len(ra) == 0 || len(rb) == 0 {
		return Finding{}, false
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	f := Finding{Step: -1, Metric: "search_max_rate", A: mean(ra), B: mean(rb),
		ALo: ra[0], AHi: ra[len(ra)-1], BLo: rb[0], BHi: rb[len(rb)-1],
		NA: int64(len(ra)), NB: int64(len(rb)), RunsA: len(ra), RunsB: len(rb)}
	f.Change = relChange(f.A, f.B)
	if len(ra) < 2 || len(rb) < 2 {
		f.NotJudged = "needs ≥ 2 runs per side (run --repeat)"
	} else {
		f.Judged = true
	}
	judge(&f, false, th.Throughput)
	return f, true
}

// FormatFindings renders findings as an aligned table: each side's estimate and
// interval, the change, and the verdict.
func FormatFindings(fs []Finding) string {
	var b strings.Builder
	cw := 9 // the change column; paired findings add the change's interval and pairs
	for _, f := range fs {
		if f.Pairs > 0 {
			cw = 34
		}
	}
	fmt.Fprintf(&b, "%-5s %-9s %-26s %24s %24s %*s  %s\n", "step", "offered/s", "metric", "A [interval]", "B [interval]", cw, "change", "verdict")
	for _, f := range fs {
		step := fmt.Sprint(f.Step)
		if f.Step < 0 {
			step = "-"
		}
		change := fmt.Sprintf("%+.1f%%", 100*f.Change)
		if f.Pairs > 0 {
			change = fmt.Sprintf("%+.1f%% [%+.1f%%, %+.1f%%] n=%d", 100*f.Change, 100*f.ChangeLo, 100*f.ChangeHi, f.Pairs)
		}
		side := func(x, lo, hi float64) string { return fmt.Sprintf("%.4g [%.4g, %.4g]", x, lo, hi) }
		if f.Metric == "error_rate" {
			change = fmt.Sprintf("%+.2fpp", 100*f.Change)
			if f.Pairs > 0 {
				change = fmt.Sprintf("%+.2fpp [%+.2f, %+.2f] n=%d", 100*f.Change, 100*f.ChangeLo, 100*f.ChangeHi, f.Pairs)
			}
			side = func(x, lo, hi float64) string {
				return fmt.Sprintf("%.2f%% [%.2f, %.2f]", 100*x, 100*lo, 100*hi)
			}
		}
		verdict := ""
		switch {
		case f.Regression:
			verdict = "REGRESSION"
		case !f.Judged:
			verdict = "not judged: " + f.NotJudged
		case f.Beyond && f.Pairs > 0:
			verdict = "within noise (the change's interval holds zero)"
		case f.Beyond:
			verdict = "within noise (intervals overlap)"
		}
		fmt.Fprintf(&b, "%-5s %-9.1f %-26s %24s %24s %*s  %s\n", step, f.Offered, f.Metric,
			side(f.A, f.ALo, f.AHi), side(f.B, f.BLo, f.BHi), cw, change, verdict)
	}
	return b.String()
}
