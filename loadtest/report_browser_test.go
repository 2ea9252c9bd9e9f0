package loadtest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/predictd/predictd/internal/browsertest"

	"github.com/chromedp/chromedp"
)

// PREDICTD_UI_SCREENSHOTS=1 (browsertest.ScreenshotsEnv) makes TestReportInBrowser save
// the reports it renders as docs/img/loadtest-report.png and docs/img/loadtest-search.png
// (shown in docs/loadtest.md).

// A laptop screen: the report must fit its width without scrolling sideways.
const screenW, screenH = 1366, 768

// browser is the report test's headless Chromium: the screen's size, and every failed or
// non-2xx load counted as a problem besides console errors and exceptions.
type browser struct{ *browsertest.Browser }

func newBrowser(t *testing.T) browser {
	return browser{browsertest.New(t, browsertest.Options{Width: screenW, Height: screenH, Viewport: true, FailedLoads: true})}
}

func act[T any](t *testing.T, b browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	return browsertest.Run(t, b.Browser, what, a)
}

// shot saves the viewport as docs/img/loadtest-NAME.png when screenshots are asked for.
func (b browser) shot(t *testing.T, name string) {
	t.Helper()
	b.Shot(t, filepath.Join("..", "docs", "img", "loadtest-"+name+".png"))
}

// reportRow is a step as the index page's Steps table shows it.
type reportRow struct {
	Index   string  `json:"index"`
	Offered float64 `json:"offered"`
}

// pageLayout is what the index page shows: its plots as laid out, and the Steps table.
type pageLayout struct {
	ScrollW float64 `json:"scrollW"`
	InnerW  float64 `json:"innerW"`
	Plots   []struct {
		Src    string  `json:"src"`
		Loaded bool    `json:"loaded"`
		Left   float64 `json:"left"`
		Right  float64 `json:"right"`
		Width  float64 `json:"width"`
		Height float64 `json:"height"`
	} `json:"plots"`
	Steps []reportRow `json:"steps"`
}

const layoutJS = `(() => {
	const plots = Array.from(document.querySelectorAll(".plots img")).map(i => {
		const r = i.getBoundingClientRect();
		return {src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0, left: r.left, right: r.right, width: r.width, height: r.height};
	});
	const h = Array.from(document.querySelectorAll("h2")).find(h => h.textContent === "Steps");
	const steps = Array.from(h.nextElementSibling.querySelectorAll("tr")).map(tr => tr.querySelectorAll("td"))
		.filter(td => td.length > 2 && td[0].textContent !== "")
		.map(td => ({index: td[0].textContent, offered: parseFloat(td[2].textContent)}));
	return {scrollW: document.documentElement.scrollWidth, innerW: window.innerWidth, plots, steps};
})()`

// svgShape is what a plot opened on its own draws, in CSS pixels of the page (the SVG's
// user units, as it is drawn at its own size from the top left).
type svgShape struct {
	W, H      float64
	NoData    bool
	Lines     []struct{ N, Left, Right, Top, Bottom float64 }
	Points    int
	Notes     int
	Outside   []string
	Overlaps  []string // notes drawn over each other
	VLines    []svgMark
	HLines    []svgMark
	XTicks    []svgMark
	YTicks    []svgMark
	FrameLeft float64
	FrameTop  float64
	FrameW    float64
	FrameH    float64
	spanY     float64 // how high the lines reach together, from their lowest point
}

// svgMark is a reference line or a tick: where it is drawn and its label.
type svgMark struct {
	At    float64
	Label string
}

const shapeJS = `(() => {
	const svg = document.documentElement, vb = svg.viewBox.baseVal;
	const num = (e, a) => parseFloat(e.getAttribute(a));
	const label = e => e.nextElementSibling ? e.nextElementSibling.textContent : "";
	const out = {W: vb.width, H: vb.height, NoData: Array.from(svg.querySelectorAll("text")).some(e => e.textContent === "no data"),
		Lines: [], Points: svg.querySelectorAll("circle.pt").length, Notes: svg.querySelectorAll("text.note").length,
		Outside: [], Overlaps: [], VLines: [], HLines: [], XTicks: [], YTicks: []};
	for (const p of svg.querySelectorAll("polyline")) {
		const r = p.getBoundingClientRect();
		out.Lines.push({N: p.points.numberOfItems, Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom});
	}
	for (const e of svg.querySelectorAll("text, circle, polyline, line, rect")) {
		const r = e.getBoundingClientRect();
		if (r.left < -0.5 || r.top < -0.5 || r.right > vb.width + 0.5 || r.bottom > vb.height + 0.5)
			out.Outside.push(e.outerHTML.slice(0, 160));
	}
	const notes = Array.from(svg.querySelectorAll("text.note")).map(e => [e.textContent, e.getBoundingClientRect()]);
	for (let i = 0; i < notes.length; i++)
		for (let j = 0; j < i; j++) {
			const [a, ra] = notes[i], [c, rc] = notes[j];
			if (ra.left < rc.right && rc.left < ra.right && ra.top < rc.bottom && rc.top < ra.bottom) out.Overlaps.push(a + " / " + c);
		}
	for (const l of svg.querySelectorAll("line")) {
		const x1 = num(l, "x1"), y1 = num(l, "y1"), x2 = num(l, "x2"), y2 = num(l, "y2");
		if (l.classList.contains("vline")) out.VLines.push({At: x1, Label: label(l)});
		else if (l.classList.contains("hline")) out.HLines.push({At: y1, Label: label(l)});
		else if (l.getAttribute("stroke") === "black" && x1 === x2 && y2 - y1 === 5) out.XTicks.push({At: x1, Label: label(l)});
		else if (l.getAttribute("stroke") === "#ddd") out.YTicks.push({At: y1, Label: label(l)});
	}
	const axes = Array.from(svg.querySelectorAll("line[stroke=black]")).filter(l => !(num(l, "y2") - num(l, "y1") === 5)).slice(0, 2);
	out.FrameLeft = num(axes[1], "x1"); out.FrameW = num(axes[0], "x2") - num(axes[0], "x1");
	out.FrameTop = num(axes[1], "y2"); out.FrameH = num(axes[1], "y1") - num(axes[1], "y2");
	return out;
})()`

// axis maps values to pixels the way the plot's own ticks do: linearly, or in log10.
type axis struct {
	a, b float64
	log  bool
}

// fitAxis takes the first and last tick with a numeric label.
func fitAxis(t *testing.T, plot string, ticks []svgMark, log bool) axis {
	t.Helper()
	var vs, ps []float64
	for _, m := range ticks {
		if v, err := strconv.ParseFloat(m.Label, 64); err == nil && (!log || v > 0) {
			if log {
				v = math.Log10(v)
			}
			vs, ps = append(vs, v), append(ps, m.At)
		}
	}
	if len(vs) < 2 || vs[0] == vs[len(vs)-1] {
		t.Fatalf("%s: ticks %v do not define an axis", plot, ticks)
	}
	b := (ps[len(ps)-1] - ps[0]) / (vs[len(vs)-1] - vs[0])
	return axis{a: ps[0] - b*vs[0], b: b, log: log}
}

func (a axis) at(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return a.a + a.b*v
}

// openPlot opens a plot on its own and checks it is drawn: no "no data", points, a
// line of at least minPoints points with a width (none needed for one point), lines inside the frame, notes apart, and nothing
// drawn outside the picture. A flat line is data (CPU figures come in clock ticks).
func openPlot(t *testing.T, b browser, base, name string, minPoints int) svgShape {
	t.Helper()
	b.Do(t, "open "+name, chromedp.Navigate(base+"/"+name), chromedp.WaitReady(chromedp.CSS("svg")))
	s := act(t, b, "shape of "+name, chromedp.Evaluate[svgShape](shapeJS))
	b.Check(t, name)
	if s.NoData || s.Points == 0 || (minPoints > 1 && len(s.Lines) == 0) {
		t.Errorf("%s: empty plot (no data %v, %d lines, %d points)", name, s.NoData, len(s.Lines), s.Points)
		return s
	}
	longest, top, bottom := 0.0, math.Inf(1), math.Inf(-1)
	for i, l := range s.Lines {
		longest = math.Max(longest, l.N)
		top, bottom = math.Min(top, l.Top), math.Max(bottom, l.Bottom)
		if l.Right-l.Left < 1 {
			t.Errorf("%s: line %d has no width (%+v)", name, i, l)
		} else if l.Left < s.FrameLeft-1 || l.Right > s.FrameLeft+s.FrameW+1 || l.Top < s.FrameTop-1 || l.Bottom > s.FrameTop+s.FrameH+1 {
			t.Errorf("%s: line %d leaves the frame (%+v; frame %v,%v %vx%v)", name, i, l, s.FrameLeft, s.FrameTop, s.FrameW, s.FrameH)
		}
	}
	if int(longest) < minPoints {
		t.Errorf("%s: the longest line has %v points, want >= %d", name, longest, minPoints)
	}
	s.spanY = bottom - top
	if s.W > screenW {
		t.Errorf("%s: %v wide, wider than a %d-pixel screen", name, s.W, screenW)
	}
	for _, o := range s.Overlaps {
		t.Errorf("%s: notes drawn over each other: %s", name, o)
	}
	for _, o := range s.Outside {
		t.Errorf("%s: drawn outside its %vx%v picture: %s", name, s.W, s.H, o)
	}
	return s
}

// checkSLO: one SLO line, labelled with the profile's SLO, at its height on the log axis.
func checkSLO(t *testing.T, name string, s svgShape, r *Result) {
	t.Helper()
	want := fmt.Sprintf("SLO p99 %g ms", r.SLO.P99Ms)
	if len(s.HLines) != 1 || s.HLines[0].Label != want {
		t.Errorf("%s: SLO lines %+v, want one labelled %q", name, s.HLines, want)
		return
	}
	y := fitAxis(t, name+" y", s.YTicks, true)
	if got, want := s.HLines[0].At, y.at(r.SLO.P99Ms); math.Abs(got-want) > 1 {
		t.Errorf("%s: SLO line at y=%.1f, its axis puts %g ms at y=%.1f", name, got, r.SLO.P99Ms, want)
	}
}

// checkReportPage opens a profile's index.html and each of its plots and checks them
// against the steps the page lists and the profile they were drawn from.
func checkReportPage(t *testing.T, b browser, dir string, wantPlots []string) {
	t.Helper()
	r, err := LoadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := "file://" + filepath.ToSlash(abs)

	b.Do(t, "report", chromedp.Navigate(srv.URL+"/"+ReportIndex), chromedp.WaitVisible(chromedp.CSS("h1")))
	act(t, b, "plots loaded", chromedp.Poll[bool](`Array.from(document.querySelectorAll(".plots img")).every(i => i.complete)`,
		chromedp.WithPollingTimeout(10*time.Second)))
	page := act(t, b, "layout", chromedp.Evaluate[*pageLayout](layoutJS))
	b.Check(t, "index.html")
	if page.ScrollW > page.InnerW {
		t.Errorf("the page is %v pixels wide on a %v-pixel screen: it scrolls sideways", page.ScrollW, page.InnerW)
	}
	var srcs []string
	for _, p := range page.Plots {
		srcs = append(srcs, p.Src)
		if !p.Loaded || p.Height < 50 || p.Left < 0 || p.Right > page.InnerW {
			t.Errorf("plot %s: loaded %v, at %v..%v of %v, %vx%v", p.Src, p.Loaded, p.Left, p.Right, page.InnerW, p.Width, p.Height)
		}
		// At three quarters of its size a plot's 12-unit text is 9 pixels high: legible.
		if p.Width < 0.75*plotW {
			t.Errorf("plot %s: %v pixels wide for a %d-unit plot: its text is too small to read", p.Src, p.Width, plotW)
		}
	}
	if strings.Join(srcs, " ") != strings.Join(wantPlots, " ") {
		t.Errorf("plots %v, want %v", srcs, wantPlots)
	}
	if len(page.Steps) != len(r.Steps) {
		t.Fatalf("the Steps table lists %d steps, the profile has %d", len(page.Steps), len(r.Steps))
	}

	// The timelines: a point per window and series, a boundary where each step listed
	// begins (at its measured time), the SLO at its height.
	windows := 0
	for _, st := range r.Steps {
		windows += len(st.WindowAchieved)
	}
	tl := openPlot(t, b, files, ReportTimelineLatency, windows)
	checkSLO(t, ReportTimelineLatency, tl, r)
	tr := openPlot(t, b, files, ReportTimelineRate, windows)
	if tr.spanY < 1 { // the steps offer different rates
		t.Errorf("%s: the lines are flat", ReportTimelineRate)
	}
	if tr.Points != 3*windows {
		t.Errorf("%s: %d points, want offered, achieved and errors for %d windows", ReportTimelineRate, tr.Points, windows)
	}
	if len(tr.HLines) != 0 {
		t.Errorf("%s: an SLO line on a rate plot: %+v", ReportTimelineRate, tr.HLines)
	}
	labelRe := regexp.MustCompile(`^#(\d+) ([0-9.]+)/s$`)
	for _, pl := range []struct {
		name string
		s    svgShape
	}{{ReportTimelineLatency, tl}, {ReportTimelineRate, tr}} {
		if len(pl.s.VLines) != len(page.Steps) {
			t.Errorf("%s: %d step boundaries for the %d steps listed", pl.name, len(pl.s.VLines), len(page.Steps))
			continue
		}
		x := fitAxis(t, pl.name+" x", pl.s.XTicks, false)
		at := 0.0
		for i, v := range pl.s.VLines {
			m := labelRe.FindStringSubmatch(v.Label)
			row := page.Steps[i]
			if m == nil || m[1] != row.Index {
				t.Errorf("%s: boundary %d labelled %q, the table's step is #%s", pl.name, i, v.Label, row.Index)
			} else if off, _ := strconv.ParseFloat(m[2], 64); math.Abs(off-row.Offered) > 0.5 {
				t.Errorf("%s: boundary %q, the table's step #%s offers %v/s", pl.name, v.Label, row.Index, row.Offered)
			}
			if want := x.at(at); math.Abs(v.At-want) > 1 {
				t.Errorf("%s: step #%s begins at x=%.1f, its axis puts %.2fs at x=%.1f", pl.name, row.Index, v.At, at, want)
			}
			at += float64(len(r.Steps[i].WindowAchieved)) * windowSeconds(r, &r.Steps[i])
		}
	}

	// By rate: a point per step and series; the spectrum a curve per step with the SLO.
	measured := 0
	for _, st := range r.Steps {
		if st.Requests > 0 {
			measured++
		}
	}
	lat := openPlot(t, b, files, ReportLatency, 2)
	if lat.Points < 4*measured {
		t.Errorf("%s: %d points for %d steps", ReportLatency, lat.Points, measured)
	}
	openPlot(t, b, files, ReportThroughput, 2)
	openPlot(t, b, files, ReportCPU, 2)
	sp := openPlot(t, b, files, ReportSpectrum, 5)
	if len(sp.Lines) != min(measured, 12) {
		t.Errorf("%s: %d curves for %d steps", ReportSpectrum, len(sp.Lines), measured)
	}
	checkSLO(t, ReportSpectrum, sp, r)

	if r.Search != nil {
		var trials, searched int
		for _, st := range r.Steps {
			if st.Requests > 0 && (st.Phase == "search" || st.Phase == "confirm") {
				trials++
				if st.Phase == "search" {
					searched++
				}
			}
		}
		s := openPlot(t, b, files, ReportSearch, searched) // a line through the trials
		if s.Points != trials || s.Notes != trials {
			t.Errorf("%s: %d points and %d notes for %d trials and confirm steps", ReportSearch, s.Points, s.Notes, trials)
		}
		checkSLO(t, ReportSearch, s, r)
		if r.Search.MaxRate > 0 {
			want := fmt.Sprintf("headline %s/s", num(r.Search.MaxRate))
			x := fitAxis(t, ReportSearch+" x", s.XTicks, false)
			if len(s.VLines) != 1 || s.VLines[0].Label != want || math.Abs(s.VLines[0].At-x.at(r.Search.MaxRate)) > 1 {
				t.Errorf("%s: headline lines %+v, want %q at x=%.1f", ReportSearch, s.VLines, want, x.at(r.Search.MaxRate))
			}
		} else if len(s.VLines) != 0 {
			t.Errorf("%s: a headline line %+v without a headline", ReportSearch, s.VLines)
		}
	}

	// Back to the page, for a screenshot.
	b.Do(t, "report again", chromedp.Navigate(srv.URL+"/"+ReportIndex), chromedp.WaitVisible(chromedp.CSS("h1")))
	act(t, b, "plots loaded again", chromedp.Poll[bool](`Array.from(document.querySelectorAll(".plots img")).every(i => i.complete)`,
		chromedp.WithPollingTimeout(10*time.Second)))
	b.Check(t, "index.html")
}

// TestReportInBrowser renders the report of two real runs against the in-package
// server, a steps run and a search, and opens each in headless Chromium on a 1366×768
// screen: no console error, exception or failed load; the page fits the screen's width;
// every plot loads and draws lines of data inside its frame; the SLO and step boundaries
// are where the profile and the page's table put them.
func TestReportInBrowser(t *testing.T) {
	b := newBrowser(t)

	// Steps, two workloads (one at a fixed rate): per-workload series too.
	ts := startTestServer(t, func(time.Time) time.Duration { return time.Duration(1+time.Now().UnixNano()%3) * time.Millisecond })
	sc := testScenario(t, `
name: report
description: Three steps against a server answering in 1-3 ms.
arrival: poisson
warmup: 200ms
window: 250ms
timeout: 2s
slo: {p99: 20ms}
steps: [{rate: 60, duration: 1s}, {rate: 120, duration: 1s}, {rate: 240, duration: 1s}]
workloads:
  - {name: ranking, model: m, candidates: {dist: uniform, min: 10, max: 50}}
  - {name: quiet, model: q, fixed_rate: 20}
`)
	_, dir := runTest(t, context.Background(), sc, ts.tcp)
	plots := []string{ReportTimelineLatency, ReportTimelineRate, ReportLatency, ReportSpectrum, ReportThroughput, ReportCPU}
	checkReportPage(t, b, dir, plots)
	b.shot(t, "report")

	// A search on a server that takes one request at a time for 6 ms (capacity about
	// 160/s): trials pass below the knee and fail above it, then a confirm step.
	var mu sync.Mutex
	serial := startTestServer(t, func(time.Time) time.Duration {
		mu.Lock()
		time.Sleep(6 * time.Millisecond)
		mu.Unlock()
		return 0
	})
	sc = testScenario(t, `
name: report-search
mode: search
arrival: constant
warmup: 150ms
window: 250ms
timeout: 1s
slo: {p99: 100ms}
search: {start: 80, max: 320, factor: 2, bisections: 1, max_windows: 5, stability: 0.3}
workloads: [{model: m}]
`)
	start := time.Now()
	res, dir := runTest(t, context.Background(), sc, serial.tcp)
	t.Logf("search run %v", time.Since(start))
	for _, st := range res.Steps {
		t.Logf("%s %.1f/s: p99 %.2fms %s windows %d drained %.2fs", st.Phase, st.OfferedRPS, st.Latency.P99, st.Verdict, len(st.WindowAchieved), st.DrainS)
	}
	if res.Search == nil {
		t.Fatal("no search result")
	}
	checkReportPage(t, b, dir, append([]string{ReportSearch}, plots...))
	act(t, b, "scroll to the plots", chromedp.Evaluate[bool](`(Array.from(document.querySelectorAll("h2")).find(h => h.textContent === "Plots").scrollIntoView(), true)`))
	b.shot(t, "search")
}
