package sidecar

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

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

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	s.writeErrorCode(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("%s %s: use %s", ctx.Method(), ctx.Path(), allow))
}
