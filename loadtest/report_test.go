package loadtest

import (
	"encoding/xml"
	"io"
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
