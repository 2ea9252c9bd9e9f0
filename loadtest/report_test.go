package loadtest

import (
	"encoding/xml"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// svgPoints parses an SVG and counts its data markers (circles of class "pt").
func svgPoints(t testing.TB, data []byte) int {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	n := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "circle" {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && a.Value == "pt" {
					n++
				}
			}
		}
	}
}

// checkReport checks a profile directory renders: files present and non-empty, plots
// well-formed with a data point per step and series.
func checkReport(t testing.TB, dir string, steps int) {
	t.Helper()
	for _, f := range []string{"result.json", ReportIndex, ReportLatency, ReportCPU, ReportThroughput} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(data) == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
			continue
		}
		switch f {
		case ReportLatency: // p50, p90, p99, p99.9
			if n := svgPoints(t, data); n < 4*steps {
				t.Errorf("%s: %d points, want >= %d", f, n, 4*steps)
			}
		case ReportCPU:
			if n := svgPoints(t, data); n < steps {
				t.Errorf("%s: %d points, want >= %d", f, n, steps)
			}
		case ReportThroughput:
			if n := svgPoints(t, data); n < 2*steps {
				t.Errorf("%s: %d points, want >= %d", f, n, 2*steps)
			}
		case ReportIndex:
			for _, want := range []string{ReportLatency, ReportCPU, ReportThroughput, "result.json"} {
				if !strings.Contains(string(data), want) {
					t.Errorf("index.html does not reference %s", want)
				}
			}
		}
	}
}

func TestPlotSVG(t *testing.T) {
	f := func(series []Series, logY bool, want int) {
		t.Helper()
		svg := PlotSVG(`a <b> & "c"`, "x", "y", series, logY)
		if n := svgPoints(t, []byte(svg)); n != want {
			t.Errorf("%d points, want %d", n, want)
		}
	}
	f(nil, false, 0)
	f([]Series{{Name: "s", Points: []Point{{1, 2}, {3, 4}}}}, false, 2)
	f([]Series{{Name: "a", Points: []Point{{0, 0}}}, {Name: "b<", Points: []Point{{1e6, 1e-3}, {2, 3}}}}, false, 3)
	// Log scale leaves out values it cannot place (zero), keeps the rest.
	f([]Series{{Name: "a", Points: []Point{{0, 0}}}, {Name: "b", Points: []Point{{1e6, 1e-3}, {2, 3}, {3, 3}}}}, true, 3)
	f([]Series{{Name: "one", Points: []Point{{5, 7}}}}, true, 1)
}

func TestNiceTicks(t *testing.T) {
	f := func(v float64, wantLast float64) {
		t.Helper()
		ts := niceTicks(v)
		if ts[0] != 0 || ts[len(ts)-1] != wantLast {
			t.Errorf("niceTicks(%v) = %v, want last %v", v, ts, wantLast)
		}
	}
	f(0, 1)
	f(1, 1)
	f(7, 8)
	f(99, 100)
	f(1234, 1500)
	f(0.031, 0.04)
}

// svgCount counts the elements of an SVG with the given class.
func svgCount(t testing.TB, data string, class string) int {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(data))
	n := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && a.Value == class {
					n++
				}
			}
		}
	}
}

// TestReportFiles: the timeline has a point per window and series and a line per step
// boundary and the SLO; the spectrum a curve per step; each step a CSV row per window and
// an .hgrm whose percentiles match the step's; the search plot a note per trial.
func TestReportFiles(t *testing.T) {
	n := defaultNoise()
	r := synthRun(rand.New(rand.NewSource(5)), n)
	r.SLO = SLOJSON{P99Ms: 20, MaxErrorRate: 0.01}
	r.Generator.WindowS = 1
	r.Steps[0].Phase, r.Steps[1].Phase, r.Steps[2].Phase = "search", "search", "confirm"
	r.Steps[1].Verdict = VerdictFail
	r.Search = &SearchResult{MaxRate: 400, Trials: 2, ConfirmAttempts: 1}
	dir := t.TempDir()
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	windows := 3 * n.windows
	tl := read(ReportTimelineLatency)
	if got := svgCount(t, tl, "pt"); got != 2*windows {
		t.Errorf("timeline latency: %d points, want %d", got, 2*windows)
	}
	if svgCount(t, tl, "vline") != 3 || svgCount(t, tl, "hline") != 1 {
		t.Errorf("timeline latency: want 3 step lines and the SLO line")
	}
	if got := svgCount(t, read(ReportTimelineRate), "pt"); got != 3*windows {
		t.Errorf("timeline rate: %d points, want %d", got, 3*windows)
	}
	// 1,000 requests reach the 99.9th percentile (x = 1000): 0..99.9 is 8 points + max.
	if got := svgCount(t, read(ReportSpectrum), "pt"); got < 3*9 {
		t.Errorf("spectrum: %d points", got)
	}
	if got := svgCount(t, read(ReportSearch), "note"); got != 3 || !strings.Contains(read(ReportSearch), "2 fail") {
		t.Errorf("search plot: %d notes", got)
	}
	csv := strings.Split(strings.TrimSpace(read(stepFile(1, "csv"))), "\n")
	if len(csv) != n.windows+1 || !strings.HasPrefix(csv[0], "window,start_s,requests,p50_ms,p95_ms,p99_ms") || !strings.HasPrefix(csv[1], "0,0.000,200,") {
		t.Errorf("csv:\n%s", strings.Join(csv, "\n"))
	}
	hgrm := read(stepFile(2, "hgrm"))
	h := stepHist(&r.Steps[2])
	if !strings.Contains(hgrm, "Value\tPercentile\tTotalCount\t1/(1-Percentile)") || !strings.Contains(hgrm, fmt.Sprintf("%.3f", float64(h.ValueAtQuantile(50))/1000)) {
		t.Errorf("hgrm:\n%.600s", hgrm)
	}
	if h.TotalCount() != r.Steps[2].Requests {
		t.Errorf("step histogram has %d requests, the step %d", h.TotalCount(), r.Steps[2].Requests)
	}
	idx := read(ReportIndex)
	for _, want := range []string{"p95 ms", stepFile(0, "hgrm"), stepFile(2, "csv"), ReportTimelineLatency, ReportSpectrum, ReportSearch,
		"Highest rate whose confirm step held the SLO", "lower bound"} {
		if !strings.Contains(idx, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
}
