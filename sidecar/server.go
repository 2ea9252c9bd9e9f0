// Package sidecar is predictd's prediction server: a model registry with hot reload and
// a fasthttp API that scores batches of candidates.
//
// The request path (docs/architecture.md, and predictWith in predict.go, one function
// per step): with admission control, the model's slot when the body names its model
// first (peekModel; otherwise after resolving) → decode the body (JSON or protobuf, into
// a pooled request) → resolve the model and version (an atomic snapshot of the registry,
// with a reference held until the response is written) → assemble a row-major matrix
// (names → columns through a map built at load; context features broadcast; missing =
// NaN; feature-store columns filled by a FeatureStore) → score (engine.Predictor, in
// blocks, checking the deadline) → encode (append-style, into the pooled buffer) →
// count and the after-response hook → release.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
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
	// built for the model (8 bytes each, 12 for float32 models); default 8,000,000
	// (DefaultMaxCells: a 61 MiB float64 matrix, and at most 122 MiB of decoded values,
	// 16 bytes each: less than twice the default MaxBodyBytes). Over it: 413.
	MaxCells int
	// MaxInflightBytes bounds the bytes all predictions hold at once: bodies, what the
	// decoders build from them and the matrices and scores of their models (budget.go).
	// A request the budget cannot cover now gets 503 busy with Retry-After; one that needs
	// more than all of it, 413. Default 256 MiB (DefaultMaxInflightBytes), with the default
	// MaxBodyBytes room for one largest body and its decoding, in a 512 MiB container.
	MaxInflightBytes int
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
	// Pprof serves /debug/pprof/ (an admin route: ServeAdmin and Serve only).
	Pprof bool
	// AdminToken, when set, is required as "Authorization: Bearer <token>" on the admin
	// routes (/v1/admin/*, /debug/pprof/), compared in constant time. cmd/predictd reads
	// it from PREDICTD_ADMIN_TOKEN only (never a flag, never logged).
	AdminToken string

	// MaxModelBytes limits a model file; a larger one fails its load naming
	// --max-model-bytes. Default 2 GiB (DefaultMaxModelBytes).
	MaxModelBytes int64
	// StoreGrace is the least time assembly and scoring still get after the feature
	// store returns: the store already keeps its own deadline (it answers degraded, from
	// cache or defaults, --features-reserve before the request's), so the time it spent
	// must not turn into a 504. Default 50ms (DefaultStoreGrace).
	StoreGrace time.Duration

	// Formats adds model formats to the built-in lightgbm and xgboost: model.yaml's
	// format name → the loader that builds its Predictor (cmd/predictd adds "onnx" from
	// sidecar/onnxformat in builds with ONNX Runtime). A built-in name is an error.
	Formats map[string]FormatLoader

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
	// ShadowWorkers is how many shadow scoring jobs run at once; default 1. The CPU they
	// may use is ShadowCPUShare.
	ShadowWorkers int
	// ShadowCPUShare is the CPU time, in cores, within which the shadows of models without
	// their own model.yaml shadow.cpu_share are scored at normal priority, all of them
	// together (sidecar/shadow.Budget); 0: none, shadows score at idle priority only.
	ShadowCPUShare float64
	// PredictionLogDir is where models with a log section in model.yaml write their
	// prediction logs; empty: such models log nothing (the error shows in /v1/models).
	PredictionLogDir string
	// Tracer records a span tree per request (sidecar/tracing); nil: no tracing. Its
	// MetricReader, when it has one, also exports the metrics of /metrics over OTLP, and
	// its Resource describes the process on them. The caller shuts it down after Shutdown.
	Tracer *tracing.Provider
}

// Defaults for Config's zero fields.
const (
	DefaultMaxBodyBytes    = 64 << 20
	DefaultMaxCandidates   = 100_000
	DefaultMaxCells        = 8_000_000
	DefaultDeadline        = time.Second
	DefaultBackgroundAfter = time.Millisecond
	DefaultReloadDebounce  = 500 * time.Millisecond
	DefaultMaxModelBytes   = 2 << 30
	DefaultStoreGrace      = 50 * time.Millisecond
	// MaxManifestBytes limits model.yaml (and other small declaration files).
	MaxManifestBytes       = 1 << 20
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
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
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
	if c.MaxModelBytes <= 0 {
		c.MaxModelBytes = DefaultMaxModelBytes
	}
	if c.StoreGrace <= 0 {
		c.StoreGrace = DefaultStoreGrace
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
var disabledTracer = tracing.Disabled()

// Server is the prediction sidecar: a Registry and its HTTP API.
type Server struct {
	cfg   Config
	reg   *Registry
	met   *metrics
	prod  *production
	tp    *tracing.Provider
	bytes *byteBudget
	live  *liveStats              // the portal's live view (live.go)
	ui    atomic.Pointer[uiRoute] // the portal at /ui/ (SetUI, portal_data.go)
	// One fasthttp server per surface (routes.go): all routes, predict, admin.
	http, httpPredict, httpAdmin *fasthttp.Server
	pprof                        fasthttp.RequestHandler
	// lingers closes connections after an error answer so that the client reads it
	// (listener.go).
	lingers lingerer

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
		// Never os.DirFS: a FIFO or a device in a model file's place would block or
		// exhaust a reload (modelfs.go).
		fsys, desc = ModelDirFS(cfg.ModelDir), cfg.ModelDir
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
	met, err := newMetrics(cfg.Tracer)
	if err != nil {
		return nil, err
	}
	prod, err := newProduction(&cfg, met.provider.Meter("github.com/predictd/predictd/sidecar"))
	if err != nil {
		met.provider.Shutdown(context.Background())
		return nil, err
	}
	s := &Server{cfg: cfg, met: met, prod: prod, tp: cfg.Tracer, live: newLiveStats()}
	if s.bytes, err = newByteBudget(int64(cfg.MaxInflightBytes), s.Meter()); err != nil {
		prod.close()
		met.provider.Shutdown(context.Background())
		return nil, err
	}
	if s.reg, err = newRegistry(fsys, desc, &cfg, met); err != nil {
		prod.close()
		met.provider.Shutdown(context.Background())
		return nil, err
	}
	s.reg.prod = prod
	s.http = s.newHTTP(surfaceAll)
	s.httpPredict = s.newHTTP(surfacePredict)
	s.httpAdmin = s.newHTTP(surfaceAdmin)
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

// newHTTP is the fasthttp server of one surface.
func (s *Server) newHTTP(sf surface) *fasthttp.Server {
	cfg := s.cfg
	return &fasthttp.Server{
		Handler:            s.handlerFor(sf),
		ErrorHandler:       s.handleConnError,
		ConnState:          s.lingers.connState,
		Name:               "predictd",
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		CloseOnShutdown:    true,
		NoDefaultDate:      true,
		Logger:             fasthttpLogger{cfg.Logger},
	}
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

// Serve answers connections from ln with every route (predict and admin) until
// Shutdown: for a Unix socket, whose file permissions admit its clients. Call it once
// per listener; listeners of every kind may share one Server.
//
// Accept errors the process can outlive (out of file descriptors, say) are retried with
// a backoff, counted and logged (listener.go); Serve returns on others, and nil after
// Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(s.steady(ln)) }

// ServePredict answers connections from ln with the prediction routes only:
// POST /v1/predict, GET /v1/models[/{name}], /healthz and /readyz (routes.go).
func (s *Server) ServePredict(ln net.Listener) error { return s.httpPredict.Serve(s.steady(ln)) }

// ServeAdmin answers connections from ln with the admin routes only: the probes,
// /metrics, /debug/pprof/ (with Pprof), GET /v1/models[/{name}] and POST /v1/admin/*
// (routes.go); never /v1/predict.
func (s *Server) ServeAdmin(ln net.Listener) error { return s.httpAdmin.Serve(s.steady(ln)) }

func (s *Server) steady(ln net.Listener) net.Listener {
	return newSteadyListener(ln, s.cfg.Logger, &s.met.acceptErrs)
}

// Shutdown stops accepting connections, waits for in-flight requests to finish (or ctx
// to expire), then closes as Close does: shadows finish their queued jobs, prediction
// logs write out every accepted record, and every model retires.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	for _, h := range []*fasthttp.Server{s.http, s.httpPredict, s.httpAdmin} {
		err = errors.Join(err, h.ShutdownWithContext(ctx))
	}
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
