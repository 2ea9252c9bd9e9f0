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
	"github.com/predictd/predictd/sidecar"
)

const serveUsage = `Usage: predictd [serve] [flags]

Serves the models in a model repository (DIR/<name>/<version>/model.yaml) over HTTP:
POST /v1/predict, GET /v1/models, GET /v1/models/{name}, POST /v1/admin/reload,
GET /healthz, GET /readyz, GET /metrics and, with --pprof, /debug/pprof/ (docs/api.md).
Without --models it serves the bundled demo model "claims".

Every flag can also be set by the environment variable named in brackets; a flag on the
command line wins over the variable. SIGTERM or SIGINT stops accepting connections,
finishes in-flight requests and exits 0.

Flags:
`

// serveFlags are the serve command's settings; see newServeFlags for defaults.
type serveFlags struct {
	models          string
	listen          string
	unix            string
	watch           bool
	maxBodyBytes    int
	maxCandidates   int
	defaultDeadline time.Duration
	threads         int
	readTimeout     time.Duration
	writeTimeout    time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	pprof           bool
	logFormat       string
	logLevel        string
}

func newServeFlags(fs *flag.FlagSet) *serveFlags {
	f := &serveFlags{}
	fs.StringVar(&f.models, "models", "", "model repository `DIR` (DIR/<name>/<version>/model.yaml); empty serves the bundled demo model")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "TCP `address` to listen on; empty for none (with --unix)")
	fs.StringVar(&f.unix, "unix", "", "also listen on a Unix socket at `PATH` (a stale socket file there is replaced)")
	fs.BoolVar(&f.watch, "watch", true, "reload when files under --models change (POST /v1/admin/reload always works)")
	fs.IntVar(&f.maxBodyBytes, "max-body-bytes", sidecar.DefaultMaxBodyBytes, "largest request body in `bytes`; larger ones get 413")
	fs.IntVar(&f.maxCandidates, "max-candidates", sidecar.DefaultMaxCandidates, "most candidates (rows) in one request; more get 413")
	fs.DurationVar(&f.defaultDeadline, "default-deadline", sidecar.DefaultDeadline, "deadline of a request without an X-Deadline-Ms header; expired requests get 504; negative: none")
	fs.IntVar(&f.threads, "threads", 1, "goroutines that score one large batch")
	fs.DurationVar(&f.readTimeout, "read-timeout", 10*time.Second, "time to receive a whole request; slower clients get 408")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 10*time.Second, "time to send a response")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 60*time.Second, "idle keep-alive connections are closed after this")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM/SIGINT, longest wait for in-flight requests")
	fs.BoolVar(&f.pprof, "pprof", false, "serve /debug/pprof/ (profiling; keep it off on shared hosts)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
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
	cfg := sidecar.Config{
		ModelDir:        f.models,
		Watch:           f.watch,
		MaxBodyBytes:    f.maxBodyBytes,
		MaxCandidates:   f.maxCandidates,
		DefaultDeadline: f.defaultDeadline,
		Threads:         f.threads,
		ReadTimeout:     f.readTimeout,
		WriteTimeout:    f.writeTimeout,
		IdleTimeout:     f.idleTimeout,
		Pprof:           f.pprof,
		Logger:          log,
	}
	if f.models == "" {
		cfg.ModelFS = examples.Models()
		log.Info("no --models: serving the bundled demo model", "model", "claims")
	}
	srv, err := sidecar.New(cfg)
	if err != nil {
		log.Error("startup", "err", err)
		return 1
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			log.Error("listen", "err", err)
			return 1
		}
		lns = append(lns, ln)
	}
	if f.unix != "" {
		ln, err := listenUnix(f.unix)
		if err != nil {
			closeAll()
			log.Error("listen", "err", err)
			return 1
		}
		lns = append(lns, ln)
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String(), "network", ln.Addr().Network())
		go func() { errc <- srv.Serve(ln) }()
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
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	if f.unix != "" {
		os.Remove(f.unix)
	}
	log.Info("stopped")
	return code
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
	return net.Listen("unix", path)
}
