// Package sidecar is predictd's prediction server: a model registry with hot reload and
// a fasthttp API that scores batches of candidates.
//
// The request path (docs/architecture.md): with admission control, the model's slot
// when the body names its model first (peekModel; otherwise after resolving) → decode
// the body (JSON or protobuf, into a pooled request) → resolve the model and version (an
// atomic snapshot of the registry, with a reference held until the response is written)
// → assemble a row-major matrix (names → columns through a map built at load; context
// features broadcast; missing = NaN; feature-store columns filled by a FeatureStore) →
// score (engine.Predictor, in blocks, checking the deadline) → encode (append-style, into
// the pooled buffer) → the after-response hook.
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/admission"
	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
)

// Config configures a Server. Zero fields take the defaults in their comments.
type Config struct {
	// ModelDir is the model repository, DIR/<name>/<version>/model.yaml. It is watched
	// for changes when Watch is set.
	ModelDir string
	// ModelFS replaces ModelDir when set (the embedded demo repository); it is not
	// watched.
	ModelFS fs.FS
	// Watch reloads the repository when files under ModelDir change.
	Watch bool
	// ReloadDebounce waits for a burst of file events to settle; default 500ms.
	ReloadDebounce time.Duration

	// MaxBodyBytes limits a request body; default 64 MiB.
	MaxBodyBytes int
	// MaxCandidates limits the rows of one request; default 100,000.
	MaxCandidates int
	// MaxCells limits the values of one request: the decoded feature values, context
	// features, entity keys and dense values, and the rows × features of the matrix
	// built for the model (8 bytes each, 12 for float32 models); default 64M
	// (DefaultMaxCells: a 512 MiB float64 matrix). Over it: 413.
	MaxCells int
	// DefaultDeadline bounds a request without an X-Deadline-Ms header; default 1s;
	// negative: no deadline.
	DefaultDeadline time.Duration
	// Threads is how many goroutines score one large batch; default 1.
	Threads int
	// BackgroundAfter: a request whose expected scoring time (its rows × the time per row
	// its model version took recently) is at least this long is scored on the C++ core's
	// background threads, which run at the lowest CPU priority, nice 19
	// (engine.StartBackground): a long batch then uses mostly the CPU that short requests
	// leave and yields the core to them.
	// Default 1ms; negative: every request is scored on its own thread.
	BackgroundAfter time.Duration
	// ReadTimeout bounds reading one request (a slow client gets 408); default 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response; default 10s.
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections; default 60s.
	IdleTimeout time.Duration
	// Pprof serves /debug/pprof/.
	Pprof bool

	// FeatureStore serves store-backed features; nil: models that use them fail to load.
	FeatureStore FeatureStore
	// AfterResponse, when set, is called after each successful prediction is encoded
	// (shadow scoring, prediction logs). It runs on the request goroutine and must not
	// block: copy what it keeps and hand it to another goroutine.
	AfterResponse func(*Exchange)
	// Logger receives load, reload and server errors; default slog.Default().
	Logger *slog.Logger

	// AdmissionCapacity is how many predictions are scored at once, shared by the models
	// in proportion to their model.yaml weight (sidecar/admission); 0 turns admission
	// control off.
	AdmissionCapacity int
	// AdmissionMaxQueueWait is the longest a request waits for its model's slot before a
	// 429; default 100ms.
	AdmissionMaxQueueWait time.Duration
	// AdmissionMaxPending bounds admitted plus waiting requests process-wide; past it
	// requests get 503 at once. Default AdmissionCapacity × (1 + AdmissionQueuePerSlot):
	// every bulkhead's slots and queue, so a single flooded model cannot reach it.
	AdmissionMaxPending int
	// AdmissionQueuePerSlot bounds each model's queue at this many waiters per slot;
	// default 4.
	AdmissionQueuePerSlot int
	// ShadowWorkers is how many shadow scoring jobs run at once (the shadow budget);
	// default 1.
	ShadowWorkers int
	// PredictionLogDir is where models with a log section in model.yaml write their
	// prediction logs; empty: such models log nothing (the error shows in /v1/models).
	PredictionLogDir string
	// Tracer records a span tree per request (sidecar/tracing); nil: no tracing. The
	// caller shuts it down after Shutdown.
	Tracer *tracing.Provider
}

// Defaults for Config's zero fields.
const (
	DefaultMaxBodyBytes    = 64 << 20
	DefaultMaxCandidates   = 100_000
	DefaultMaxCells        = 64 << 20
	DefaultDeadline        = time.Second
	DefaultBackgroundAfter = time.Millisecond
	DefaultReloadDebounce  = 500 * time.Millisecond
	defaultReadTimeout     = 10 * time.Second
	defaultWriteTimeout    = 10 * time.Second
	defaultIdleTimeout     = 60 * time.Second
	maxDeadlineHeaderMilli = 24 * 3600 * 1000
)

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxCandidates <= 0 {
		c.MaxCandidates = DefaultMaxCandidates
	}
	if c.MaxCells <= 0 {
		c.MaxCells = DefaultMaxCells
	}
	if c.DefaultDeadline == 0 {
		c.DefaultDeadline = DefaultDeadline
	}
	if c.Threads <= 0 {
		c.Threads = 1
	}
	if c.BackgroundAfter == 0 {
		c.BackgroundAfter = DefaultBackgroundAfter
	}
	if c.ReloadDebounce <= 0 {
		c.ReloadDebounce = DefaultReloadDebounce
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Tracer == nil {
		c.Tracer = disabledTracer
	}
}

// disabledTracer is the Provider of a server without tracing: every helper is a no-op.
var disabledTracer = func() *tracing.Provider {
	tp, err := tracing.Setup(tracing.Config{})
	if err != nil {
		panic("BUG: a disabled tracer: " + err.Error())
	}
	return tp
}()

// Server is the prediction sidecar: a Registry and its HTTP API.
type Server struct {
	cfg   Config
	reg   *Registry
	met   *metrics
	prod  *production
	tp    *tracing.Provider
	http  *fasthttp.Server
	pprof fasthttp.RequestHandler

	watchStop chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once
}

// New builds a Server; it loads no model until Reload (or the watcher) runs, and serves
// nothing until Serve.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	fsys := cfg.ModelFS
	desc := "(embedded)"
	if fsys == nil {
		if cfg.ModelDir == "" {
			return nil, errors.New("no model repository: set ModelDir or ModelFS")
		}
		fi, err := os.Stat(cfg.ModelDir)
		if err != nil {
			return nil, fmt.Errorf("model repository: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("model repository %s is not a directory", cfg.ModelDir)
		}
		fsys, desc = os.DirFS(cfg.ModelDir), cfg.ModelDir
	}
	if cfg.BackgroundAfter > 0 {
		// One background thread per P: the bulkheads bound how many batches are scored at once.
		prio, ok := engine.StartBackground(runtime.GOMAXPROCS(0))
		if ok {
			cfg.Logger.Info("background scoring", "after", cfg.BackgroundAfter, "threads", runtime.GOMAXPROCS(0), "priority", prio)
		} else {
			cfg.BackgroundAfter = -1 // no C++ core: every request on its own thread
		}
	}
	met, err := newMetrics()
	if err != nil {
		return nil, err
	}
	prod, err := newProduction(&cfg, met.provider.Meter("github.com/predictd/predictd/sidecar"))
	if err != nil {
		met.provider.Shutdown(context.Background())
		return nil, err
	}
	s := &Server{cfg: cfg, met: met, prod: prod, tp: cfg.Tracer}
	s.reg = NewRegistry(fsys, desc, cfg.Threads, cfg.FeatureStore, cfg.Logger, met)
	s.reg.prod = prod
	s.http = &fasthttp.Server{
		Handler:            s.handle,
		ErrorHandler:       s.handleConnError,
		Name:               "predictd",
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		CloseOnShutdown:    true,
		NoDefaultDate:      true,
		Logger:             fasthttpLogger{cfg.Logger},
	}
	if cfg.Pprof {
		s.pprof = pprofhandler.PprofHandler
	}
	if cfg.Watch && cfg.ModelFS == nil {
		if err := s.startWatch(); err != nil {
			prod.close()
			return nil, err
		}
	}
	return s, nil
}

// Meter returns the meter whose instruments /metrics exports, for components built
// after the server (the feature store) to record on.
func (s *Server) Meter() metric.Meter {
	return s.met.provider.Meter("github.com/predictd/predictd/sidecar")
}

// SetFeatureStore replaces Config.FeatureStore, for a store built after the server (to
// record on its Meter). Call it before the first Reload; versions loaded earlier keep
// their bindings.
func (s *Server) SetFeatureStore(st FeatureStore) {
	s.reg.reloadMu.Lock()
	defer s.reg.reloadMu.Unlock()
	s.reg.store = st
}

// Registry returns the server's model registry.
func (s *Server) Registry() *Registry { return s.reg }

// Reload rescans the repository now (see Registry.Reload).
func (s *Server) Reload() ReloadResult { return s.reg.Reload() }

// Serve answers connections from ln until Shutdown; call it once per listener (TCP and
// a Unix socket may share one Server).
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// Shutdown stops accepting connections, waits for in-flight requests to finish (or ctx
// to expire), then closes as Close does: shadows finish their queued jobs, prediction
// logs write out every accepted record, and every model retires.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.ShutdownWithContext(ctx)
	s.Close()
	return err
}

// Close stops the watcher, stops the shadows (finishing their queued jobs), closes the
// prediction logs (writing out every accepted record) and retires every model once its
// in-flight requests finish. It does not stop Serve; use Shutdown for that.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.watchStop != nil {
			close(s.watchStop)
			<-s.watchDone
		}
		s.prod.close()
		s.reg.Close()
		if s.prod.lim != nil {
			s.prod.lim.Close()
		}
		s.met.provider.Shutdown(context.Background())
	})
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Warn(fmt.Sprintf(format, args...), "component", "http")
}

// handle routes a request: a plain switch, no router.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	defer func() {
		// fasthttp does not recover handler panics: one would end the process and every
		// model with it. Answer 500, log the stack and count it, on every route.
		if p := recover(); p != nil {
			path := string(ctx.Path())
			s.cfg.Logger.Error("BUG: panic serving a request", "path", path, "panic", p, "stack", string(debug.Stack()))
			s.met.panics.Add(bg, 1, metric.WithAttributes(attribute.String("path", routeName(path))))
			ctx.Response.Reset()
			s.writeErrorCode(ctx, fasthttp.StatusInternalServerError, "internal", fmt.Sprintf("internal error: %v", p))
		}
	}()
	path := ctx.Path()
	switch string(path) {
	case "/v1/predict":
		if !ctx.IsPost() {
			s.methodNotAllowed(ctx, "POST")
			return
		}
		s.predict(ctx)
	case "/v1/models":
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, "GET")
			return
		}
		s.writeJSON(ctx, fasthttp.StatusOK, s.reg.Models())
	case "/v1/admin/reload":
		if !ctx.IsPost() {
			s.methodNotAllowed(ctx, "POST")
			return
		}
		res := s.reg.Reload()
		s.writeJSON(ctx, fasthttp.StatusOK, reloadJSON(res))
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case "/readyz":
		ctx.SetContentType("text/plain; charset=utf-8")
		if s.reg.Ready() {
			ctx.SetBodyString("ready\n")
		} else {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready: no model version is loaded yet\n")
		}
	case "/metrics":
		s.met.handler(ctx)
	default:
		if name, ok := strings.CutPrefix(string(path), "/v1/models/"); ok && name != "" && !strings.Contains(name, "/") {
			if !ctx.IsGet() {
				s.methodNotAllowed(ctx, "GET")
				return
			}
			st, ok := s.reg.Model(name)
			if !ok {
				s.writeError(ctx, fmt.Errorf("%w %q (GET /v1/models lists the loaded ones)", ErrUnknownModel, name))
				return
			}
			s.writeJSON(ctx, fasthttp.StatusOK, st)
			return
		}
		if s.pprof != nil && strings.HasPrefix(string(path), "/debug/pprof/") {
			s.pprof(ctx)
			return
		}
		s.writeErrorCode(ctx, fasthttp.StatusNotFound, "not_found",
			fmt.Sprintf("no endpoint %s (see docs/api.md)", path))
	}
}

// routeName bounds the label values of predictd_panics_total: the known routes, else
// "other".
func routeName(path string) string {
	switch {
	case path == "/v1/predict", path == "/v1/models", path == "/v1/admin/reload", path == "/healthz",
		path == "/readyz", path == "/metrics":
		return path
	case strings.HasPrefix(path, "/v1/models/"):
		return "/v1/models/{name}"
	case strings.HasPrefix(path, "/debug/pprof/"):
		return "/debug/pprof/"
	}
	return "other"
}

// predict serves POST /v1/predict with a pooled request. See the package comment for
// the request path.
func (s *Server) predict(ctx *fasthttp.RequestCtx) {
	req := getRequest()
	s.predictWith(ctx, req)
	// Not reached when predictWith panics (handle recovers): the request's buffers may
	// be mid-update then, so they are dropped rather than pooled.
	putRequest(req)
}

func (s *Server) predictWith(ctx *fasthttp.RequestCtx, req *request) {
	start := time.Now()
	tp := s.tp
	tctx := bg
	if tp.Enabled() {
		tctx = tp.Extract(tctx, headerCarrier{&ctx.Request.Header})
	}
	tctx, span := tp.Predict(tctx, "", "")
	defer span.End()
	fail := func(v *version, err error) {
		s.fail(ctx, v, err)
		if tp.Enabled() {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}

	proto, err := requestIsProto(ctx)
	if err != nil {
		fail(nil, err)
		return
	}
	deadline, err := s.deadline(ctx, start)
	if err != nil {
		fail(nil, err)
		return
	}
	// The body is ours until the handler returns; the JSON decoder unescapes in place.
	body := ctx.Request.Body()
	// Admission before decoding when the body names its model first (peekModel): a
	// flooded model's rejections then cost no decoding, and its bulkhead bounds the
	// decoding of its admitted requests too. Otherwise admission follows decoding. The
	// slot is released after the after-response step, before the version reference.
	var held *admission.Bulkhead
	var v *version
	defer func() {
		if held != nil {
			held.Release()
		}
		if v != nil {
			v.release()
		}
	}()
	peeked, _ := peekModel(body, proto)
	if held, err = s.prod.admitEarly(peeked, deadline); err != nil {
		fail(nil, err)
		return
	}
	dspan := tp.Decode(tctx)
	lim := decodeLimits{rows: s.cfg.MaxCandidates, cells: s.cfg.MaxCells}
	if proto {
		err = decodeProto(req, body, lim)
	} else {
		err = decodeJSON(req, body, lim)
	}
	tracing.EndWithError(dspan, err)
	if err != nil {
		fail(nil, err)
		return
	}
	if v, err = s.reg.acquire(req.model, req.version); err != nil {
		fail(nil, err)
		return
	}
	if tp.Enabled() {
		span.SetAttributes(tracing.AttrModel.String(v.model), tracing.AttrModelVersion.String(v.version),
			tracing.AttrRows.Int(req.numRows()))
	}
	// Admission after decoding: for a body that did not name its model first, or named
	// another model than the decoded one (a later duplicate model field wins).
	if held == nil || held.Model() != v.model {
		if held != nil {
			held.Release()
			held = nil
		}
		if held, err = s.prod.admit(v, deadline); err != nil {
			fail(v, err)
			return
		}
	}

	m64, err := req.matrix(v, s.cfg.MaxCells)
	if err != nil {
		fail(v, err)
		return
	}
	if v.binding != nil {
		q := StoreQuery{req: req, NRows: req.numRows(), NCols: v.nfeat, F64: m64}
		fspan := tp.FeaturesFetch(tctx, bindingSource(v.binding))
		fctx, cancel := context.WithDeadline(tctx, deadline)
		err = v.binding.Fill(fctx, &q)
		cancel()
		tracing.EndWithError(fspan, err)
		if err != nil {
			fail(v, fmt.Errorf("%w: %w", errFeatureStore, err))
			return
		}
	}
	if err := req.apply(v, m64, deadline); err != nil {
		fail(v, err)
		return
	}
	m32 := req.narrow(v, m64)
	raw := v.raw
	switch req.output {
	case outputRaw:
		raw = true
	case outputTransformed:
		raw = false
	}
	sspan := tp.Score(tctx, v.backend, req.numRows())
	out, width, cpu, err := req.score(v, m64, m32, raw, deadline, s.cfg.BackgroundAfter)
	if cpu >= 0 {
		s.met.background.Add(bg, 1, v.addOpts...)
		s.met.backgroundCPU.Add(bg, cpu.Seconds(), v.addOpts...)
		if tp.Enabled() {
			sspan.SetAttributes(tracing.AttrScoreBackground.Bool(true))
		}
	}
	tracing.EndWithError(sspan, err)
	if err != nil {
		fail(v, err)
		return
	}
	espan := tp.Encode(tctx)
	resp := response{model: v.model, version: v.version, req: req, out: out, nrows: req.numRows(), width: width}
	if proto {
		req.resp = appendProtoResponse(req.resp[:0], &resp)
		ctx.SetContentType(contentTypeProto)
	} else {
		req.resp = appendJSONResponse(req.resp[:0], &resp)
		ctx.SetContentType(contentTypeJSON)
	}
	// Hand the encoded body to fasthttp without a copy; keep its old buffer for the pool.
	req.resp = ctx.Response.SwapBody(req.resp)
	espan.End()

	s.met.requests.Add(bg, 1, v.addOpts...)
	s.met.candidates.Add(bg, int64(resp.nrows), v.addOpts...)
	s.met.latency.Record(bg, time.Since(start).Seconds(), v.recOpts...)
	if len(req.degraded) > 0 {
		s.met.degraded.Add(bg, 1, v.addOpts...)
	}
	x := Exchange{Model: v.model, Version: v.version, RequestID: ctx.Request.Header.Peek("X-Request-Id"),
		req: req, rows64: m64, rows32: m32, ncols: v.nfeat, Raw: raw, Scores: out, Width: width,
		Start: start, Duration: time.Since(start)}
	s.prod.after(v, &x)
	if s.cfg.AfterResponse != nil {
		xc := x // x stays on the stack when no hook is set
		s.cfg.AfterResponse(&xc)
	}
}

// bindingSource names where a binding's values come from in traces: a binding may say
// (Source() string, e.g. "redis" or "snapshot"); others are "store".
func bindingSource(b FeatureBinding) string {
	if s, ok := b.(interface{ Source() string }); ok {
		return s.Source()
	}
	return "store"
}

// headerCarrier reads W3C trace-context headers from a fasthttp request for
// tracing.Provider.Extract.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

const (
	contentTypeJSON  = "application/json"
	contentTypeProto = "application/x-protobuf"
)

var errMediaType = errors.New("unsupported content type")

// requestIsProto reads Content-Type: protobuf, or JSON. JSON is also accepted when the
// type is absent, text/plain or application/x-www-form-urlencoded (what curl -d sends),
// so the curl examples work without -H.
func requestIsProto(ctx *fasthttp.RequestCtx) (bool, error) {
	ct := ctx.Request.Header.ContentType()
	if i := strings.IndexByte(string(ct), ';'); i >= 0 {
		ct = ct[:i]
	}
	switch strings.TrimSpace(string(ct)) {
	case "", contentTypeJSON, "application/x-www-form-urlencoded", "text/plain":
		return false, nil
	case contentTypeProto, "application/protobuf", "application/vnd.google.protobuf":
		return true, nil
	}
	return false, fmt.Errorf("%w %q (send application/json or application/x-protobuf)", errMediaType, ct)
}

// deadline reads X-Deadline-Ms, else applies the default.
func (s *Server) deadline(ctx *fasthttp.RequestCtx, start time.Time) (time.Time, error) {
	h := ctx.Request.Header.Peek("X-Deadline-Ms")
	if len(h) == 0 {
		if s.cfg.DefaultDeadline < 0 {
			return time.Time{}, nil
		}
		return start.Add(s.cfg.DefaultDeadline), nil
	}
	ms, err := strconv.ParseUint(string(h), 10, 32)
	if err != nil || ms == 0 || ms > maxDeadlineHeaderMilli {
		return time.Time{}, badRequest("X-Deadline-Ms %q: want milliseconds, 1 to %d", h, maxDeadlineHeaderMilli)
	}
	return start.Add(time.Duration(ms) * time.Millisecond), nil
}

var errFeatureStore = errors.New("feature store")

// Errors a Predictor may wrap (with %w) to choose the HTTP status of its failures.
var (
	// ErrBusy: the model cannot take the call now (e.g. a full batching queue); 503 with
	// Retry-After.
	ErrBusy = errors.New("model busy")
	// ErrBadInput: a value of the request cannot be fed to the model (e.g. an id that is
	// not an integer); 400.
	ErrBadInput = errors.New("bad input value")
)

// errorStatus maps an error to its HTTP status and API code.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, errBadRequest):
		return fasthttp.StatusBadRequest, "bad_request"
	case errors.Is(err, errMediaType):
		return fasthttp.StatusUnsupportedMediaType, "unsupported_media_type"
	case errors.Is(err, ErrUnknownModel):
		return fasthttp.StatusNotFound, "unknown_model"
	case errors.Is(err, ErrUnknownVersion):
		return fasthttp.StatusNotFound, "unknown_version"
	case errors.Is(err, errUnknownFeature):
		return fasthttp.StatusBadRequest, "unknown_feature"
	case errors.Is(err, errFeatureCount):
		return fasthttp.StatusBadRequest, "feature_count"
	case errors.Is(err, errTooManyCandidates):
		return fasthttp.StatusRequestEntityTooLarge, "too_many_candidates"
	case errors.Is(err, errTooManyCells):
		return fasthttp.StatusRequestEntityTooLarge, "too_many_cells"
	case errors.Is(err, errDeadline):
		return fasthttp.StatusGatewayTimeout, "deadline_exceeded"
	case errors.Is(err, errFeatureStore):
		return fasthttp.StatusServiceUnavailable, "feature_store_unavailable"
	case errors.Is(err, ErrBusy):
		return fasthttp.StatusServiceUnavailable, "busy"
	case errors.Is(err, ErrBadInput):
		return fasthttp.StatusBadRequest, "bad_input"
	case errors.Is(err, admission.ErrOverloaded):
		var oe *admission.OverloadedError
		if errors.As(err, &oe) {
			return oe.Status, "overloaded"
		}
		return fasthttp.StatusServiceUnavailable, "overloaded"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fasthttp.StatusGatewayTimeout, "deadline_exceeded"
	}
	return fasthttp.StatusInternalServerError, "internal"
}

// fail answers a prediction with an error and counts it.
func (s *Server) fail(ctx *fasthttp.RequestCtx, v *version, err error) {
	status, code := s.writeError(ctx, err)
	var oe *admission.OverloadedError
	if errors.As(err, &oe) {
		ctx.Response.Header.Set("Retry-After", oe.RetryAfterHeader())
	} else if errors.Is(err, ErrBusy) {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	attrs := []attribute.KeyValue{attribute.String("code", code)}
	switch {
	case v != nil:
		attrs = append(attrs, attribute.String("model", v.model), attribute.String("version", v.version))
	case oe != nil:
		// Rejected before decoding (admitEarly): the model is known, its version not yet.
		attrs = append(attrs, attribute.String("model", oe.Model), attribute.String("version", ""))
	default:
		attrs = append(attrs, attribute.String("model", ""), attribute.String("version", ""))
	}
	s.met.errors.Add(bg, 1, metric.WithAttributes(attrs...))
	// Backpressure (admission rejections, a busy model) is expected under load and
	// counted; logging each one would flood the log exactly when it matters.
	if status >= 500 && code != "overloaded" && code != "busy" {
		s.cfg.Logger.Error("prediction failed", "status", status, "err", err)
	}
}

func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) (int, string) {
	status, code := errorStatus(err)
	s.writeErrorCode(ctx, status, code, err.Error())
	return status, code
}

// writeErrorCode writes {"error":{"code":...,"message":...}}. Errors are JSON for every
// request encoding, so they read the same in curl and in logs.
func (s *Server) writeErrorCode(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	b := append(make([]byte, 0, 64+len(msg)), `{"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, strings.ToValidUTF8(msg, "\uFFFD"))
	b = append(b, "}}\n"...)
	ctx.Response.SetBody(b)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetStatusCode(status)
}

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	s.writeErrorCode(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("%s %s: use %s", ctx.Method(), ctx.Path(), allow))
}

// writeJSON writes v as indented JSON; a value that cannot be encoded (a NaN statistic)
// is answered 500 and logged, not a panic.
func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		s.cfg.Logger.Error("BUG: cannot encode a JSON response", "path", string(ctx.Path()), "err", err)
		s.writeErrorCode(ctx, fasthttp.StatusInternalServerError, "internal",
			"internal error: the response cannot be encoded as JSON: "+err.Error())
		return
	}
	ctx.SetContentType(contentTypeJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(append(b, '\n'))
}

// handleConnError answers errors fasthttp meets before the handler: an oversized body,
// a client too slow to send its request, a malformed HTTP request.
func (s *Server) handleConnError(ctx *fasthttp.RequestCtx, err error) {
	var (
		status = fasthttp.StatusBadRequest
		code   = "bad_request"
		msg    = "malformed HTTP request: " + err.Error()
	)
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code = fasthttp.StatusRequestEntityTooLarge, "body_too_large"
		msg = fmt.Sprintf("request body over %d bytes (--max-body-bytes)", s.cfg.MaxBodyBytes)
	case errors.As(err, &netErr) && netErr.Timeout():
		status, code = fasthttp.StatusRequestTimeout, "request_timeout"
		msg = fmt.Sprintf("the request was not received within %s (--read-timeout)", s.cfg.ReadTimeout)
	}
	s.met.errors.Add(bg, 1, metric.WithAttributes(attribute.String("code", code),
		attribute.String("model", ""), attribute.String("version", "")))
	s.writeErrorCode(ctx, status, code, msg)
	ctx.SetConnectionClose()
}

// Exchange describes one successful prediction for Config.AfterResponse. It and every
// slice it holds are valid only during the call.
type Exchange struct {
	Model, Version string
	// RequestID is the request's X-Request-Id header (nil when absent).
	RequestID []byte
	Raw       bool      // raw margins were returned
	Scores    []float64 // NumRows × Width, row-major
	Width     int
	Start     time.Time
	Duration  time.Duration

	req    *request
	rows64 []float64
	rows32 []float32
	ncols  int
}

// NumFeatures returns the number of columns of each row (the model's features).
func (e *Exchange) NumFeatures() int { return e.ncols }

// Rows32 returns the float32 matrix the model scored, for float32 models (nil for the
// others).
func (e *Exchange) Rows32() []float32 { return e.rows32 }

// NumRows returns the number of rows scored.
func (e *Exchange) NumRows() int { return e.req.numRows() }

// ID returns candidate i's id (nil in the dense rows form).
func (e *Exchange) ID(i int) []byte {
	if e.req.dense {
		return nil
	}
	return e.req.cands[i].id
}

// Row copies row i of the scored matrix (the model's feature order) into dst[:0].
func (e *Exchange) Row(dst []float64, i int) []float64 {
	dst = dst[:0]
	if e.rows32 != nil {
		for _, x := range e.rows32[i*e.ncols : (i+1)*e.ncols] {
			dst = append(dst, float64(x))
		}
		return dst
	}
	return append(dst, e.rows64[i*e.ncols:(i+1)*e.ncols]...)
}

// Rows64 returns the float64 matrix as assembled (before any float32 narrowing). With
// the dense rows form it is the request's own rows.
func (e *Exchange) Rows64() []float64 { return e.rows64 }
