package sidecar

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// surface is the set of routes one listener serves (docs/api.md, "Listeners"):
//
//   - surfacePredict (Server.ServePredict, --listen): POST /v1/predict, the read-only
//     GET /v1/models and /v1/models/{name}, and the probes /healthz and /readyz;
//   - surfaceAdmin (Server.ServeAdmin, --admin-listen): the probes, /metrics,
//     /debug/pprof/ (with Config.Pprof), the read-only /v1/models routes and
//     POST /v1/admin/*;
//   - surfaceAll (Server.Serve, --unix, whose file permissions admit its clients): both.
//
// /v1/admin/* and /debug/pprof/ also need the bearer token when Config.AdminToken is set.
type surface uint8

const (
	surfacePredict surface = 1 << iota
	surfaceAdmin
	surfaceAll = surfacePredict | surfaceAdmin
)

// routeSurface is the surface a path belongs to, and whether it is an admin route that
// the token guards.
func routeSurface(path string) (surface, bool) {
	switch {
	case path == "/v1/predict":
		return surfacePredict, false
	case path == "/metrics":
		return surfaceAdmin, false
	case strings.HasPrefix(path, "/v1/admin/"), strings.HasPrefix(path, "/debug/pprof/"):
		return surfaceAdmin, true
	}
	return surfaceAll, false // probes, /v1/models, and the 404 for unknown paths
}

// handlerFor is the handler of a listener serving the routes of sf.
func (s *Server) handlerFor(sf surface) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		need, guarded := routeSurface(string(ctx.Path()))
		if isUIPath(string(ctx.Path())) {
			need = s.uiSurface() // the portal: admin listener when there is one (SetUI)
		}
		if need&sf == 0 {
			where := "the predict listener (--listen) and the Unix socket (--unix)"
			if need == surfaceAdmin {
				where = "the admin listener (--admin-listen) and the Unix socket (--unix)"
			}
			s.writeErrorCode(ctx, fasthttp.StatusNotFound, "not_found",
				"this route is not served on this listener: it is on "+where+" (docs/api.md, \"Listeners\")")
			return
		}
		if guarded && !s.adminAuthorized(ctx) {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="predictd admin"`)
			s.writeErrorCode(ctx, fasthttp.StatusUnauthorized, "unauthorized",
				"admin routes need the header Authorization: Bearer <token> (the token is PREDICTD_ADMIN_TOKEN)")
			return
		}
		s.handle(ctx)
	}
}

// adminAuthorized reports whether ctx carries the admin token, compared in constant
// time; without a token configured every request is.
func (s *Server) adminAuthorized(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.AdminToken == "" {
		return true
	}
	got, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) == 1
}

// handle routes a request: a plain switch, no router. The listener's handler
// (handlerFor) has already checked that the route is served there.
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
			if !ok && !s.reg.loaded.Load() {
				s.writeError(ctx, fmt.Errorf("%w (GET /readyz says when it is)", errNotReady))
				ctx.Response.Header.Set("Retry-After", "1")
				return
			}
			if !ok {
				s.writeError(ctx, fmt.Errorf("%w %s (GET /v1/models lists the loaded ones)", ErrUnknownModel, quoteName(name)))
				return
			}
			s.writeJSON(ctx, fasthttp.StatusOK, st)
			return
		}
		if s.serveUI(ctx) {
			return
		}
		if s.pprof != nil && strings.HasPrefix(string(path), "/debug/pprof/") {
			s.pprof(ctx)
			return
		}
		// The path is not echoed: error text carries no raw input.
		s.writeErrorCode(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint (see docs/api.md)")
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
	case isUIPath(path):
		return "/ui/"
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

// methodNotAllowed answers 405; it names the route, not the raw method sent.
func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	s.writeErrorCode(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("%s: use %s", routeName(string(ctx.Path())), allow))
}
