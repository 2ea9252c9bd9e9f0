package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	if st, _, err := r.target.get("/metrics", 5*time.Second); err == nil && st == 200 {
		r.metrics = true
	}
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
