package loadtest

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Point is one plotted value.
type Point struct{ X, Y float64 }

// Series is one line of a plot.
type Series struct {
	Name   string
	Points []Point
}

// seriesColors are distinguishable on white and in grey scale.
var seriesColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"}

// Plot geometry in SVG user units.
const (
	plotW, plotH                         = 720, 420
	padLeft, padRight, padTop, padBottom = 70, 170, 40, 55
)

// A note's 10-unit text takes 12 units of height from 9 above its baseline (a
// sans-serif face's ascent and descent) and at most about 6 units a character.
const noteH, noteAscent, noteCharW = 12, 9, 6

// PlotOpts are a plot's extras: reference lines, labels on points, a logarithmic x axis.
type PlotOpts struct {
	// VLines are vertical lines (step boundaries) at X, labelled at the top.
	VLines []Mark
	// HLines are horizontal lines (the SLO) at Y, labelled at the right.
	HLines []Mark
	// Notes are texts drawn next to the point (X, Y), such as a trial's order.
	Notes []Note
	// XTicks, if set, replace the x axis ticks (values and labels).
	XTicks []Mark
	// LogX makes the x axis logarithmic from its smallest positive value.
	LogX bool
	// NoLines draws markers without joining them.
	NoLines bool
}

// Mark is a value on an axis and its label.
type Mark struct {
	V     float64
	Label string
}

// Note is a text at a data point.
type Note struct {
	X, Y float64
	Text string
}

// PlotSVG draws series as lines with a marker per point (class "pt", so tests and readers
// can count data). The x axis is linear from zero; the y axis too, or logarithmic with
// logY (latencies span milliseconds to seconds across a knee; non-positive values are
// left out there). A plot with no points says so.
func PlotSVG(title, xLabel, yLabel string, series []Series, logY bool) string {
	return PlotSVGWith(title, xLabel, yLabel, series, logY, PlotOpts{})
}

// PlotSVGWith is PlotSVG with reference lines, notes and axis options.
func PlotSVGWith(title, xLabel, yLabel string, series []Series, logY bool, o PlotOpts) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padLeft, esc(title))
	var xmax, ymax float64
	ymin := math.Inf(1)
	n := 0
	xmin := math.Inf(1)
	ok := func(p Point) bool { return finite(p.X) && finite(p.Y) && (!logY || p.Y > 0) && (!o.LogX || p.X > 0) }
	for _, s := range series {
		for _, p := range s.Points {
			if ok(p) {
				xmax, ymax, ymin = math.Max(xmax, p.X), math.Max(ymax, p.Y), math.Min(ymin, p.Y)
				xmin = math.Min(xmin, p.X)
				n++
			}
		}
	}
	for _, m := range o.HLines {
		if finite(m.V) && (!logY || m.V > 0) && n > 0 {
			ymax, ymin = math.Max(ymax, m.V), math.Min(ymin, m.V)
		}
	}
	x0, y0 := float64(padLeft), float64(plotH-padBottom)
	w, h := float64(plotW-padLeft-padRight), float64(plotH-padTop-padBottom)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="black"/>`+"\n", x0, y0, x0+w, y0)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="black"/>`+"\n", x0, y0, x0, y0-h)
	fmt.Fprintf(&b, `<text x="%g" y="%d" text-anchor="middle">%s</text>`+"\n", x0+w/2, plotH-12, esc(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16,%g) rotate(-90)" text-anchor="middle">%s</text>`+"\n", y0-h/2, esc(yLabel))
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle" fill="#888">no data</text>`+"\n", x0+w/2, y0-h/2)
		b.WriteString("</svg>\n")
		return b.String()
	}
	xt, ymaxN := niceTicks(xmax), niceTicks(ymax)
	xm, ym := xt[len(xt)-1], ymaxN[len(ymaxN)-1]
	sx := func(v float64) float64 { return x0 + v/xm*w }
	sy := func(v float64) float64 { return y0 - v/ym*h }
	var xLabels []string
	for _, t := range xt {
		xLabels = append(xLabels, fmtTick(t))
	}
	if o.LogX {
		lo, hi := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
		if hi <= lo {
			hi = lo + 1
		}
		xt, xLabels = nil, nil
		for e := lo; e <= hi; e++ {
			xt = append(xt, math.Pow(10, e))
			xLabels = append(xLabels, fmtTick(math.Pow(10, e)))
		}
		sx = func(v float64) float64 { return x0 + (math.Log10(v)-lo)/(hi-lo)*w }
	}
	if len(o.XTicks) > 0 {
		xt, xLabels = nil, nil
		for _, m := range o.XTicks {
			xt = append(xt, m.V)
			xLabels = append(xLabels, m.Label)
		}
	}
	if logY {
		lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
		if hi <= lo {
			hi = lo + 1
		}
		ymaxN = nil
		for e := lo; e <= hi; e++ {
			ymaxN = append(ymaxN, math.Pow(10, e))
		}
		sy = func(v float64) float64 { return y0 - (math.Log10(v)-lo)/(hi-lo)*h }
	}
	for i, t := range xt {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="black"/><text x="%.1f" y="%g" text-anchor="middle">%s</text>`+"\n",
			sx(t), y0, sx(t), y0+5, sx(t), y0+19, esc(xLabels[i]))
	}
	for _, t := range ymaxN {
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n",
			x0, sy(t), x0+w, sy(t), x0-6, sy(t)+4, fmtTick(t))
	}
	inX := func(v float64) bool { return finite(v) && (!o.LogX || v > 0) && sx(v) >= x0-0.5 && sx(v) <= x0+w+0.5 }
	inY := func(v float64) bool { return finite(v) && (!logY || v > 0) && sy(v) >= y0-h-0.5 && sy(v) <= y0+0.5 }
	for _, m := range o.VLines {
		if inX(m.V) {
			fmt.Fprintf(&b, `<line class="vline" x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999" stroke-dasharray="3,3"/><text x="%.1f" y="%g" font-size="10" fill="#666">%s</text>`+"\n",
				sx(m.V), y0, sx(m.V), y0-h, sx(m.V)+2, y0-h+10, esc(m.Label))
		}
	}
	for _, m := range o.HLines {
		if inY(m.V) {
			fmt.Fprintf(&b, `<line class="hline" x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#c00" stroke-dasharray="6,3"/><text x="%g" y="%.1f" font-size="11" fill="#c00">%s</text>`+"\n",
				x0, sy(m.V), x0+w, sy(m.V), x0+4, sy(m.V)-4, esc(m.Label))
		}
	}
	// A note that would cover one drawn before moves down a line: a search's trial and
	// its confirm step often sit at the same rate and latency.
	var placed [][4]float64
	for _, nt := range o.Notes {
		if inX(nt.X) && inY(nt.Y) {
			x, y := sx(nt.X)+5, sy(nt.Y)-5
			w := noteCharW * float64(len([]rune(nt.Text)))
			for range len(placed) {
				hit := false
				for _, r := range placed {
					hit = hit || (x < r[2] && r[0] < x+w && y-noteAscent < r[3] && r[1] < y-noteAscent+noteH)
				}
				if !hit {
					break
				}
				y += noteH
			}
			placed = append(placed, [4]float64{x, y - noteAscent, x + w, y - noteAscent + noteH})
			fmt.Fprintf(&b, `<text class="note" x="%.1f" y="%.1f" font-size="10">%s</text>`+"\n", x, y, esc(nt.Text))
		}
	}
	for i, s := range series {
		col := seriesColors[i%len(seriesColors)]
		pts := append([]Point(nil), s.Points...)
		sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
		var line []string
		for _, p := range pts {
			if ok(p) {
				line = append(line, fmt.Sprintf("%.1f,%.1f", sx(p.X), sy(p.Y)))
			}
		}
		if len(line) > 1 && !o.NoLines {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(line, " "))
		}
		for _, p := range pts {
			if ok(p) {
				fmt.Fprintf(&b, `<circle class="pt" cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
					sx(p.X), sy(p.Y), col, esc(s.Name), fmtTick(p.X), fmtTick(p.Y))
			}
		}
		ly := padTop + 10 + 20*i
		// A name wider than the legend's room (at up to 7.5 px a character: fonts differ)
		// is squeezed into it rather than drawn past the picture's edge.
		fit := ""
		if room := float64(plotW) - (x0 + w + 34) - 4; 7.5*float64(len(s.Name)) > room {
			fit = fmt.Sprintf(` textLength="%g" lengthAdjust="spacingAndGlyphs"`, room)
		}
		fmt.Fprintf(&b, `<rect x="%g" y="%d" width="14" height="4" fill="%s"/><text x="%g" y="%d"%s>%s</text>`+"\n",
			x0+w+14, ly, col, x0+w+34, ly+5, fit, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func esc(s string) string { return html.EscapeString(s) }

// niceTicks returns 0 and round tick values up to at least v (1, 2 or 5 times a power of
// ten per step, about five steps).
func niceTicks(v float64) []float64 {
	if !(v > 0) {
		return []float64{0, 1}
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step := p * 10
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			step = m * p
			break
		}
	}
	var t []float64
	for x := 0.0; ; x += step {
		t = append(t, x)
		if x >= v*(1-1e-12) || len(t) > 20 {
			break
		}
	}
	return t
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.4g", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// Report file names inside a profile directory.
const (
	ReportIndex      = "index.html"
	ReportLatency    = "latency.svg"
	ReportCPU        = "cpu.svg"
	ReportThroughput = "throughput.svg"
)

// WriteReport writes the plots and index.html for r into dir.
func WriteReport(dir string, r *Result) error {
	steps := append([]StepResult(nil), r.Steps...)
	var lat []Series
	pick := []struct {
		name string
		f    func(Latency) float64
	}{
		{"p50", func(l Latency) float64 { return l.P50 }},
		{"p90", func(l Latency) float64 { return l.P90 }},
		{"p99", func(l Latency) float64 { return l.P99 }},
		{"p99.9", func(l Latency) float64 { return l.P999 }},
	}
	for _, p := range pick {
		s := Series{Name: p.name}
		for _, st := range steps {
			if st.Requests > 0 {
				s.Points = append(s.Points, Point{st.OfferedRPS, p.f(st.Latency)})
			}
		}
		lat = append(lat, s)
	}
	// Per-workload p99 shows one model's latency against the others' load.
	wlNames := map[string]bool{}
	for _, st := range steps {
		for _, w := range st.Workloads {
			wlNames[w.Name] = true
		}
	}
	var names []string
	for n := range wlNames {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := Series{Name: n + " p99"}
		for _, st := range steps {
			for _, w := range st.Workloads {
				if w.Name == n && w.Requests > 0 {
					s.Points = append(s.Points, Point{st.OfferedRPS, w.Latency.P99})
				}
			}
		}
		lat = append(lat, s)
	}
	cpu := Series{Name: "sidecar CPU"} // the y axis names the unit
	for _, st := range steps {
		if st.CPUSecondsPer1kPredictions > 0 {
			cpu.Points = append(cpu.Points, Point{st.OfferedRPS, st.CPUSecondsPer1kPredictions * 1000})
		}
	}
	thr := []Series{{Name: "achieved"}, {Name: "offered"}}
	for _, st := range steps {
		thr[0].Points = append(thr[0].Points, Point{st.OfferedRPS, st.AchievedRPS})
		thr[1].Points = append(thr[1].Points, Point{st.OfferedRPS, st.OfferedRPS})
	}
	files := map[string]string{
		ReportLatency:    PlotSVG(r.Scenario+": latency from intended send time", "offered rate (requests/s)", "latency (ms, log scale)", lat, true),
		ReportCPU:        PlotSVG(r.Scenario+": sidecar CPU per prediction", "offered rate (requests/s)", "sidecar CPU ms per 1,000 predictions", []Series{cpu}, false),
		ReportThroughput: PlotSVG(r.Scenario+": achieved vs offered rate", "offered rate (requests/s)", "requests/s", thr, false),
		ReportIndex:      reportHTML(r),
	}
	files[ReportTimelineLatency], files[ReportTimelineRate] = timelinePlots(r)
	files[ReportSpectrum] = spectrumPlot(r)
	if r.Search != nil {
		files[ReportSearch] = searchPlot(r)
	}
	for i := range steps {
		if len(steps[i].WindowAchieved) > 0 {
			files[stepFile(steps[i].Index, "csv")] = stepCSV(r, &steps[i])
		}
		if h := stepHgrm(&steps[i]); h != "" {
			files[stepFile(steps[i].Index, "hgrm")] = h
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func reportHTML(r *Result) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s %s</title>\n", esc(r.Scenario), esc(r.RunID))
	p("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	// No icon: otherwise a browser asks the server for /favicon.ico and logs its 404.
	p("<link rel=\"icon\" href=\"data:,\">\n")
	p("<style>body{font-family:sans-serif;margin:1em auto;max-width:1400px;padding:0 1em;font-size:14px}" +
		".plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(560px,100%%),1fr));gap:8px}.plots img{width:100%%;height:auto;border:1px solid #eee}" +
		".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 5px;text-align:right;white-space:nowrap}" +
		"th{background:#f4f4f4;position:sticky;top:0}.bad{color:#c00}.kv th{text-align:left}.kv td{text-align:left;white-space:normal}</style></head><body>\n")
	p("<h1>%s — run %s</h1>\n", esc(r.Scenario), esc(r.RunID))
	if r.Description != "" {
		p("<p>%s</p>\n", esc(r.Description))
	}
	if r.Interrupted {
		p("<p class=\"bad\"><b>Interrupted:</b> partial results.</p>\n")
	}
	m := r.Machine
	p("<details><summary><b>Machine and run</b></summary><table class=\"kv\">\n")
	for _, kv := range [][2]string{
		{"label", m.Label}, {"CPU", m.CPUModel}, {"cores", fmt.Sprint(m.Cores)}, {"GOMAXPROCS (generator)", fmt.Sprint(m.GOMAXPROCS)},
		{"host", m.Hostname}, {"kernel", m.Kernel}, {"Go", m.GoVersion}, {"git commit", m.GitCommit},
		{"target", r.Target}, {"protocol", r.Protocol}, {"arrival", r.Arrival}, {"mode", r.Mode},
		{"sidecar pid", fmt.Sprint(r.Sidecar.PID)}, {"models", strings.Join(r.Sidecar.Models, ", ")},
		{"SLO", fmt.Sprintf("p99 ≤ %g ms, errors ≤ %g%%", r.SLO.P99Ms, 100*r.SLO.MaxErrorRate)},
		{"started", r.StartedAt.Format("2006-01-02 15:04:05 UTC")},
	} {
		p("<tr><th>%s</th><td>%s</td></tr>\n", esc(kv[0]), esc(kv[1]))
	}
	p("</table></details>\n")
	if s := r.Search; s != nil {
		p("<h2>Search</h2><p>")
		if s.MaxRate > 0 {
			p("Highest rate whose confirm step held the SLO with stable windows: <b>%.1f requests/s</b> (%.0f predictions/s), after %d trials and %d confirm step(s).",
				s.MaxRate, s.MaxPredictionsPerSec, s.Trials, s.ConfirmAttempts)
		} else {
			p("<span class=\"bad\">No rate confirmed</span> after %d trials and %d confirm step(s).", s.Trials, s.ConfirmAttempts)
		}
		if s.SidecarFailedRate > 0 {
			p(" The sidecar failed at %.1f/s.", s.SidecarFailedRate)
		} else {
			p(" No trial failed on the sidecar's account: the headline is a lower bound.")
		}
		if s.GeneratorLimitRate > 0 {
			p(" <span class=\"bad\">The generator could not drive %.1f/s</span>; the search did not go higher.", s.GeneratorLimitRate)
		}
		p("</p>\n")
		p("<div class=\"scroll\"><table><tr><th>by rate</th><th>order</th><th>phase</th><th>offered/s</th><th>p99 ms</th><th>stable</th><th>verdict</th><th>drained s</th></tr>\n")
		for j, st := range sortedSearchSteps(r) {
			v := st.Verdict
			if v != VerdictPass && v != "" {
				v = "<span class=\"bad\">" + esc(v) + "</span>"
			}
			p("<tr><td>%d</td><td>#%d</td><td>%s</td><td>%.1f</td><td>%.2f</td><td>%v</td><td>%s</td><td>%.2f</td></tr>\n",
				j+1, st.Index, esc(st.Phase), st.OfferedRPS, st.Latency.P99, st.Stable, v, st.DrainS)
		}
		p("</table></div>\n")
	}
	p("<h2>Plots</h2><div class=\"plots\">\n")
	plots := []string{ReportTimelineLatency, ReportTimelineRate, ReportLatency, ReportSpectrum, ReportThroughput, ReportCPU}
	if r.Search != nil {
		plots = append([]string{ReportSearch}, plots...)
	}
	for _, f := range plots {
		p("<a href=\"%s\"><img src=\"%s\" alt=\"%s\"></a>\n", f, f, f)
	}
	p("</div>\n")
	p("<h2>Steps</h2><div class=\"scroll\"><table><tr><th>#</th><th>phase</th><th>offered/s</th><th>achieved/s</th><th>predictions/s</th><th>p50 ms</th><th>p90 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th><th>late sends</th><th>send lag p99 ms</th><th>stable</th><th>SLO</th><th>sidecar cores</th><th>CPU ms/1k pred</th><th>RSS MiB</th><th>data</th></tr>\n")
	for _, st := range r.Steps {
		slo := "met"
		if !st.SLOMet {
			slo = "<span class=\"bad\">missed</span>"
		}
		lag := fmt.Sprintf("%.2f", st.SendLagP99Ms)
		if st.GeneratorLimited {
			lag = "<span class=\"bad\" title=\"generator-limited\">" + lag + "</span>"
		}
		var data []string
		if len(st.WindowAchieved) > 0 {
			data = append(data, fmt.Sprintf("<a href=\"%s\">csv</a>", stepFile(st.Index, "csv")))
		}
		if len(st.WindowLatencyUs) > 0 {
			data = append(data, fmt.Sprintf("<a href=\"%s\">hgrm</a>", stepFile(st.Index, "hgrm")))
		}
		p("<tr><td>%d</td><td>%s</td><td>%.1f</td><td>%.1f</td><td>%.0f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%s</td><td>%d</td><td>%s</td><td>%v</td><td>%s</td><td>%.2f</td><td>%.3f</td><td>%.1f</td><td>%s</td></tr>\n",
			st.Index, esc(st.Phase), st.OfferedRPS, st.AchievedRPS, st.PredictionsPerSec, st.Latency.P50, st.Latency.P90, st.Latency.P95, st.Latency.P99,
			st.Latency.P999, st.Latency.Max, esc(fmtErrors(st.Errors)), st.LateSends, lag, st.Stable, slo,
			st.SidecarCores, st.CPUSecondsPer1kPredictions*1000, float64(st.RSSBytes)/(1<<20), strings.Join(data, " "))
		for _, w := range st.Workloads {
			p("<tr><td></td><td>↳ %s (%s)</td><td>%.1f</td><td>%.1f</td><td>%.0f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%s</td><td>%d</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td></tr>\n",
				esc(w.Name), esc(w.Model), w.OfferedRPS, w.AchievedRPS, w.PredictionsPerSec, w.Latency.P50, w.Latency.P90, w.Latency.P95, w.Latency.P99,
				w.Latency.P999, w.Latency.Max, esc(fmtErrors(w.Errors)), w.LateSends)
		}
	}
	p("</table></div>\n")
	p("<h2>Sidecar CPU profile</h2><p>")
	if r.Sidecar.CPUProfile != "" {
		p("<a href=\"%s\">%s</a> (view with <code>go tool pprof -http=: %s</code>). ", esc(r.Sidecar.CPUProfile), esc(r.Sidecar.CPUProfile), esc(r.Sidecar.CPUProfile))
	}
	p("%s</p>\n", esc(r.Sidecar.ProfileNote))
	if len(r.Hooks) > 0 {
		p("<h2>Hooks</h2><table><tr><th>at s</th><th>command</th><th>exit</th><th>error</th></tr>\n")
		for _, h := range r.Hooks {
			p("<tr><td>%.2f</td><td style=\"text-align:left\"><code>%s</code></td><td>%d</td><td style=\"text-align:left\">%s</td></tr>\n", h.AtS, esc(h.Command), h.ExitCode, esc(h.Error))
		}
		p("</table>\n")
	}
	if len(r.Notes) > 0 {
		p("<h2>Notes</h2><ul>\n")
		for _, n := range r.Notes {
			p("<li>%s</li>\n", esc(n))
		}
		p("</ul>\n")
	}
	p("<p>Raw data: <a href=\"result.json\">result.json</a>. Latency counts from each request's intended send time (open loop, no coordinated omission). A send lag in red marks a generator-limited step (p90 send lag over %g ms without waits for the in-flight cap, or a cap too small for the rate at the SLO): the generator, not the sidecar, shaped it. Per step, <code>csv</code> holds its windows and <code>hgrm</code> its percentile distribution in HdrHistogram's text form (ms).</p>\n</body></html>\n", ms(LimitedLag))
	return b.String()
}

func fmtErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
