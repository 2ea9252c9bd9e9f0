package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/admission"
	"github.com/predictd/predictd/sidecar/predlog"
	"github.com/predictd/predictd/sidecar/shadow"
	"go.opentelemetry.io/otel/metric"
)

// production holds the behaviours of docs/production.md that span versions: the
// admission limiter (admit.go), the shadow mirror and the prediction loggers (this
// file). The registry attaches shadows and loggers to versions at every reload (attach);
// the request path reads a version's attachments with one atomic load.
type production struct {
	lim       *admission.Limiter // nil: admission control off
	queueWait time.Duration      // the limiter's MaxQueueWait
	mirror    *shadow.Mirror
	logDir    string // "": prediction logs off
	bgShadows bool   // score shadows on the C++ core's lowest-priority threads (Config.BackgroundAfter > 0)
	// share is the CPU budget of the shadows of models without their own
	// (Config.ShadowCPUShare); nil: none.
	share *shadow.Budget
	// budgets are the models' own CPU budgets (model.yaml shadow.cpu_share), kept across
	// reloads so that a reload neither refills nor empties them. Touched only by attach.
	budgets map[string]*shadow.Budget
	meter   metric.Meter
	log     *slog.Logger

	mu   sync.Mutex // guards logs, gens and closed
	logs map[string]*modelLog
	// gens counts the loggers opened per model. A replaced logger closes only after the
	// reload that replaced it, while the new one already writes: the second and later
	// loggers of a model take the file prefix MODEL.gN so that both, each numbering
	// its files from 1, can never create the same file name.
	gens map[string]int
	// closed is set by close: no logger is opened afterwards.
	closed bool
}

// modelLog is one model's prediction logger and the settings it was opened with.
type modelLog struct {
	spec LogSpec
	lg   *predlog.Logger
}

// attachments are what the request path needs beyond the model itself: the shadows
// mirrored with each request and the prediction log. They are rebuilt when a reload
// changes them and retired (shadows stopped, shadow versions released) when replaced.
type attachments struct {
	shadows []*shadow.Shadow
	targets []*version        // the shadow versions, one reference each
	tlogs   []*predlog.Logger // the shadows' logs, as attached
	errs    []string          // shadows that could not be attached
	logger  *predlog.Logger
	logErr  string
	budget  *shadow.Budget // the shadows' CPU budget; nil: none
	retired atomic.Bool
}

// shadowCoverageBucket is the width of the shadows' coverage buckets; 0: shadow's default
// (one minute). Tests shorten it.
var shadowCoverageBucket time.Duration

// shadowBackgroundWait bounds how long a shadow's batch waits for a lowest-priority thread:
// past it the batch is dropped and counted as dropped for want of CPU (dropped_no_cpu), so a
// CPU kept busy by the primaries starves shadows visibly and a shutdown never waits on one
// for long.
const shadowBackgroundWait = 5 * time.Second

func newProduction(cfg *Config, meter metric.Meter) (*production, error) {
	p := &production{logDir: cfg.PredictionLogDir, meter: meter, log: cfg.Logger, logs: map[string]*modelLog{},
		gens: map[string]int{}, bgShadows: cfg.BackgroundAfter > 0}
	if cfg.AdmissionCapacity > 0 {
		perSlot := cfg.AdmissionQueuePerSlot
		if perSlot <= 0 {
			perSlot = 4 // admission.Config's default
		}
		maxPending := cfg.AdmissionMaxPending
		if maxPending <= 0 {
			// Every slot and queue place of every bulkhead: below it, one flooded model's
			// own bulkhead (slots × (1 + perSlot)) could fill the process-wide bound and
			// get the other models 503s, which is what bulkheads are there to prevent.
			maxPending = cfg.AdmissionCapacity * (1 + perSlot)
		}
		lim, err := admission.New(admission.Config{Capacity: cfg.AdmissionCapacity, MaxQueueWait: cfg.AdmissionMaxQueueWait,
			MaxPending: maxPending, QueuePerSlot: perSlot, Meter: meter})
		if err != nil {
			return nil, fmt.Errorf("admission: %w", err)
		}
		p.lim = lim
		p.queueWait = cfg.AdmissionMaxQueueWait
		if p.queueWait <= 0 {
			p.queueWait = 100 * time.Millisecond // admission.Config's default
		}
	}
	p.budgets = map[string]*shadow.Budget{}
	if cfg.ShadowCPUShare != 0 {
		b, err := shadow.NewBudget(cfg.ShadowCPUShare)
		if err != nil {
			if p.lim != nil {
				p.lim.Close()
			}
			return nil, fmt.Errorf("shadows: %w", err)
		}
		p.share = b
	}
	m, err := shadow.New(shadow.Config{Workers: cfg.ShadowWorkers, Meter: meter, CoverageBucket: shadowCoverageBucket})
	if err != nil {
		if p.lim != nil {
			p.lim.Close()
		}
		return nil, fmt.Errorf("shadows: %w", err)
	}
	p.mirror = m
	return p, nil
}

// logger returns model's logger for spec, opening (or, when spec changed, replacing)
// it; a nil spec closes the model's log. A replaced logger is returned as old for the
// caller to close once no request can reach it.
func (p *production) logger(model string, spec *LogSpec) (lg, old *predlog.Logger, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ml := p.logs[model]
	if spec == nil {
		if ml != nil {
			delete(p.logs, model)
			return nil, ml.lg, nil
		}
		return nil, nil, nil
	}
	if p.logDir == "" {
		return nil, nil, errors.New("log: set --prediction-log-dir to write prediction logs")
	}
	if p.closed {
		return nil, nil, errors.New("log: the server is shutting down")
	}
	if ml != nil {
		if ml.spec == *spec {
			return ml.lg, nil, nil
		}
		old = ml.lg
		delete(p.logs, model)
	}
	p.gens[model]++
	prefix := model
	if g := p.gens[model]; g > 1 {
		prefix = fmt.Sprintf("%s.g%d", model, g)
	}
	lg, err = predlog.New(predlog.Config{Dir: p.logDir, Prefix: prefix, Rate: spec.Rate, QueueSize: spec.QueueSize,
		MaxFileBytes: spec.MaxFileBytes, MaxFileAge: spec.MaxFileAge, Meter: p.meter})
	if err != nil {
		return nil, old, fmt.Errorf("log: %w", err)
	}
	p.logs[model] = &modelLog{spec: *spec, lg: lg}
	return lg, old, nil
}

// attach computes the attachments of every version of next, reusing a version's
// current ones when nothing they depend on changed. It runs in Reload before next is
// published and returns what to retire after it is; the admission weights are set here
// too, so a new model has its bulkhead before its first request.
//
// A model has one prediction log, configured by its serving version's log section;
// every version of the model writes to it (records name their version).
func (r *Registry) attach(next *snapshot) (retire []*attachments, stale []*predlog.Logger) {
	p := r.prod
	if p == nil {
		return nil, nil
	}
	if p.lim != nil {
		weights := map[string]float64{}
		for _, name := range next.names {
			if v := next.models[name].latest(); v != nil {
				w := v.manifest.Weight
				if w == 0 {
					w = 1
				}
				weights[name] = w
			}
		}
		if err := p.lim.SetWeights(weights); err != nil {
			panic("BUG: admission weights were validated with the manifest: " + err.Error())
		}
	}
	type modelLogState struct {
		lg  *predlog.Logger
		err string
	}
	logs := map[string]modelLogState{}
	for _, name := range next.names {
		var spec *LogSpec
		if v := next.models[name].latest(); v != nil {
			spec = v.manifest.Log
		}
		lg, old, err := p.logger(name, spec)
		if old != nil {
			stale = append(stale, old)
		}
		st := modelLogState{lg: lg}
		if err != nil {
			st.err = err.Error()
		}
		logs[name] = st
	}
	// Models gone from the repository: their loggers are closed after the swap, like
	// replaced ones (nothing above visits them).
	p.mu.Lock()
	for name, ml := range p.logs {
		if _, ok := logs[name]; !ok {
			delete(p.logs, name)
			stale = append(stale, ml.lg)
		}
	}
	p.mu.Unlock()
	for _, name := range next.names {
		budget := p.budget(name, next.models[name].latest())
		for _, v := range next.models[name].versions {
			old := v.attach.Load()
			a := &attachments{logger: logs[name].lg, logErr: logs[name].err, budget: budget}
			if a.logErr != "" && (old == nil || old.logErr != a.logErr) {
				r.log.Error("prediction log", "model", v.model, "version", v.version, "err", a.logErr)
			}
			var (
				targets []*version
				specs   []ShadowSpec
				tlogs   []*predlog.Logger
			)
			for _, sp := range v.manifest.Shadows {
				t, err := resolveShadow(next, sp)
				if err != nil {
					a.errs = append(a.errs, err.Error())
					continue
				}
				targets, specs = append(targets, t), append(specs, sp)
				tlogs = append(tlogs, logs[t.model].lg)
			}
			if old != nil && old.logger == a.logger && old.logErr == a.logErr && old.budget == a.budget && slices.Equal(old.errs, a.errs) &&
				slices.Equal(old.targets, targets) && slices.Equal(old.tlogs, tlogs) {
				continue // unchanged
			}
			for i, t := range targets {
				sc := shadow.ShadowConfig{Name: t.model, Version: t.version,
					Primary: v.model, PrimaryVersion: v.version,
					PrimaryPredictor: named{v.pred, v.names, v.catNames}, Predictor: named{t.pred, t.names, t.catNames},
					Rate: specs[i].Rate, TopK: specs[i].TopK, Log: tlogs[i], Budget: budget}
				if p.bgShadows && t.bg != nil {
					// Shadows are off the latency path by definition: beyond their CPU budget (or
					// without one) they take, at the lowest priority, only the CPU the primaries leave.
					bp := t.bg
					sc.Background = func(rows []float64, nrows int, out []float64, raw bool) (time.Duration, error) {
						return bp.PredictF64Background(rows, nrows, out, raw, shadowBackgroundWait)
					}
				}
				s, err := p.mirror.Add(sc)
				if err != nil {
					a.errs = append(a.errs, err.Error())
					continue
				}
				if !t.acquire() {
					panic("BUG: a shadow version of the new snapshot already retired")
				}
				a.shadows = append(a.shadows, s)
				a.targets = append(a.targets, t)
				a.tlogs = append(a.tlogs, tlogs[i])
			}
			for _, e := range a.errs {
				if old == nil || !slices.Contains(old.errs, e) {
					r.log.Error("shadow not attached", "model", v.model, "version", v.version, "err", e)
				}
			}
			v.attach.Store(a)
			if old != nil {
				retire = append(retire, old)
			}
		}
	}
	for name := range p.budgets {
		if _, ok := next.models[name]; !ok {
			delete(p.budgets, name) // a model gone from the repository
		}
	}
	return retire, stale
}

// budget returns the CPU budget of model's shadows: its own when its serving version
// sets shadow.cpu_share (created, or its share updated), else the process-wide one.
func (p *production) budget(model string, serving *version) *shadow.Budget {
	var share float64
	if serving != nil && serving.manifest.Shadow != nil {
		share = serving.manifest.Shadow.CPUShare
	}
	if share == 0 {
		delete(p.budgets, model)
		return p.share
	}
	if b := p.budgets[model]; b != nil {
		if err := b.SetShare(share); err != nil {
			panic("BUG: shadow.cpu_share was validated with the manifest: " + err.Error())
		}
		return b
	}
	b, err := shadow.NewBudget(share)
	if err != nil {
		panic("BUG: shadow.cpu_share was validated with the manifest: " + err.Error())
	}
	p.budgets[model] = b
	return b
}

// resolveShadow finds a shadow's version in the snapshot being published.
func resolveShadow(next *snapshot, sp ShadowSpec) (*version, error) {
	m := next.models[sp.Model]
	if m == nil {
		return nil, fmt.Errorf("shadow model %q is not in the repository", sp.Model)
	}
	var t *version
	if sp.Version == "" {
		t = m.latest()
	} else {
		t = m.find([]byte(sp.Version))
	}
	if t == nil {
		if sp.Version == "" {
			return nil, fmt.Errorf("shadow model %q has no loaded version", sp.Model)
		}
		return nil, fmt.Errorf("shadow %s version %q is not loaded", sp.Model, sp.Version)
	}
	return t, nil
}

// retire stops a's shadows and releases their versions, once. Shadow.Retire waits for
// the shadow's queued jobs, so it runs after the snapshot that replaced a is published.
// a's slices stay as they are: a request still holding the replaced version reads them
// (production.after), and a retired shadow drops what it is sent.
func (a *attachments) retire() {
	if !a.retired.CompareAndSwap(false, true) {
		return
	}
	for i, s := range a.shadows {
		s.Retire()
		a.targets[i].release()
	}
}

// closeLogs closes loggers that were replaced, after the reload that replaced them.
func closeLogs(lgs []*predlog.Logger, log *slog.Logger) {
	for _, lg := range lgs {
		if err := lg.Close(); err != nil {
			log.Error("closing a replaced prediction log", "err", err)
		}
	}
}

// close stops the shadows' workers (finishing queued jobs), then closes every logger
// (writing out every accepted record). It runs after the HTTP server stopped.
func (p *production) close() {
	p.mirror.Close()
	p.mu.Lock()
	p.closed = true
	logs := p.logs
	p.logs = map[string]*modelLog{}
	p.mu.Unlock()
	for model, ml := range logs {
		if err := ml.lg.Close(); err != nil {
			p.log.Error("closing the prediction log", "model", model, "err", err)
		}
	}
}

// named presents a predictor with the version's feature names (model.yaml may rename
// the model file's), so shadows map columns by the names requests use.
type named struct {
	engine.Predictor
	names    []string
	catNames [][]string // the version's category labels, model.yaml's included
}

func (n named) FeatureNames() []string { return n.names }

func (n named) Info() engine.Info {
	info := n.Predictor.Info()
	info.CategoryNames = n.catNames
	return info
}

// Exchange-side work of the request path: mirror to shadows, log. Runs on the request
// goroutine after the response is encoded; both calls copy and never block.
func (p *production) after(v *version, x *Exchange) {
	a := v.attach.Load()
	if a == nil {
		return
	}
	if len(a.shadows) > 0 {
		req := shadow.Request{Rows: x.rows64, RowsF32: x.rows32, NumRows: x.NumRows(), NumFeatures: x.ncols,
			Scores: x.Scores, Outputs: x.Width, Raw: x.Raw}
		if x.rows32 != nil {
			req.Rows = nil
		}
		if len(x.RequestID) > 0 {
			req.RequestID = string(x.RequestID)
		}
		p.mirror.Submit(a.shadows, req)
	}
	if a.logger == nil {
		return
	}
	rec := a.logger.Sample()
	if rec == nil {
		return
	}
	rec.Model, rec.Version, rec.FeatureNames = v.model, v.version, v.names
	if len(x.RequestID) > 0 {
		rec.SetRequestID(string(x.RequestID))
	}
	if x.rows32 != nil {
		rec.SetRowsF32(x.rows32, x.NumRows(), x.ncols)
	} else {
		rec.SetRows(x.rows64, x.NumRows(), x.ncols)
	}
	rec.SetPredictions(x.Scores, x.Width)
	if !x.req.dense {
		for i := range x.req.cands {
			rec.AddIDBytes(x.req.id(i))
		}
	}
	a.logger.Log(rec)
}
