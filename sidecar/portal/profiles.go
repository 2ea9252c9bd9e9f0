package portal

import (
	"errors"
	"fmt"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/predictd/predictd/loadtest"
	"github.com/valyala/fasthttp"
)

// Load-test profiles (--profiles DIR): the runs the load generator wrote, each a
// directory with result.json. Reports are rendered by loadtest.WriteReport, the
// generator's own report code, from result.json into a directory of the portal's, so a
// run shows as the current code draws it whether or not its directory kept the files.

// run is one profile: its id (the run directory relative to the profiles directory,
// with slashes) and its result.
type run struct {
	ID     string
	Dir    string
	Result *loadtest.Result
	Err    string // result.json did not parse
	// Peak is the highest achieved rate of a step; P99 the p99 of that step.
	Peak, P99 float64
	Steps     int
	// Mod is result.json's modification time when Result was read: a report rendered
	// from another Result is redrawn.
	Mod time.Time
}

// report is a run's rendered report directory.
type report struct {
	dir   string
	mtime time.Time
}

// runsTTL is how long a profiles listing is reused. A report page makes a request for
// each of its files (plots, CSV, histograms), and each must name a listed run; without
// the reuse, every one of them walked the profiles directory and parsed every
// result.json again. A run written meanwhile shows within runsTTL.
const runsTTL = 2 * time.Second

// runs lists the profiles, sorted by id: the listing of the last runsTTL, or a new one.
// The slice is shared; callers only read it.
func (p *Portal) runs() ([]run, error) {
	if p.cfg.Profiles == "" {
		return nil, errors.New("no profiles directory: start predictd with --profiles DIR")
	}
	p.runsMu.Lock()
	defer p.runsMu.Unlock()
	now := p.cfg.Now()
	if p.runsList != nil && now.Sub(p.runsAt) >= 0 && now.Sub(p.runsAt) < runsTTL {
		return p.runsList, nil
	}
	out, err := p.listRuns()
	if err != nil {
		return nil, err
	}
	p.runsList, p.runsAt = out, now
	return out, nil
}

// listRuns walks the profiles directory and reads every result.json.
func (p *Portal) listRuns() ([]run, error) {
	files, err := loadtest.FindResults(p.cfg.Profiles)
	if err != nil {
		return nil, err
	}
	var out []run
	for _, f := range files {
		dir := filepath.Dir(f)
		rel, err := filepath.Rel(p.cfg.Profiles, dir)
		if err != nil {
			continue
		}
		r := run{ID: filepath.ToSlash(rel), Dir: dir}
		if fi, err := os.Stat(f); err == nil {
			r.Mod = fi.ModTime()
		}
		res, err := loadtest.LoadResult(f)
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Result = res
			r.Steps = len(res.Steps)
			for _, st := range res.Steps {
				if st.AchievedRPS > r.Peak {
					r.Peak, r.P99 = st.AchievedRPS, st.Latency.P99
				}
			}
		}
		out = append(out, r)
	}
	if out == nil {
		out = []run{}
	}
	return out, nil
}

// findRun returns the run named id: only ids the listing has, so no path is ever
// built from the query.
func (p *Portal) findRun(id string) (*run, error) {
	runs, err := p.runs()
	if err != nil {
		return nil, err
	}
	for i := range runs {
		if runs[i].ID == id {
			if runs[i].Result == nil {
				return nil, fmt.Errorf("profile %q: %s", id, runs[i].Err)
			}
			return &runs[i], nil
		}
	}
	return nil, fmt.Errorf("no profile %q under the profiles directory", id)
}

type profilesPage struct {
	Nav   string
	Runs  []run
	Error string
}

func (p *Portal) profiles(ctx *fasthttp.RequestCtx) {
	d := profilesPage{Nav: "profiles"}
	runs, err := p.runs()
	if err != nil {
		d.Error = err.Error()
	}
	d.Runs = runs
	p.render(ctx, fasthttp.StatusOK, "profiles", d)
}

type profilePage struct {
	Nav string
	Run *run
}

func (p *Portal) profile(ctx *fasthttp.RequestCtx) {
	r, err := p.findRun(string(ctx.QueryArgs().Peek("id")))
	if err != nil {
		p.fail(ctx, fasthttp.StatusNotFound, err.Error())
		return
	}
	if _, err := p.rendered(r); err != nil {
		p.fail(ctx, fasthttp.StatusInternalServerError, "cannot render the report: "+err.Error())
		return
	}
	p.render(ctx, fasthttp.StatusOK, "profile", profilePage{Nav: "profiles", Run: r})
}

// rendered returns the directory holding r's report, rendering it when result.json is
// newer than the last rendering.
func (p *Portal) rendered(r *run) (string, error) {
	var err error
	p.reportsMu.Lock()
	defer p.reportsMu.Unlock()
	if rep, ok := p.reports[r.ID]; ok && rep.mtime.Equal(r.Mod) {
		return rep.dir, nil
	}
	if p.tmp == "" {
		if p.tmp, err = os.MkdirTemp("", "predictd-portal-reports-"); err != nil {
			return "", err
		}
	}
	dir, err := os.MkdirTemp(p.tmp, "run-")
	if err != nil {
		return "", err
	}
	if err := loadtest.WriteReport(dir, r.Result); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if old, ok := p.reports[r.ID]; ok {
		os.RemoveAll(old.dir)
	}
	p.reports[r.ID] = &report{dir: dir, mtime: r.Mod}
	return dir, nil
}

func (p *Portal) removeReports() error {
	var err error
	if p.tmp != "" {
		err = os.RemoveAll(p.tmp)
		p.tmp = ""
	}
	clear(p.reports)
	return err
}

// reportFile serves /ui/profiles/r/<id>/<file>: a file of the rendered report, else of
// the run's own directory (its cpu.pprof). The report's pages get a policy of their
// own: their inline styles apply, and no script runs.
func (p *Portal) reportFile(ctx *fasthttp.RequestCtx, rest string) {
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		p.fail(ctx, fasthttp.StatusNotFound, "no such file")
		return
	}
	id, name := rest[:i], rest[i+1:]
	r, err := p.findRun(id)
	if err != nil {
		p.fail(ctx, fasthttp.StatusNotFound, err.Error())
		return
	}
	if name == "" {
		name = loadtest.ReportIndex
	}
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		p.fail(ctx, fasthttp.StatusNotFound, "no such file")
		return
	}
	dir, err := p.rendered(r)
	if err != nil {
		p.fail(ctx, fasthttp.StatusInternalServerError, "cannot render the report: "+err.Error())
		return
	}
	data, err := readRegular(filepath.Join(dir, name))
	if err != nil {
		data, err = readRegular(filepath.Join(r.Dir, name))
	}
	if err != nil {
		p.fail(ctx, fasthttp.StatusNotFound, "no such file in the report")
		return
	}
	// img-src data: lets the report's empty icon (<link rel="icon" href="data:,">) load;
	// without an icon link a browser asks for /favicon.ico.
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'")
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".hgrm", ".csv":
		ct = "text/plain; charset=utf-8"
	case "":
		ct = "application/octet-stream"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.SetContentType(ct)
	ctx.SetBody(data)
}

// readRegular reads a regular file, never a FIFO or device a profiles directory might
// hold.
func readRegular(name string) ([]byte, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return os.ReadFile(name)
}

type comparePage struct {
	Nav      string
	Runs     []run
	A, B     *run
	Steps    []stepPair
	Findings []loadtest.Finding
	Error    string
}

// stepPair is the i-th step of each run (nil where a run has fewer).
type stepPair struct {
	Index int
	A, B  *loadtest.StepResult
}

func (p *Portal) compare(ctx *fasthttp.RequestCtx) {
	d := comparePage{Nav: "profiles"}
	runs, err := p.runs()
	if err != nil {
		d.Error = err.Error()
		p.render(ctx, fasthttp.StatusOK, "compare", d)
		return
	}
	d.Runs = runs
	a, b := string(ctx.QueryArgs().Peek("a")), string(ctx.QueryArgs().Peek("b"))
	if a == "" || b == "" {
		d.Error = "choose two profiles"
		p.render(ctx, fasthttp.StatusOK, "compare", d)
		return
	}
	if d.A, err = p.findRun(a); err == nil {
		d.B, err = p.findRun(b)
	}
	if err != nil {
		p.fail(ctx, fasthttp.StatusNotFound, err.Error())
		return
	}
	sa, sb := d.A.Result.Steps, d.B.Result.Steps
	for i := range max(len(sa), len(sb)) {
		sp := stepPair{Index: i + 1}
		if i < len(sa) {
			sp.A = &sa[i]
		}
		if i < len(sb) {
			sp.B = &sb[i]
		}
		d.Steps = append(d.Steps, sp)
	}
	fs, err := loadtest.Compare([]*loadtest.Result{d.A.Result}, []*loadtest.Result{d.B.Result}, loadtest.CompareThresholds{})
	if err != nil {
		d.Error = err.Error()
	}
	d.Findings = fs
	p.render(ctx, fasthttp.StatusOK, "compare", d)
}

// compareSVG draws both runs' p50 and p99 against the offered rate in one plot, with
// the load generator's plotting code.
func (p *Portal) compareSVG(ctx *fasthttp.RequestCtx) {
	a, err := p.findRun(string(ctx.QueryArgs().Peek("a")))
	var b *run
	if err == nil {
		b, err = p.findRun(string(ctx.QueryArgs().Peek("b")))
	}
	if err != nil {
		p.fail(ctx, fasthttp.StatusNotFound, err.Error())
		return
	}
	var series []loadtest.Series
	for _, side := range []struct {
		tag string
		r   *run
	}{{"A", a}, {"B", b}} {
		p50 := loadtest.Series{Name: side.tag + " p50"}
		p99 := loadtest.Series{Name: side.tag + " p99"}
		for _, st := range side.r.Result.Steps {
			if st.Requests == 0 {
				continue
			}
			p50.Points = append(p50.Points, loadtest.Point{X: st.OfferedRPS, Y: st.Latency.P50})
			p99.Points = append(p99.Points, loadtest.Point{X: st.OfferedRPS, Y: st.Latency.P99})
		}
		series = append(series, p50, p99)
	}
	svg := loadtest.PlotSVG("A: "+a.ID+"  B: "+b.ID, "offered rate (requests/s)", "latency (ms, log scale)", series, true)
	ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	ctx.SetContentType("image/svg+xml")
	ctx.SetBodyString(svg)
}
