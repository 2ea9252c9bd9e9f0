package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/predictd/predictd/examples"
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/features/sidecarstore"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/predlog"
	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
)

const serveUsage = `Usage: predictd [serve] [flags]

Serves the models in a model repository (DIR/<name>/<version>/model.yaml) over HTTP
(docs/api.md). Without --models it serves the bundled demo model "claims".

Listeners (docs/api.md, "Listeners"):
  --listen        POST /v1/predict, GET /v1/models[/{name}], /healthz, /readyz
  --admin-listen  /healthz, /readyz, /metrics, GET /v1/models[/{name}],
                  POST /v1/admin/reload and, with --pprof, /debug/pprof/
  --unix          every route (the socket file's permissions admit its clients)
The portal, a read-only web UI (docs/portal.md), is at /ui/ on --admin-listen when
it is set, else on --listen (and always on --unix); --no-ui turns it off.
Keep --listen on loopback unless the network in front of it is trusted. The
environment variable PREDICTD_ADMIN_TOKEN (never a flag) makes /v1/admin/* and
/debug/pprof/ require "Authorization: Bearer <token>" on every listener.

Publish a model version by writing its directory under a hidden name (.tmp-3/) and
renaming it into place (3/); never rewrite a served model file in place.

Every flag can also be set by the environment variable named in brackets; a flag on the
command line wins over the variable. OpenTelemetry export also follows the standard
OTEL_* variables: OTEL_EXPORTER_OTLP_ENDPOINT alone turns on traces and metrics,
OTEL_EXPORTER_OTLP_PROTOCOL picks http/protobuf (default) or grpc, OTEL_SERVICE_NAME
names the service, OTEL_SDK_DISABLED=true turns it off (docs/operations.md). SIGTERM or SIGINT stops accepting connections,
finishes in-flight requests and exits 0.

Flags:
`

// serveFlags are the serve command's settings; see newServeFlags for defaults.
type serveFlags struct {
	models          string
	listen          string
	adminListen     string
	unix            string
	maxModelBytes   int64
	watch           bool
	maxBodyBytes    int
	maxInflight     int
	maxCandidates   int
	maxCells        int
	defaultDeadline time.Duration
	backgroundAfter time.Duration
	threads         int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	pprof           bool
	steadySysmon    bool
	logFormat       string
	logLevel        string

	admissionCapacity     int
	admissionMaxQueueWait time.Duration
	admissionMaxPending   int
	shadowWorkers         int
	shadowCPUShare        float64
	predictionLogDir      string
	profiles              string
	noUI                  bool
	uiHosts               string
	otlpEndpoint          string
	traceSampleRatio      float64

	redis             string
	redisCluster      string
	features          string
	featuresSnapshot  string
	featuresCache     int64
	featuresTimeout   time.Duration
	featuresReserve   time.Duration
	featuresStaleRead time.Duration
}

func newServeFlags(fs *flag.FlagSet) *serveFlags {
	f := &serveFlags{}
	fs.StringVar(&f.models, "models", "", "model repository `DIR` (DIR/<name>/<version>/model.yaml); empty serves the bundled demo model")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "TCP `address` to listen on; empty for none (with --unix)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "TCP `address` for the admin routes: probes, /metrics, /v1/models, POST /v1/admin/reload, /debug/pprof/; empty: none (they stay on --unix)")
	fs.Int64Var(&f.maxModelBytes, "max-model-bytes", sidecar.DefaultMaxModelBytes, "largest model file in `bytes`; a larger one fails its load")
	fs.StringVar(&f.unix, "unix", "", "also listen on a Unix socket at `PATH` (a stale socket file there is replaced)")
	fs.BoolVar(&f.watch, "watch", true, "reload when files under --models change (POST /v1/admin/reload always works)")
	fs.IntVar(&f.maxBodyBytes, "max-body-bytes", sidecar.DefaultMaxBodyBytes, "largest request body in `bytes`; larger ones get 413")
	fs.IntVar(&f.maxInflight, "max-inflight-bytes", sidecar.DefaultMaxInflightBytes, "`bytes` all predictions may hold at once (bodies, decoded values, matrices, scores); past it requests get 503 with Retry-After, one that needs more on its own 413")
	fs.IntVar(&f.maxCandidates, "max-candidates", sidecar.DefaultMaxCandidates, "most candidates (rows) in one request; more get 413")
	fs.IntVar(&f.maxCells, "max-cells", sidecar.DefaultMaxCells, "most values in one request: decoded features, context and keys, and rows × features of the model's matrix (8 bytes each); more get 413")
	fs.DurationVar(&f.defaultDeadline, "default-deadline", sidecar.DefaultDeadline, "deadline of a request without an X-Deadline-Ms header; expired requests get 504; negative: none")
	fs.IntVar(&f.threads, "threads", 1, "goroutines that score one large batch")
	fs.DurationVar(&f.backgroundAfter, "background-after", sidecar.DefaultBackgroundAfter, "score a request on the C++ core's lowest-priority (nice 19) threads when its model's recent time per row predicts at least this much scoring: long batches then yield the CPU to short requests; 0: off")
	fs.DurationVar(&f.readTimeout, "read-timeout", 10*time.Second, "time to receive a whole request; slower clients get 408")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 10*time.Second, "time to send a response")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 60*time.Second, "idle keep-alive connections are closed after this")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM/SIGINT, longest wait for in-flight requests")
	fs.BoolVar(&f.pprof, "pprof", false, "serve /debug/pprof/ (profiling; keep it off on shared hosts)")
	fs.BoolVar(&f.steadySysmon, "steady-sysmon", true, "at start, exec itself again (same PID and arguments; Unix) with GODEBUG schedtrace=2147483647 added unless GODEBUG sets schedtrace: it keeps the Go runtime's monitor thread (sysmon) from waking about six times on every request that follows an idle moment, 11–16% of the demo model's CPU per prediction at 60 requests/s of 1,000 candidates (docs/operations.md)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&f.admissionCapacity, "admission-capacity", 0, "predictions scored at once, shared by the models by their model.yaml weight; a model past its share queues, then gets 429 with Retry-After; 0: no admission control (2×cores is a good start)")
	fs.DurationVar(&f.admissionMaxQueueWait, "admission-max-queue-wait", 100*time.Millisecond, "longest wait for a model's admission slot before 429")
	fs.IntVar(&f.admissionMaxPending, "admission-max-pending", 0, "admitted plus waiting requests, all models; past it requests get 503 at once; 0: 5×--admission-capacity (every model's slots and queue)")
	fs.IntVar(&f.shadowWorkers, "shadow-workers", 1, "shadow-model scoring jobs run at once, with a queue of 4 per job (mirrored requests beyond it are dropped and counted); the CPU they may use is --shadow-cpu-share")
	fs.Float64Var(&f.shadowCPUShare, "shadow-cpu-share", 0, "CPU `cores` within which shadows are scored at normal priority, shared by the models without their own model.yaml shadow.cpu_share; beyond it they take only idle CPU, and sampling rates are lowered evenly to fit it; 0: idle CPU only")
	fs.StringVar(&f.profiles, "profiles", "", "`DIR` of load-test profiles (predictd-loadtest run's output) the portal at /ui/ lists, opens and compares; empty: none")
	fs.BoolVar(&f.noUI, "no-ui", false, "do not serve the portal at /ui/ (docs/portal.md)")
	fs.StringVar(&f.uiHosts, "ui-hosts", "", "comma-separated host `names` the portal answers for besides IP addresses and localhost (e.g. a Service's DNS name); other Host headers get 421, against DNS rebinding")
	fs.StringVar(&f.predictionLogDir, "prediction-log-dir", "", "`DIR` for the prediction logs of models with a log section in model.yaml")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces and metrics over OTLP to this `URL` (e.g. http://otel-collector:4318), over OTEL_EXPORTER_OTLP_ENDPOINT; empty: the OTEL_* variables decide, and with none set nothing is exported")
	fs.Float64Var(&f.traceSampleRatio, "trace-sample-ratio", 1, "fraction of new traces recorded (requests with a sampled traceparent are always traced)")
	fs.StringVar(&f.redis, "redis", "", "feature store: Redis `address` host:port (or a redis:// URL); empty: the embedded store")
	fs.StringVar(&f.redisCluster, "redis-cluster", "", "feature store: comma-separated Redis Cluster node `addresses`")
	fs.StringVar(&f.features, "features", "", "`DIR` of feature group declarations (*.group.yaml); default: the --models directory")
	fs.StringVar(&f.featuresSnapshot, "features-snapshot", "", "embedded feature store: load this snapshot `file` (predictd features load --snapshot); without Redis and without it every entity is absent (defaults)")
	fs.Int64Var(&f.featuresCache, "features-cache-bytes", 256<<20, "feature store: bound of the in-process cache in `bytes`")
	fs.DurationVar(&f.featuresTimeout, "features-fetch-timeout", time.Second, "feature store: bound of one Redis round trip")
	fs.DurationVar(&f.featuresReserve, "features-reserve", 5*time.Millisecond, "feature store: stop waiting for Redis this long before a request's deadline and answer from stale cache or defaults (degraded); it leaves the time to score and encode")
	fs.DurationVar(&f.featuresStaleRead, "features-stale-while-revalidate", 0, "feature store: let an entry up to TTL plus this old answer at once while one background read refreshes it; 0: off")
	return f
}

// envName is a flag's environment variable: --max-body-bytes is PREDICTD_MAX_BODY_BYTES.
func envName(flagName string) string {
	return "PREDICTD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag whose variable is set; call it before Parse so that the
// command line wins.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	return err
}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "  [%s]\n        %s", envName(f.Name), usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := newServeFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveUsage)
		printFlags(fs.Output(), fs)
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(os.Stderr, "predictd serve:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "predictd serve: unexpected arguments %q (the repository is --models DIR)\n", fs.Args())
		return 2
	}
	log, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd serve:", err)
		return 2
	}
	if f.listen == "" && f.unix == "" {
		fmt.Fprintln(os.Stderr, "predictd serve: nothing to listen on: set --listen or --unix")
		return 2
	}
	if f.maxModelBytes <= 0 {
		fmt.Fprintln(os.Stderr, "predictd serve: --max-model-bytes must be positive")
		return 2
	}
	if f.admissionCapacity < 0 || f.admissionMaxPending < 0 || f.shadowWorkers < 1 || !(f.shadowCPUShare >= 0 && f.shadowCPUShare <= 1024) {
		fmt.Fprintln(os.Stderr, "predictd serve: --admission-capacity and --admission-max-pending must be >= 0, --shadow-workers >= 1, --shadow-cpu-share in [0, 1024]")
		return 2
	}
	if f.steadySysmon {
		if err := steadySysmon(); err != nil {
			log.Warn("could not start again with a steady runtime monitor; serving as started", "err", err)
		}
	}
	// The admin token comes from the environment only, so that it shows in no process
	// listing, and it is never logged.
	adminToken := os.Getenv("PREDICTD_ADMIN_TOKEN")
	if f.listen != "" && !loopbackOnly(f.listen) && adminToken == "" {
		log.Warn("predict listens beyond loopback without authentication: anyone who reaches it can score; keep --listen on 127.0.0.1 or a Unix socket, or put it behind a trusted network",
			"listen", f.listen)
	}
	if f.predictionLogDir != "" {
		// A killed predecessor's ".part" files become whole files before any new log opens.
		recovered, err := predlog.Recover(f.predictionLogDir)
		for _, r := range recovered {
			log.Info("prediction log finalized after an unclean exit", "file", r.Path, "lines", r.Lines, "torn_bytes_dropped", r.Lost)
		}
		if err != nil {
			log.Warn("prediction logs left unfinished", "err", err)
		}
	}
	cfg := sidecar.Config{
		ModelDir:        f.models,
		Watch:           f.watch,
		MaxBodyBytes:    f.maxBodyBytes,
		MaxCandidates:   f.maxCandidates,
		MaxCells:        f.maxCells,
		DefaultDeadline: f.defaultDeadline,
		Threads:         f.threads,
		BackgroundAfter: f.backgroundAfter,
		ReadTimeout:     f.readTimeout,
		WriteTimeout:    f.writeTimeout,
		IdleTimeout:     f.idleTimeout,
		Pprof:           f.pprof,
		AdminToken:      adminToken,
		MaxModelBytes:   f.maxModelBytes,
		Logger:          log,
		Formats:         formats(),

		AdmissionCapacity:     f.admissionCapacity,
		AdmissionMaxQueueWait: f.admissionMaxQueueWait,
		AdmissionMaxPending:   f.admissionMaxPending,
		ShadowWorkers:         f.shadowWorkers,
		ShadowCPUShare:        f.shadowCPUShare,
		PredictionLogDir:      f.predictionLogDir,
	}
	cfg.MaxInflightBytes = f.maxInflight
	if f.backgroundAfter <= 0 {
		cfg.BackgroundAfter = -1 // the flag's 0 is "off"; Config's 0 is the default
	}
	tp, err := tracing.Setup(tracing.Config{Endpoint: f.otlpEndpoint, SampleRatio: &f.traceSampleRatio})
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd serve:", err)
		return 2
	}
	cfg.Tracer = tp
	if tp.Enabled() || tp.MetricReader() != nil {
		log.Info("OpenTelemetry export", "traces", tp.Enabled(), "metrics", tp.MetricReader() != nil)
	}
	if f.models == "" {
		cfg.ModelFS = examples.Models()
		log.Info("no --models: serving the bundled demo model", "model", "claims")
	}
	srv, err := sidecar.New(cfg)
	if err != nil {
		tp.Shutdown(context.Background())
		log.Error("startup", "err", err)
		return 1
	}
	// The feature store records on the server's meter, so its metrics are at /metrics.
	store, closeStore, err := openFeatureStore(f, srv.Meter(), log)
	if err != nil {
		srv.Close()
		tp.Shutdown(context.Background())
		fmt.Fprintln(os.Stderr, "predictd serve:", err)
		return 2
	}
	defer closeStore()
	srv.SetFeatureStore(store)
	if !f.noUI {
		closeUI, err := servePortal(srv, store, f, adminToken, log)
		if err != nil {
			srv.Close()
			tp.Shutdown(context.Background())
			fmt.Fprintln(os.Stderr, "predictd serve:", err)
			return 2
		}
		defer closeUI()
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	var serves []func(net.Listener) error
	var roles []string
	for _, l := range []struct {
		addr, role string
		serve      func(net.Listener) error
	}{{f.listen, "predict", srv.ServePredict}, {f.adminListen, "admin", srv.ServeAdmin}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeAll()
			log.Error("listen", "role", l.role, "err", err)
			return 1
		}
		lns, serves, roles = append(lns, ln), append(serves, l.serve), append(roles, l.role)
	}
	if f.unix != "" {
		ln, err := listenUnix(f.unix)
		if err != nil {
			closeAll()
			log.Error("listen", "err", err)
			return 1
		}
		lns, serves, roles = append(lns, ln), append(serves, srv.Serve), append(roles, "all")
	}
	if f.adminListen == "" && f.unix == "" {
		log.Info("no --admin-listen or --unix: /metrics and POST /v1/admin/reload are not served (the watcher still reloads)")
	}
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String(), "network", ln.Addr().Network(), "routes", roles[i])
		serve := serves[i]
		go func() { errc <- serve(ln) }()
	}
	// Load in the background: /healthz answers at once, /readyz once models are warm.
	go func() {
		res := srv.Reload()
		log.Info("initial load", "serving", res.Serving, "failed", len(res.Failed), "took", res.Duration)
	}()

	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	code := 0
	select {
	case <-sig.Done():
		log.Info("shutting down: finishing in-flight requests", "timeout", f.shutdownTimeout)
	case err := <-errc:
		log.Error("serve", "err", err)
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	// Shutdown drains the HTTP server, then finishes the shadows' queued jobs and writes
	// out the prediction logs; the tracer flushes last, with every span ended. Whatever
	// holds it (a model file that blocks a read), the process exits within
	// --shutdown-timeout.
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err != nil {
			log.Error("shutdown", "err", err)
			code = 1
		}
	case <-ctx.Done():
		log.Error("shutdown did not finish within --shutdown-timeout; exiting", "timeout", f.shutdownTimeout)
		if f.unix != "" {
			os.Remove(f.unix)
		}
		return 1
	}
	if err := tp.Shutdown(ctx); err != nil {
		log.Error("tracing shutdown", "err", err)
	}
	if f.unix != "" {
		os.Remove(f.unix)
	}
	log.Info("stopped")
	return code
}

// loopbackOnly reports whether a --listen address accepts loopback connections only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listenUnix listens on a Unix socket, replacing a stale socket file (a previous run
// that was killed) but never another kind of file.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--unix %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("--unix %s: another process is serving on it", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Owner and group may connect (an app container sharing the socket's volume and
	// group); others may not.
	if err := os.Chmod(path, unixSocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("--unix %s: %w", path, err)
	}
	return ln, nil
}

// unixSocketMode is the socket file's permission: read-write for owner and group.
const unixSocketMode = 0o660

// openFeatureStore opens the feature store serve's flags describe: the groups of
// --features (else the --models directory), over Redis or a Redis Cluster when one is
// named, else over the embedded store (filled from --features-snapshot when given), so
// that predictd serve runs alone. Without a groups directory (the bundled demo) there
// is no store. The returned function closes the store and its Redis client.
// redisLog routes go-redis' own messages (it writes one to stderr for every failed dial,
// which a dead Redis turns into one per request) to the sidecar's log at debug level: the
// store's breaker, metrics and degraded answers already say that Redis is down.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

func openFeatureStore(f *serveFlags, meter metric.Meter, log *slog.Logger) (sidecar.FeatureStore, func(), error) {
	dir := f.features
	if dir == "" {
		dir = f.models
	}
	nop := func() {}
	if dir == "" {
		if f.redis != "" || f.redisCluster != "" || f.featuresSnapshot != "" {
			return nil, nop, errors.New("--redis, --redis-cluster and --features-snapshot need feature groups: set --features DIR")
		}
		return nil, nop, nil
	}
	if f.redis != "" && f.redisCluster != "" {
		return nil, nop, errors.New("set --redis or --redis-cluster, not both")
	}
	if f.featuresSnapshot != "" && (f.redis != "" || f.redisCluster != "") {
		return nil, nop, errors.New("--features-snapshot fills the embedded store, which is used only without --redis or --redis-cluster: set one or the other")
	}
	groups, err := features.LoadGroups(dir)
	if err != nil {
		return nil, nop, fmt.Errorf("feature groups: %w", err)
	}
	cfg := features.Config{Groups: groups, CacheBytes: f.featuresCache, FetchTimeout: f.featuresTimeout,
		Reserve: f.featuresReserve, StaleWhileRevalidate: f.featuresStaleRead, Meter: meter}
	source := "snapshot"
	var client redis.UniversalClient
	switch {
	case f.redis != "":
		opts := &redis.Options{Addr: f.redis}
		if strings.Contains(f.redis, "://") {
			if opts, err = redis.ParseURL(f.redis); err != nil {
				return nil, nop, fmt.Errorf("--redis %s: %w", f.redis, err)
			}
		}
		features.FailFast(opts, f.featuresTimeout) // the store retries and breaks on its own
		redis.SetLogger(redisLog{log})
		client, source = redis.NewClient(opts), "redis"
	case f.redisCluster != "":
		opts := &redis.ClusterOptions{Addrs: strings.Split(f.redisCluster, ",")}
		features.FailFastCluster(opts, f.featuresTimeout)
		redis.SetLogger(redisLog{log})
		client, source = redis.NewClusterClient(opts), "redis"
	case f.featuresSnapshot != "":
		emb, err := features.LoadSnapshot(f.featuresSnapshot)
		if err != nil {
			return nil, nop, fmt.Errorf("--features-snapshot: %w", err)
		}
		cfg.Embedded = emb
	}
	if client != nil {
		cfg.Redis = client
	}
	st, err := features.Open(cfg)
	if err != nil {
		if client != nil {
			client.Close()
		}
		return nil, nop, fmt.Errorf("feature store: %w", err)
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	log.Info("feature store", "groups", names, "backend", source, "dir", dir)
	return sidecarstore.NewReloading(st, source, dir), func() {
		st.Close()
		if client != nil {
			client.Close()
		}
	}, nil
}
