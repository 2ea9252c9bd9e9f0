package loadtest

// Report pieces per window and per step (docs/loadtest.md, "Profiles"): the timeline of
// windows with step boundaries and the SLO, each step's percentile spectrum, .hgrm and
// CSV, and the search's trials ordered by rate.

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report files besides index.html and the rate plots.
const (
	ReportTimelineLatency = "timeline-latency.svg"
	ReportTimelineRate    = "timeline-rate.svg"
	ReportSpectrum        = "spectrum.svg"
	ReportSearch          = "search.svg"
)

// stepFile names a step's per-step file: step-03.hgrm, step-03.csv.
func stepFile(i int, ext string) string { return fmt.Sprintf("step-%02d.%s", i, ext) }

// windowHist rebuilds one window's histogram from its sparse pairs; nil when empty.
func windowHist(pairs []int64) *hdrhistogram.Histogram {
	h := newHist()
	for p := 0; p+1 < len(pairs); p += 2 {
		if pairs[p+1] > 0 {
			_ = h.RecordValues(min(max(pairs[p], histMinUs), histMaxUs), pairs[p+1])
		}
	}
	if h.TotalCount() == 0 {
		return nil
	}
	return h
}

// stepHist merges a step's window histograms (schema 2); nil without any.
func stepHist(st *StepResult) *hdrhistogram.Histogram {
	var h *hdrhistogram.Histogram
	for _, pairs := range st.WindowLatencyUs {
		if wh := windowHist(pairs); wh != nil {
			if h == nil {
				h = newHist()
			}
			h.Merge(wh)
		}
	}
	return h
}

// windowSeconds is the profile's window length.
func windowSeconds(r *Result, st *StepResult) float64 {
	if r.Generator.WindowS > 0 {
		return r.Generator.WindowS
	}
	if n := len(st.WindowAchieved); n > 0 && st.MeasuredS > 0 {
		return st.MeasuredS / float64(n)
	}
	return 1
}

// timelinePlots draws every measured window in order: p50 and p99 against the SLO, and
// offered, achieved and error rates, with a line where each step begins. Warm-ups and the
// search's drains are left out of the time axis.
func timelinePlots(r *Result) (latency, rate string) {
	p50 := Series{Name: "p50"}
	p99 := Series{Name: "p99"}
	ach := Series{Name: "achieved/s"}
	off := Series{Name: "offered/s"}
	errs := Series{Name: "errors/s"}
	var opts PlotOpts
	t := 0.0
	label := len(r.Steps) <= 40 // a ramp's windows are its steps: too many to label
	for i := range r.Steps {
		st := &r.Steps[i]
		ws := windowSeconds(r, st)
		if label {
			lbl := fmt.Sprintf("#%d %s/s", st.Index, num(st.OfferedRPS))
			if st.Concurrency > 0 {
				lbl = fmt.Sprintf("#%d c=%d", st.Index, st.Concurrency)
			}
			opts.VLines = append(opts.VLines, Mark{t, lbl})
		}
		for k := range st.WindowAchieved {
			x := t + (float64(k)+0.5)*ws
			if k < len(st.WindowLatencyUs) {
				if h := windowHist(st.WindowLatencyUs[k]); h != nil {
					p50.Points = append(p50.Points, Point{x, float64(h.ValueAtQuantile(50)) / 1000})
				}
			}
			if k < len(st.WindowP99Ms) {
				p99.Points = append(p99.Points, Point{x, st.WindowP99Ms[k]})
			}
			ach.Points = append(ach.Points, Point{x, st.WindowAchieved[k]})
			off.Points = append(off.Points, Point{x, st.OfferedRPS})
			if k < len(st.WindowErrors) {
				errs.Points = append(errs.Points, Point{x, float64(st.WindowErrors[k]) / ws})
			}
		}
		t += float64(len(st.WindowAchieved)) * ws
	}
	lo := opts
	lo.HLines = []Mark{{r.SLO.P99Ms, fmt.Sprintf("SLO p99 %g ms", r.SLO.P99Ms)}}
	latency = PlotSVGWith(r.Scenario+": latency per window", "measured time (s; warm-ups and drains left out)", "latency (ms, log scale)",
		[]Series{p50, p99}, true, lo)
	rate = PlotSVGWith(r.Scenario+": rates per window", "measured time (s; warm-ups and drains left out)", "per second",
		[]Series{off, ach, errs}, false, opts)
	return latency, rate
}

// spectrumQuantiles are the percentiles a spectrum plots, before the maximum.
var spectrumQuantiles = []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999}

// spectrumPlot draws each step's percentile spectrum, HdrHistogram-style: latency
// against 1/(1 − percentile) on a log axis, up to the percentile its requests can show,
// then the maximum. At most 12 steps, spread over the run.
func spectrumPlot(r *Result) string {
	var idx []int
	for i := range r.Steps {
		if len(r.Steps[i].WindowLatencyUs) > 0 {
			idx = append(idx, i)
		}
	}
	if len(idx) > 12 {
		pick := make([]int, 12)
		for j := range pick {
			pick[j] = idx[j*(len(idx)-1)/11]
		}
		idx = pick
	}
	var series []Series
	for _, i := range idx {
		st := &r.Steps[i]
		h := stepHist(st)
		if h == nil {
			continue
		}
		n := float64(h.TotalCount())
		s := Series{Name: fmt.Sprintf("#%d %s %s/s", st.Index, st.Phase, num(st.OfferedRPS))}
		for _, q := range spectrumQuantiles {
			x := 1 / (1 - q/100)
			if x > n {
				break
			}
			s.Points = append(s.Points, Point{x, float64(h.ValueAtQuantile(q)) / 1000})
		}
		s.Points = append(s.Points, Point{math.Max(n, 1), float64(h.Max()) / 1000})
		series = append(series, s)
	}
	ticks := []Mark{{1, "0%"}, {10, "90%"}, {100, "99%"}, {1000, "99.9%"}, {1e4, "99.99%"}, {1e5, "99.999%"}, {1e6, "99.9999%"}}
	var maxX float64
	for _, s := range series {
		for _, p := range s.Points {
			maxX = math.Max(maxX, p.X)
		}
	}
	for len(ticks) > 2 && ticks[len(ticks)-2].V >= maxX {
		ticks = ticks[:len(ticks)-1]
	}
	return PlotSVGWith(r.Scenario+": percentile spectrum per step (the last point is the maximum)", "percentile", "latency (ms, log scale)", series, true,
		PlotOpts{LogX: true, XTicks: ticks, HLines: []Mark{{r.SLO.P99Ms, fmt.Sprintf("SLO p99 %g ms", r.SLO.P99Ms)}}})
}

// searchPlot draws the search's trials and confirm steps by offered rate, each marked
// with its order in the run and its verdict, against the SLO; a line marks the headline.
func searchPlot(r *Result) string {
	trials := Series{Name: "trial p99"}
	confirms := Series{Name: "confirm p99"}
	var opts PlotOpts
	k := 0
	for _, st := range r.Steps {
		if st.Requests == 0 || (st.Phase != "search" && st.Phase != "confirm") {
			continue
		}
		k++
		pt := Point{st.OfferedRPS, st.Latency.P99}
		if st.Phase == "search" {
			trials.Points = append(trials.Points, pt)
		} else {
			confirms.Points = append(confirms.Points, pt)
		}
		v := st.Verdict
		if v == "" {
			v = map[bool]string{true: VerdictPass, false: VerdictFail}[st.Stable && st.SLOMet]
		}
		opts.Notes = append(opts.Notes, Note{pt.X, pt.Y, fmt.Sprintf("%d %s", k, v)})
	}
	opts.HLines = []Mark{{r.SLO.P99Ms, fmt.Sprintf("SLO p99 %g ms", r.SLO.P99Ms)}}
	if r.Search != nil && r.Search.MaxRate > 0 {
		opts.VLines = []Mark{{r.Search.MaxRate, fmt.Sprintf("headline %s/s", num(r.Search.MaxRate))}}
	}
	return PlotSVGWith(r.Scenario+": search trials by rate (number: order run)", "offered rate (requests/s)", "p99 (ms, log scale)",
		[]Series{trials, confirms}, true, opts)
}

// stepHgrm is a step's percentile distribution in HdrHistogram's .hgrm text form, in ms.
func stepHgrm(st *StepResult) string {
	h := stepHist(st)
	if h == nil {
		return ""
	}
	var b bytes.Buffer
	_, _ = h.PercentilesPrint(&b, 5, 1000)
	return b.String()
}

// stepCSV is a step's windows as CSV.
func stepCSV(r *Result, st *StepResult) string {
	var b strings.Builder
	b.WriteString("window,start_s,requests,p50_ms,p95_ms,p99_ms,mean_ms,offered_rps,achieved_rps,errors,predictions,sidecar_cpu_s\n")
	ws := windowSeconds(r, st)
	for k := range st.WindowAchieved {
		var n int64
		var p50, p95 float64
		if k < len(st.WindowLatencyUs) {
			if h := windowHist(st.WindowLatencyUs[k]); h != nil {
				n = h.TotalCount()
				p50, p95 = float64(h.ValueAtQuantile(50))/1000, float64(h.ValueAtQuantile(95))/1000
			}
		}
		at := func(xs []float64) string {
			if k < len(xs) {
				return fmt.Sprintf("%.4g", xs[k])
			}
			return ""
		}
		ati := func(xs []int64) string {
			if k < len(xs) {
				return fmt.Sprint(xs[k])
			}
			return ""
		}
		fmt.Fprintf(&b, "%d,%.3f,%d,%.4g,%.4g,%s,%s,%.4g,%s,%s,%s,%s\n", k, float64(k)*ws, n, p50, p95,
			at(st.WindowP99Ms), at(st.WindowMeanMs), st.OfferedRPS, at(st.WindowAchieved), ati(st.WindowErrors),
			ati(st.WindowPredictions), at(st.WindowCPUSeconds))
	}
	return b.String()
}

// sortedSearchSteps lists the search's steps ordered by rate (then by order run).
func sortedSearchSteps(r *Result) []StepResult {
	var out []StepResult
	for _, st := range r.Steps {
		if st.Phase == "search" || st.Phase == "confirm" {
			out = append(out, st)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].OfferedRPS < out[j].OfferedRPS })
	return out
}
