package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// LateThreshold is how far past its intended time a request may be sent before it counts
// as a late send (the generator fell behind). It is also the send lag forgiven in every
// latency: timers of an idle Go process fire up to ~1ms late (the runtime's netpoller
// sleeps in whole milliseconds), which is the generator's error, not the server's.
const LateThreshold = time.Millisecond

// Histogram range: 1µs to 10 minutes at 3 significant digits.
const (
	histMinUs = 1
	histMaxUs = 600_000_000
	histSig   = 3
)

// LimitedLag is the p99 send lag beyond which a step is marked generator-limited: the
// scheduler was so far behind that the generator, not the sidecar, shaped the load. Sends
// a little late (timer granularity is about 1ms when the process idles, more on a busy
// machine) still measure correctly, because latency counts from the intended time.
const LimitedLag = 10 * time.Millisecond

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUs, histMaxUs, histSig) }

// Config configures Run; cmd/predictd-loadtest maps its flags onto it.
type Config struct {
	Target string // "HOST:PORT" or "unix:PATH"; required
	// OutDir is the profile root; the run writes OutDir/<scenario>/<RunID>/. Default
	// "profiles".
	OutDir string
	RunID  string // default: the start time, UTC, as 20060102T150405Z
	Label  string // machine label recorded in result.json
	// SidecarPID is the sidecar's pid for CPU and RSS; 0 finds the process listening on
	// Target through /proc.
	SidecarPID int
	// Progress receives a live progress line; nil for none. ProgressTTY rewrites one line
	// with \r instead of printing a line per window.
	Progress    io.Writer
	ProgressTTY bool
	// ScenarioYAML is recorded in result.json.
	ScenarioYAML string
}

// workload is a scenario workload ready to send.
type workload struct {
	spec        *Workload
	model       string
	bodies      []Body
	contentType string
	meanCands   float64
}

// runner holds one run's state.
type runner struct {
	sc       *Scenario
	cfg      Config
	target   *Target
	wls      []*workload
	sem      chan struct{}
	pid      int
	res      *Result
	dir      string
	start    time.Time
	seq      atomic.Int64 // seeds schedulers
	inFlight atomic.Int64

	progMu   sync.Mutex
	progText string
}

// Run executes scenario sc against cfg.Target and writes the profile directory. It
// returns the result and the profile directory. When ctx is cancelled (Ctrl-C) it stops
// scheduling, waits for requests in flight (bounded by the scenario timeout), and still
// writes what it measured, with Interrupted set.
func Run(ctx context.Context, sc *Scenario, cfg Config) (*Result, string, error) {
	if cfg.Target == "" {
		return nil, "", errors.New("no target: want HOST:PORT or unix:PATH")
	}
	if cfg.OutDir == "" {
		cfg.OutDir = "profiles"
	}
	start := time.Now()
	if cfg.RunID == "" {
		cfg.RunID = start.UTC().Format("20060102T150405Z")
	}
	t, err := NewTarget(cfg.Target, sc.MaxInFlight)
	if err != nil {
		return nil, "", err
	}
	defer t.Close()
	r := &runner{sc: sc, cfg: cfg, target: t, sem: make(chan struct{}, sc.MaxInFlight), start: start}
	r.res = &Result{
		Schema: ResultSchema, Scenario: sc.Name, Description: sc.Description, RunID: cfg.RunID,
		StartedAt: start.UTC(), Target: cfg.Target, Protocol: sc.Protocol, Arrival: sc.Arrival,
		Mode: sc.Mode, Machine: DescribeMachine(cfg.Label),
		SLO: SLOJSON{P99Ms: ms(sc.SLO.P99.D()), MaxErrorRate: sc.SLO.MaxErrorRate},
		Generator: GeneratorInfo{
			MaxInFlight: sc.MaxInFlight, LateThresholdMs: ms(LateThreshold), LimitedLagMs: ms(LimitedLag),
			WindowS: sc.Window.D().Seconds(), WarmupS: sc.Warmup.D().Seconds(), TimeoutS: sc.Timeout.D().Seconds(),
		},
		ScenarioYAML: cfg.ScenarioYAML,
	}
	if err := r.prepare(); err != nil {
		return nil, "", err
	}
	r.dir = filepath.Join(cfg.OutDir, sc.Name, cfg.RunID)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, "", err
	}

	runDone := make(chan struct{})
	hooksDone := r.startHooks(ctx, runDone)
	var runErr error
	switch sc.Mode {
	case "steps":
		runErr = r.runSteps(ctx)
	case "ramp":
		runErr = r.runRamp(ctx)
	case "search":
		runErr = r.runSearch(ctx)
	}
	close(runDone)
	r.res.Hooks = <-hooksDone
	if ctx.Err() != nil {
		r.res.Interrupted = true
	}
	r.res.EndedAt = time.Now().UTC()
	r.clearProgress()
	if err := WriteResult(r.dir, r.res); err != nil {
		return r.res, r.dir, err
	}
	if err := WriteReport(r.dir, r.res); err != nil {
		return r.res, r.dir, err
	}
	return r.res, r.dir, runErr
}

// prepare resolves models and features, builds the bodies and finds the sidecar.
func (r *runner) prepare() error {
	sc := r.sc
	var firstModel string
	for i := range sc.Workloads {
		spec := &sc.Workloads[i]
		w := &workload{spec: spec, model: spec.Model, contentType: contentTypeProtobuf}
		if sc.Protocol == "json" {
			w.contentType = contentTypeJSON
		}
		if w.model == "auto" {
			if firstModel == "" {
				m, err := r.target.firstModel()
				if err != nil {
					return fmt.Errorf("workload %s: model auto: %w", spec.Name, err)
				}
				firstModel = m
			}
			w.model = firstModel
		}
		feats := spec.featureNames()
		if spec.Features.FromModel {
			f, err := r.target.modelFeatures(w.model)
			if err != nil {
				return fmt.Errorf("workload %s: features from_model: %w", spec.Name, err)
			}
			feats = f
		}
		resolved := *spec
		resolved.Model = w.model
		w.bodies = BuildBodies(&resolved, feats, sc.Protocol)
		var n int
		for _, b := range w.bodies {
			n += b.Candidates
		}
		w.meanCands = float64(n) / float64(len(w.bodies))
		r.wls = append(r.wls, w)
		r.res.Sidecar.Models = appendUnique(r.res.Sidecar.Models, w.model)
	}
	r.pid = r.cfg.SidecarPID
	if r.pid != 0 {
		r.res.Sidecar.PIDSource = "--sidecar-pid"
	} else if pid, err := FindListenerPID(r.cfg.Target); err == nil {
		r.pid = pid
		r.res.Sidecar.PIDSource = "listening socket in /proc"
	} else {
		r.res.Notes = append(r.res.Notes, "sidecar CPU and RSS not measured: "+err.Error())
	}
	if r.pid != 0 {
		if _, err := ReadProc(r.pid); err != nil {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("sidecar CPU and RSS not measured: pid %d: %v", r.pid, err))
			r.pid = 0
		}
	}
	r.res.Sidecar.PID = r.pid
	if st, _, err := r.target.get("/debug/pprof/", 5*time.Second); err == nil && st == 200 {
		r.res.Sidecar.PprofEnabled = true
	} else {
		r.res.Sidecar.ProfileNote = "no CPU profile: /debug/pprof/ is not enabled on the sidecar (run predictd serve with --pprof)"
	}
	return nil
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// wlRate is workload w's rate within a step of total shared rate total.
func (w *workload) rate(total float64) float64 {
	if w.spec.FixedRate > 0 {
		return w.spec.FixedRate
	}
	return w.spec.Share * total
}

// phase is one continuous stretch of scheduled load: a step, a ramp or a search trial.
type phase struct {
	r            *runner
	name         string
	start        time.Time // schedule start
	measureStart time.Time // start + warmup
	window       time.Duration
	nWin         int
	wls          []*phaseWL

	// Sidecar samples at window boundaries (index k is measureStart + k*window).
	cpuAt []float64
	rssAt []int64
	// profileAt, if non-zero, is when to start the CPU profile.
	profileAt   time.Time
	profileSecs int
	profileDone chan struct{}

	stopOnce sync.Once
	stop     chan struct{}
	stopAt   time.Time // when stop was called (early stop or cancel); zero if none
	keep     int       // windows to report after an early stop by check; 0 if none
	wg       sync.WaitGroup
}

// phaseWL is one workload's measurements within a phase.
type phaseWL struct {
	w    *workload
	rate func(el time.Duration) float64 // rate at elapsed time since phase start

	mu   sync.Mutex
	win  []*winStats // by intended-time window
	lag  *hdrhistogram.Histogram
	late int64
	// by completion / send time window
	compl  []atomic.Int64
	sent   []atomic.Int64
	predOK []atomic.Int64
	waits  atomic.Int64
}

type winStats struct {
	hist      *hdrhistogram.Histogram
	ok        int64
	errs      map[string]int64
	degraded  int64
	late      int64
	scheduled atomic.Int64
	done      atomic.Int64
}

func (r *runner) newPhase(name string, warmup, measured time.Duration) *phase {
	n := int(math.Ceil(float64(measured) / float64(r.sc.Window.D())))
	if n < 1 {
		n = 1
	}
	ph := &phase{r: r, name: name, window: r.sc.Window.D(), nWin: n, stop: make(chan struct{})}
	ph.start = time.Now().Add(5 * time.Millisecond) // schedulers start together
	ph.measureStart = ph.start.Add(warmup)
	ph.cpuAt = make([]float64, n+1)
	ph.rssAt = make([]int64, n+1)
	for _, w := range r.wls {
		pw := &phaseWL{w: w, win: make([]*winStats, n), lag: newHist(),
			compl: make([]atomic.Int64, n), sent: make([]atomic.Int64, n), predOK: make([]atomic.Int64, n)}
		for i := range pw.win {
			pw.win[i] = &winStats{hist: newHist(), errs: map[string]int64{}}
		}
		ph.wls = append(ph.wls, pw)
	}
	return ph
}

// idx is the window holding t: -1 in the warmup, nWin past the end.
func (ph *phase) idx(t time.Time) int {
	d := t.Sub(ph.measureStart)
	if d < 0 {
		return -1
	}
	i := int(d / ph.window)
	if i > ph.nWin {
		i = ph.nWin
	}
	return i
}

// halt cuts the phase short (an early stop or an interrupt); stopAt records when.
func (ph *phase) halt() {
	ph.stopOnce.Do(func() {
		ph.stopAt = time.Now()
		close(ph.stop)
	})
}

// finish ends a phase that ran its full length.
func (ph *phase) finish() {
	ph.stopOnce.Do(func() { close(ph.stop) })
}

// run schedules the phase for its warmup plus nWin whole windows and waits until every
// request has finished. check, if not nil, is called after each complete window with the
// count of complete windows and stops the phase when it returns true.
func (ph *phase) run(ctx context.Context, check func(complete int) bool) {
	end := ph.measureStart.Add(time.Duration(ph.nWin) * ph.window)
	dur := end.Sub(ph.start)
	var sched sync.WaitGroup
	for _, pw := range ph.wls {
		sched.Add(1)
		go func() {
			defer sched.Done()
			ph.schedule(ctx, pw, dur)
		}()
	}
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		ph.monitor(ctx, check)
	}()
	sched.Wait()
	// Hold the phase to its full length, so the last window and its sidecar sample are
	// whole even when the last arrival came early.
	if d := time.Until(end); d > 0 {
		select {
		case <-time.After(d):
		case <-ph.stop:
		case <-ctx.Done():
			ph.halt()
		}
	}
	ph.wg.Wait()
	if ctx.Err() != nil {
		ph.halt()
	}
	ph.finish()
	<-monDone
	if ph.profileDone != nil {
		<-ph.profileDone
	}
}

// schedule fires pw's requests at their intended times: an open loop, so a slow answer
// never delays the next send. Latency is measured from the intended time.
func (ph *phase) schedule(ctx context.Context, pw *phaseWL, dur time.Duration) {
	r := ph.r
	rng := rand.New(rand.NewSource(pw.w.spec.Seed*7919 + r.seq.Add(1)))
	poisson := r.sc.Arrival == "poisson"
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var el time.Duration
	if poisson {
		if rate := pw.rate(0); rate > 0 {
			el = time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		}
	}
	bodies := pw.w.bodies
	for i := 0; el < dur; i++ {
		rate := pw.rate(el)
		if rate <= 0 {
			// Nothing to send now (a ramp from zero): look again shortly.
			el += time.Millisecond
			i--
			continue
		}
		intended := ph.start.Add(el)
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
		}
		select {
		case r.sem <- struct{}{}:
		default:
			pw.waits.Add(1)
			select {
			case r.sem <- struct{}{}:
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		wi := ph.idx(intended)
		if wi >= 0 && wi < ph.nWin {
			pw.win[wi].scheduled.Add(1)
		}
		body := bodies[i%len(bodies)]
		ph.wg.Add(1)
		r.inFlight.Add(1)
		go ph.send(pw, intended, wi, body)
		gap := 1 / rate
		if poisson {
			gap = rng.ExpFloat64() / rate
		}
		el += time.Duration(gap * float64(time.Second))
	}
}

func (ph *phase) send(pw *phaseWL, intended time.Time, wi int, body Body) {
	r := ph.r
	defer func() {
		<-r.sem
		r.inFlight.Add(-1)
		ph.wg.Done()
	}()
	sendAt := time.Now()
	out := r.target.predict(body.Data, pw.w.contentType, r.sc.Timeout.D())
	end := time.Now()
	lag := sendAt.Sub(intended)
	// Forgive up to LateThreshold of send lag: that much is the timer's own granularity
	// (an idle Go process wakes up to ~1ms late), not the server's doing. Larger lags
	// (the generator fell behind, or waited for max_in_flight) count in full beyond it.
	lat := end.Sub(intended) - min(max(lag, 0), LateThreshold)
	if si := ph.idx(sendAt); si >= 0 && si < ph.nWin {
		pw.sent[si].Add(1)
	}
	if ci := ph.idx(end); ci >= 0 && ci < ph.nWin {
		pw.compl[ci].Add(1)
		if out.kind == "" {
			pw.predOK[ci].Add(int64(body.Candidates))
		}
	}
	if wi < 0 || wi >= ph.nWin {
		return // warmup
	}
	ws := pw.win[wi]
	pw.mu.Lock()
	_ = ws.hist.RecordValue(max(lat.Microseconds(), histMinUs))
	_ = pw.lag.RecordValue(max(lag.Microseconds(), histMinUs))
	if lag > LateThreshold {
		ws.late++
	}
	if out.kind == "" {
		ws.ok++
		if out.degraded {
			ws.degraded++
		}
	} else {
		ws.errs[out.kind]++
	}
	pw.mu.Unlock()
	ws.done.Add(1)
}

// monitor samples the sidecar at window boundaries, prints progress, starts the CPU
// profile when due, and runs check on complete windows.
func (ph *phase) monitor(ctx context.Context, check func(int) bool) {
	r := ph.r
	sample := func(k int) {
		if r.pid == 0 {
			return
		}
		if s, err := ReadProc(r.pid); err == nil {
			ph.cpuAt[k] = s.CPUSeconds
			ph.rssAt[k] = s.RSSBytes
		}
	}
	next := 0 // next boundary to sample
	complete := 0
	lastProgress := time.Time{}
	for {
		now := time.Now()
		for next <= ph.nWin && !now.Before(ph.measureStart.Add(time.Duration(next)*ph.window)) {
			sample(next)
			next++
		}
		if !ph.profileAt.IsZero() && !now.Before(ph.profileAt) && ph.profileDone == nil {
			ph.profileDone = make(chan struct{})
			go func() {
				defer close(ph.profileDone)
				r.takeProfile(ctx, ph.profileSecs)
			}()
		}
		// A window is complete when its time is over and all its requests answered.
		for complete < ph.nWin && complete < next-1 {
			c := 0
			for _, pw := range ph.wls {
				if pw.win[complete].done.Load() != pw.win[complete].scheduled.Load() {
					c = 1
				}
			}
			if c != 0 {
				break
			}
			complete++
			if check != nil && ph.keep == 0 && check(complete) {
				ph.keep = complete
				ph.halt()
			}
		}
		if now.Sub(lastProgress) >= time.Second {
			lastProgress = now
			r.progress(ph)
		}
		select {
		case <-ph.stop:
			// Sample the boundary reached so far for a cut-short phase.
			if next <= ph.nWin {
				sample(next)
			}
			return
		case <-ctx.Done():
			ph.halt()
		default:
		}
		wait := 100 * time.Millisecond
		if next <= ph.nWin {
			if d := time.Until(ph.measureStart.Add(time.Duration(next) * ph.window)); d < wait {
				wait = max(d, 0)
			}
		}
		select {
		case <-time.After(wait):
		case <-ph.stop:
		case <-ctx.Done():
		}
	}
}

func (r *runner) progress(ph *phase) {
	if r.cfg.Progress == nil {
		return
	}
	var sent, ok, errs, late int64
	var p99 float64
	for _, pw := range ph.wls {
		for i := range pw.sent {
			sent += pw.sent[i].Load()
		}
		pw.mu.Lock()
		for i, ws := range pw.win {
			ok += ws.ok
			late += ws.late
			for _, n := range ws.errs {
				errs += n
			}
			if ws.hist.TotalCount() > 0 && i < ph.nWin {
				p99 = ms(time.Duration(ws.hist.ValueAtQuantile(99)) * time.Microsecond)
			}
		}
		pw.mu.Unlock()
	}
	var offered float64
	el := time.Since(ph.start)
	for _, pw := range ph.wls {
		offered += pw.rate(el)
	}
	line := fmt.Sprintf("%s %5.0fs | offered %.0f/s | sent %d ok %d err %d | in-flight %d | p99 %.2fms | late %d",
		ph.name, time.Since(r.start).Seconds(), offered, sent, ok, errs, r.inFlight.Load(), p99, late)
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.cfg.ProgressTTY {
		fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(r.cfg.Progress, line)
	}
	r.progText = line
}

func (r *runner) clearProgress() {
	if r.cfg.Progress != nil && r.cfg.ProgressTTY && r.progText != "" {
		fmt.Fprintln(r.cfg.Progress)
	}
}

// takeProfile fetches a CPU profile of the sidecar into cpu.pprof. Cancelling ctx (an
// interrupted run) abandons it.
func (r *runner) takeProfile(ctx context.Context, secs int) {
	if !r.res.Sidecar.PprofEnabled {
		return
	}
	status, body, err := r.target.getContext(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), time.Duration(secs+15)*time.Second)
	switch {
	case ctx.Err() != nil:
		r.res.Sidecar.ProfileNote = "no CPU profile: the run was interrupted while profiling"
	case err != nil:
		r.res.Sidecar.ProfileNote = "CPU profile failed: " + err.Error()
	case status != 200 || len(body) == 0:
		r.res.Sidecar.ProfileNote = fmt.Sprintf("CPU profile failed: HTTP %d: %.200s", status, body)
	default:
		if err := os.WriteFile(filepath.Join(r.dir, "cpu.pprof"), body, 0o644); err != nil {
			r.res.Sidecar.ProfileNote = "CPU profile not written: " + err.Error()
			return
		}
		r.res.Sidecar.CPUProfile = "cpu.pprof"
		r.res.Sidecar.ProfileNote = fmt.Sprintf("CPU profile of %ds during step %d", secs, r.res.Sidecar.CPUProfileStep)
	}
}

// profileSeconds is how long to profile a step with the given measured time.
func (r *runner) profileSeconds(measured time.Duration) int {
	if r.sc.ProfileSeconds > 0 {
		return r.sc.ProfileSeconds
	}
	return max(1, min(30, int(measured/time.Second)))
}

// windowsUsed is how many windows a finished phase reports: all of them, or those begun
// before an early stop.
func (ph *phase) windowsUsed() (n int, measured time.Duration) {
	n = ph.nWin
	if ph.keep > 0 {
		return ph.keep, time.Duration(ph.keep) * ph.window
	}
	if !ph.stopAt.IsZero() {
		d := ph.stopAt.Sub(ph.measureStart)
		if d <= 0 {
			return 0, 0
		}
		n = min(ph.nWin, int(math.Ceil(float64(d)/float64(ph.window))))
		if full := d.Truncate(ph.window); full < time.Duration(n)*ph.window {
			return n, min(d, time.Duration(n)*ph.window)
		}
	}
	return n, time.Duration(n) * ph.window
}

// stats summarizes windows [from, to) of the phase for the given workloads.
func (ph *phase) stats(pws []*phaseWL, from, to int, measured time.Duration, offered float64) Stats {
	s := Stats{OfferedRPS: offered, Errors: map[string]int64{}}
	h := newHist()
	lag := newHist()
	var compl, sent, pred int64
	for _, pw := range pws {
		pw.mu.Lock()
		for i := from; i < to; i++ {
			ws := pw.win[i]
			h.Merge(ws.hist)
			s.OK += ws.ok
			s.Degraded += ws.degraded
			s.LateSends += ws.late
			for k, n := range ws.errs {
				s.Errors[k] += n
			}
			compl += pw.compl[i].Load()
			sent += pw.sent[i].Load()
			pred += pw.predOK[i].Load()
		}
		lag.Merge(pw.lag)
		pw.mu.Unlock()
		s.InFlightWaits += pw.waits.Load()
	}
	s.Requests = h.TotalCount()
	var nerr int64
	for _, n := range s.Errors {
		nerr += n
	}
	if len(s.Errors) == 0 {
		s.Errors = nil
	}
	if s.Requests > 0 {
		s.ErrorRate = float64(nerr) / float64(s.Requests)
	}
	if sec := measured.Seconds(); sec > 0 {
		s.AchievedRPS = float64(compl) / sec
		s.SentRPS = float64(sent) / sec
		s.PredictionsPerSec = float64(pred) / sec
	}
	us := func(v int64) float64 { return float64(v) / 1000 }
	if h.TotalCount() > 0 {
		s.Latency = Latency{
			P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)),
			P99: us(h.ValueAtQuantile(99)), P999: us(h.ValueAtQuantile(99.9)),
			Max: us(h.Max()), Mean: h.Mean() / 1000,
		}
	}
	if lag.TotalCount() > 0 {
		s.SendLagP99Ms = us(lag.ValueAtQuantile(99))
		s.SendLagMaxMs = us(lag.Max())
	}
	// Per-window p99 and achieved rate, for the stability rule.
	for i := from; i < to; i++ {
		wh := newHist()
		var c int64
		for _, pw := range pws {
			pw.mu.Lock()
			wh.Merge(pw.win[i].hist)
			pw.mu.Unlock()
			c += pw.compl[i].Load()
		}
		s.WindowP99Ms = append(s.WindowP99Ms, us(wh.ValueAtQuantile(99)))
		s.WindowMeanMs = append(s.WindowMeanMs, wh.Mean()/1000)
		s.WindowAchieved = append(s.WindowAchieved, float64(c)/ph.window.Seconds())
	}
	return s
}

// Stable applies the stability rule: the last three values lie within tol of their mean,
// and they are not a climb (rising window after window by more than tol of their mean in
// all: a queue that grows every window, whose values a loose tol would still accept).
func Stable(vals []float64, tol float64) bool {
	if len(vals) < 3 {
		return false
	}
	last := vals[len(vals)-3:]
	mean := (last[0] + last[1] + last[2]) / 3
	for _, v := range last {
		if math.Abs(v-mean) > tol*mean {
			return false
		}
	}
	if last[0] < last[1] && last[1] < last[2] && last[2]-last[0] > tol*mean {
		return false
	}
	return true
}

// stabilityTol is the tolerance of the stability rule outside search mode.
func (r *runner) stabilityTol() float64 {
	if r.sc.Search != nil {
		return r.sc.Search.Stability
	}
	return 0.10
}

// stepResult builds a StepResult from windows [from, to) of a finished phase.
func (r *runner) stepResult(ph *phase, phaseName string, from, to int, measured time.Duration, offered func(*phaseWL) float64) StepResult {
	var total float64
	for _, pw := range ph.wls {
		total += offered(pw)
	}
	st := StepResult{Index: len(r.res.Steps), Phase: phaseName, MeasuredS: measured.Seconds()}
	st.Stats = ph.stats(ph.wls, from, to, measured, total)
	tol := r.stabilityTol()
	st.Stable = Stable(st.WindowMeanMs, tol) && Stable(st.WindowAchieved, tol)
	st.SLOMet = st.Requests > 0 && st.Latency.P99 <= ms(r.sc.SLO.P99.D()) && st.ErrorRate <= r.sc.SLO.MaxErrorRate
	st.GeneratorLimited = st.InFlightWaits > 0 || st.SendLagP99Ms > ms(LimitedLag)
	if r.pid != 0 && to > from {
		cpu := ph.cpuAt[to] - ph.cpuAt[from]
		if cpu >= 0 && ph.cpuAt[to] > 0 {
			st.SidecarCPUSeconds = cpu
			if measured > 0 {
				st.SidecarCores = cpu / measured.Seconds()
			}
			if pred := st.PredictionsPerSec * measured.Seconds(); pred > 0 {
				st.CPUSecondsPer1kPredictions = cpu / (pred / 1000)
			}
		}
		for k := from; k <= to; k++ {
			st.RSSBytes = max(st.RSSBytes, ph.rssAt[k])
		}
	}
	if len(ph.wls) > 1 {
		for _, pw := range ph.wls {
			st.Workloads = append(st.Workloads, WorkloadStats{
				Name: pw.w.spec.Name, Model: pw.w.model,
				Stats: ph.stats([]*phaseWL{pw}, from, to, measured, offered(pw)),
			})
		}
	}
	return st
}

// runSteps runs each step in turn; the CPU profile is taken at the highest rate.
func (r *runner) runSteps(ctx context.Context) error {
	peak := 0
	for i, st := range r.sc.Steps {
		if st.Rate > r.sc.Steps[peak].Rate {
			peak = i
		}
	}
	for i, st := range r.sc.Steps {
		if ctx.Err() != nil {
			break
		}
		warm := r.sc.Warmup.D()
		measured := st.Duration.D() - warm
		ph := r.newPhase(fmt.Sprintf("step %d/%d", i+1, len(r.sc.Steps)), warm, measured)
		rate := st.Rate
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(rate) }
		}
		if i == peak {
			r.planProfile(ph, measured)
		}
		ph.run(ctx, nil)
		n, m := ph.windowsUsed()
		if n == 0 {
			break
		}
		r.res.Steps = append(r.res.Steps, r.stepResult(ph, "step", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(rate) }))
	}
	return nil
}

func (r *runner) planProfile(ph *phase, measured time.Duration) {
	if !r.res.Sidecar.PprofEnabled {
		return
	}
	ph.profileSecs = r.profileSeconds(measured)
	ph.profileAt = ph.measureStart
	r.res.Sidecar.CPUProfileStep = len(r.res.Steps)
}

// runRamp runs one linear ramp; each window becomes a step.
func (r *runner) runRamp(ctx context.Context) error {
	rp := r.sc.Ramp
	warm := r.sc.Warmup.D()
	dur := rp.Duration.D()
	ph := r.newPhase("ramp", warm, dur)
	total := func(el time.Duration) float64 {
		if el < warm {
			return rp.From
		}
		f := float64(el-warm) / float64(dur)
		return rp.From + (rp.To-rp.From)*min(f, 1)
	}
	for _, pw := range ph.wls {
		w := pw.w
		pw.rate = func(el time.Duration) float64 { return w.rate(total(el)) }
	}
	if r.res.Sidecar.PprofEnabled {
		secs := r.profileSeconds(dur / 3)
		ph.profileSecs = secs
		// Profile where the rate peaks: the end of the ramp, or its start when it falls.
		ph.profileAt = ph.measureStart
		if rp.To >= rp.From {
			ph.profileAt = ph.measureStart.Add(max(0, dur-time.Duration(secs)*time.Second))
		}
	}
	ph.run(ctx, nil)
	n, _ := ph.windowsUsed()
	peakStep, peakRate := 0, -1.0
	for k := 0; k < n; k++ {
		mid := warm + ph.window*time.Duration(k) + ph.window/2
		st := r.stepResult(ph, "ramp", k, k+1, ph.window, func(pw *phaseWL) float64 { return pw.rate(mid) })
		if st.OfferedRPS > peakRate {
			peakStep, peakRate = st.Index, st.OfferedRPS
		}
		st.Stable = false // one window cannot show stability
		r.res.Steps = append(r.res.Steps, st)
	}
	r.res.Sidecar.CPUProfileStep = peakStep
	return nil
}

// runSearch finds the highest rate that holds the SLO, then confirms it with a profiled
// step.
func (r *runner) runSearch(ctx context.Context) error {
	s := r.sc.Search
	trial := func(rate float64) (StepResult, bool) {
		warm := r.sc.Warmup.D()
		measured := time.Duration(s.MaxWindows) * r.sc.Window.D()
		ph := r.newPhase(fmt.Sprintf("search %.0f/s", rate), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(rate) }
		}
		slo := ms(r.sc.SLO.P99.D())
		ph.run(ctx, func(complete int) bool {
			if complete < 3 {
				return false
			}
			st := ph.stats(ph.wls, 0, complete, time.Duration(complete)*ph.window, 0)
			// Stop early once stable, or once the SLO is clearly broken (every window over).
			if Stable(st.WindowMeanMs, s.Stability) && Stable(st.WindowAchieved, s.Stability) {
				return true
			}
			last := st.WindowP99Ms[len(st.WindowP99Ms)-3:]
			return last[0] > 2*slo && last[1] > 2*slo && last[2] > 2*slo
		})
		n, m := ph.windowsUsed()
		st := r.stepResult(ph, "search", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(rate) })
		r.res.Steps = append(r.res.Steps, st)
		return st, st.Stable && st.SLOMet
	}
	// settle follows a failed trial: an overloaded target may still hold a backlog of
	// requests the generator gave up on, which would fail the next trial whatever its
	// rate. One request timeout lets it drain (or time out) first.
	settle := func() {
		select {
		case <-time.After(r.sc.Timeout.D()):
		case <-ctx.Done():
		}
	}
	var good, bad float64
	trials := 0
	for rate := s.Start; rate <= s.Max*(1+1e-9) && ctx.Err() == nil; rate *= s.Factor {
		_, ok := trial(rate)
		trials++
		if !ok {
			bad = rate
			settle()
			break
		}
		good = rate
	}
	if bad > 0 {
		for i := 0; i < s.Bisections && ctx.Err() == nil; i++ {
			mid := (good + bad) / 2
			if bad-mid < 1 {
				break
			}
			_, ok := trial(mid)
			trials++
			if ok {
				good = mid
			} else {
				bad = mid
				settle()
			}
		}
	}
	var cands float64
	for _, w := range r.wls {
		if w.spec.FixedRate == 0 {
			cands += w.spec.Share * w.meanCands
		}
	}
	r.res.Search = &SearchResult{MaxRate: good, MaxPredictionsPerSec: good * cands, Trials: trials}
	if good > 0 && ctx.Err() == nil {
		warm := r.sc.Warmup.D()
		measured := 5 * r.sc.Window.D()
		ph := r.newPhase(fmt.Sprintf("confirm %.0f/s", good), warm, measured)
		for _, pw := range ph.wls {
			w := pw.w
			pw.rate = func(time.Duration) float64 { return w.rate(good) }
		}
		r.planProfile(ph, measured)
		ph.run(ctx, nil)
		if n, m := ph.windowsUsed(); n > 0 {
			r.res.Steps = append(r.res.Steps, r.stepResult(ph, "confirm", 0, n, m, func(pw *phaseWL) float64 { return pw.w.rate(good) }))
		}
	}
	return nil
}

// startHooks runs the scenario's hooks at their offsets; the channel yields their events
// once all have run. Hooks not yet due when the run ends (runDone) are skipped.
func (r *runner) startHooks(ctx context.Context, runDone <-chan struct{}) <-chan []HookEvent {
	out := make(chan []HookEvent, 1)
	if len(r.sc.Hooks) == 0 {
		out <- nil
		return out
	}
	hooks := append([]Hook(nil), r.sc.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].At < hooks[j].At })
	end := r.start.Add(r.plannedDuration())
	go func() {
		var evs []HookEvent
		var log strings.Builder
		for _, h := range hooks {
			at := r.start.Add(h.At.D())
			if at.After(end) {
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: after the planned end of the run"})
				continue
			}
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: run interrupted"})
				continue
			case <-runDone:
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: the run ended first"})
				continue
			}
			ev := runHook(ctx, h, r.cfg.Target, r.dir)
			ev.AtS = time.Since(r.start).Seconds()
			fmt.Fprintf(&log, "[%.2fs] $ %s\n%s(exit %d)\n", ev.AtS, ev.Command, ev.Output, ev.ExitCode)
			evs = append(evs, ev)
		}
		_ = os.WriteFile(filepath.Join(r.dir, "hooks.log"), []byte(log.String()), 0o644)
		out <- evs
	}()
	return out
}

// plannedDuration is the run's scheduled length (search runs have no fixed length: their
// upper bound is used).
func (r *runner) plannedDuration() time.Duration {
	sc := r.sc
	switch sc.Mode {
	case "steps":
		var d time.Duration
		for _, st := range sc.Steps {
			d += st.Duration.D()
		}
		return d
	case "ramp":
		return sc.Warmup.D() + sc.Ramp.Duration.D()
	}
	return 24 * time.Hour
}

// hookOutputLimit bounds the output kept per hook in result.json.
const hookOutputLimit = 4 << 10

// runHook runs one hook with sh -c, at most one minute.
func runHook(ctx context.Context, h Hook, target, dir string) HookEvent {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", h.Run)
	cmd.Env = append(os.Environ(), "LOADTEST_TARGET="+target, "LOADTEST_OUT="+dir)
	out, err := cmd.CombinedOutput()
	ev := HookEvent{Command: h.Run}
	if len(out) > hookOutputLimit {
		out = out[len(out)-hookOutputLimit:]
	}
	ev.Output = string(out)
	if err != nil {
		ev.Error = err.Error()
		ev.ExitCode = -1
		if ee, ok := err.(*exec.ExitError); ok {
			ev.ExitCode = ee.ExitCode()
		}
	}
	return ev
}
