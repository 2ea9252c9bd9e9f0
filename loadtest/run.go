package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// LimitedLag is the p90 send lag beyond which a step is marked generator-limited: the
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
	// Interleave, when set, is a second target, B, run interleaved with Target (A): the
	// generator sends each request of the schedule to A and the next to B, at twice the
	// scenario's rates, so each side gets the scenario's load over the same windows and
	// the machine's drift falls on both alike. Steps mode only. A's result goes to
	// RunID/a and B's to RunID/b, or to RunID and RunIDB when RunIDB is set, each a run
	// of its own for compare --paired. InterleavePID is B's pid (0: found as for A).
	Interleave    string
	InterleavePID int
	RunIDB        string
}

// workload is a scenario workload ready to send.
type workload struct {
	spec        *Workload
	model       string
	bodies      []Body
	contentType string
	meanCands   float64
	// gaps, for replay with recorded timing, are the recorded seconds after each body;
	// gapRate is their mean rate (1 / mean gap).
	gaps    []float64
	gapRate float64
}

// runner holds one run's state.
type runner struct {
	sc     *Scenario
	cfg    Config
	target *Target
	wls    []*workload
	sem    chan struct{}
	pid    int
	res    *Result
	dir    string
	start  time.Time
	seq    atomic.Int64 // seeds schedulers
	// metrics: the sidecar answers GET /metrics, so store misses are sampled.
	metrics  bool
	inFlight atomic.Int64
	// Side B of an interleaved run (Config.Interleave); targetB is nil otherwise.
	targetB  *Target
	semB     chan struct{} // side B's in-flight cap
	pidB     int
	resB     *Result
	dirB     string
	metricsB bool
	// bodyNotes are the notes on how the bodies were built (replay), which side B's
	// result shares.
	bodyNotes []string

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
	if cfg.Interleave != "" {
		if sc.Mode != "steps" {
			return nil, "", fmt.Errorf("interleave: steps mode only (the scenario's mode is %s)", sc.Mode)
		}
		if len(sc.Hooks) > 0 {
			return nil, "", errors.New("interleave: the scenario has hooks, which would act on one side only")
		}
		if cfg.RunIDB == "" {
			cfg.RunID, cfg.RunIDB = cfg.RunID+"/a", cfg.RunID+"/b"
		}
	}
	t, err := NewTarget(cfg.Target, sc.MaxInFlight)
	if err != nil {
		return nil, "", err
	}
	defer t.Close()
	r := &runner{sc: sc, cfg: cfg, target: t, sem: make(chan struct{}, sc.MaxInFlight), start: start}
	if cfg.Interleave != "" {
		if r.targetB, err = NewTarget(cfg.Interleave, sc.MaxInFlight); err != nil {
			return nil, "", fmt.Errorf("interleave: %w", err)
		}
		r.semB = make(chan struct{}, sc.MaxInFlight)
		defer r.targetB.Close()
	}
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
	if r.targetB != nil {
		if err := r.prepareB(); err != nil {
			return nil, "", err
		}
	}
	r.dir = filepath.Join(cfg.OutDir, sc.Name, cfg.RunID)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, "", err
	}
	if r.targetB != nil {
		r.dirB = filepath.Join(cfg.OutDir, sc.Name, cfg.RunIDB)
		if err := os.MkdirAll(r.dirB, 0o755); err != nil {
			return nil, "", err
		}
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
	case "concurrency":
		runErr = r.runConcurrency(ctx)
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
	if r.resB != nil {
		r.resB.Interrupted, r.resB.EndedAt = r.res.Interrupted, r.res.EndedAt
		if err := WriteResult(r.dirB, r.resB); err != nil {
			return r.res, r.dir, err
		}
		if err := WriteReport(r.dirB, r.resB); err != nil {
			return r.res, r.dir, err
		}
	}
	return r.res, r.dir, runErr
}

// findSidecar finds the pid of the sidecar at addr (pid, if not 0, as given by flag)
// and whether it answers GET /metrics, recording in res where the pid came from, or why
// there is none.
func findSidecar(res *Result, t *Target, addr string, pid int, flag string) (int, bool) {
	if pid != 0 {
		res.Sidecar.PIDSource = flag
	} else if p, err := FindListenerPID(addr); err == nil {
		pid = p
		res.Sidecar.PIDSource = "listening socket in /proc"
	} else {
		res.Notes = append(res.Notes, "sidecar CPU and RSS not measured: "+err.Error())
	}
	if pid != 0 {
		if _, err := ReadProc(pid); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("sidecar CPU and RSS not measured: pid %d: %v", pid, err))
			pid, res.Sidecar.PIDSource = 0, ""
		}
	}
	res.Sidecar.PID = pid
	st, _, err := t.get("/metrics", 5*time.Second)
	return pid, err == nil && st == 200
}

// prepareB readies side B of an interleaved run: its result's header (A's, with B's
// target and sidecar) and its sidecar's pid. B is sent the bodies built for A: it must
// answer and serve the same models (and, where the features came from the model, the
// same features).
func (r *runner) prepareB() error {
	b := *r.res
	b.RunID, b.Target = r.cfg.RunIDB, r.cfg.Interleave
	b.Notes = append([]string(nil), r.bodyNotes...)
	// Neither side is profiled: the profiler's own CPU would fall on one side only.
	const noProfile = "no CPU profile: an interleaved run takes none, so that both sidecars do the same work"
	r.res.Sidecar.ProfileNote = noProfile
	b.Sidecar = Sidecar{Models: r.res.Sidecar.Models, ProfileNote: noProfile}
	b.Interleaved = &Interleaved{Side: "b", OtherTarget: r.cfg.Target, OtherRunID: r.cfg.RunID}
	r.res.Interleaved = &Interleaved{Side: "a", OtherTarget: r.cfg.Interleave, OtherRunID: r.cfg.RunIDB}
	r.resB = &b
	for _, w := range r.wls {
		if w.gaps != nil {
			// Alternating a recorded sequence of gaps would give side a every other gap
			// and side b the ones between: two different arrival patterns.
			return fmt.Errorf("interleave: workload %s replays with timing: recorded; interleaved runs replay on the scenario's arrivals (timing: schedule)", w.spec.Name)
		}
	}
	st, body, err := r.targetB.get("/v1/models", 5*time.Second)
	if err != nil || st != 200 {
		return fmt.Errorf("interleave: GET /v1/models on %s: HTTP %d %v", r.cfg.Interleave, st, err)
	}
	served := modelNames(body)
	for _, w := range r.wls {
		if w.spec.Replay == nil && !slices.Contains(served, w.model) {
			return fmt.Errorf("interleave: workload %s: model %s is not served by %s (it serves %q)", w.spec.Name, w.model, r.cfg.Interleave, served)
		}
	}
	r.pidB, r.metricsB = findSidecar(&b, r.targetB, r.cfg.Interleave, r.cfg.InterleavePID, "--interleave-pid")
	if r.pidB != 0 && r.pidB == r.pid {
		// One process serves both: its CPU cannot be told apart by side.
		note := fmt.Sprintf("sidecar CPU and RSS not measured: both sides are served by pid %d", r.pid)
		r.res.Notes, b.Notes = append(r.res.Notes, note), append(b.Notes, note)
		r.pid, r.pidB = 0, 0
		r.res.Sidecar.PID, r.res.Sidecar.PIDSource, b.Sidecar.PID, b.Sidecar.PIDSource = 0, "", 0, ""
	}
	// Features taken from the model (features: {from_model: true}) are A's: B must
	// list the same.
	for _, w := range r.wls {
		if w.spec.Replay != nil || !w.spec.Features.FromModel {
			continue
		}
		fa, errA := r.target.modelFeatures(w.model)
		fb, errB := r.targetB.modelFeatures(w.model)
		if err := errors.Join(errA, errB); err != nil {
			return fmt.Errorf("interleave: workload %s: %w", w.spec.Name, err)
		}
		if !slices.Equal(fa, fb) {
			return fmt.Errorf("interleave: workload %s: model %s has features %q on %s but %q on %s",
				w.spec.Name, w.model, fa, r.cfg.Target, fb, r.cfg.Interleave)
		}
	}
	return nil
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
		if spec.Replay != nil {
			bodies, gaps, note, err := replayBodies(spec, sc.Protocol)
			if err != nil {
				return fmt.Errorf("workload %s: %w", spec.Name, err)
			}
			if w.model == "auto" {
				w.model = "replayed"
			}
			w.bodies, w.gaps = bodies, gaps
			if len(gaps) > 0 {
				var sum float64
				for _, g := range gaps {
					sum += g
				}
				w.gapRate = float64(len(gaps)) / sum
			}
			var n int
			for _, b := range bodies {
				n += b.Candidates
			}
			w.meanCands = float64(n) / float64(len(bodies))
			r.res.Notes = append(r.res.Notes, note)
			r.bodyNotes = append(r.bodyNotes, note)
			r.wls = append(r.wls, w)
			r.res.Sidecar.Models = appendUnique(r.res.Sidecar.Models, w.model)
			continue
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
	r.pid, r.metrics = findSidecar(r.res, r.target, r.cfg.Target, r.cfg.SidecarPID, "--sidecar-pid")
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
