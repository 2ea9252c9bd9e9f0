package sidecar

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// What the portal (sidecar/portal, docs/portal.md) reads of a Server and how it is
// routed. The portal imports sidecar, so the server knows it only as a handler.

// uiRoute is the portal's handler and the surface that serves it.
type uiRoute struct {
	h  fasthttp.RequestHandler
	sf surface
}

// UIPrefix is where the portal is served.
const UIPrefix = "/ui/"

// SetUI serves h at /ui/ (and redirects /ui to it): on the admin surface when onAdmin
// (the server has an admin listener, --admin-listen), else on the predict surface;
// the Unix socket serves it either way. h must be read-only apart from predictions it
// runs through Predict. Call it before Serve.
func (s *Server) SetUI(h fasthttp.RequestHandler, onAdmin bool) {
	sf := surfacePredict
	if onAdmin {
		sf = surfaceAdmin
	}
	s.ui.Store(&uiRoute{h: h, sf: sf})
}

// isUIPath reports whether path is the portal's: /ui/..., and /favicon.ico, which a
// browser asks every origin for (pages not drawn by the portal, such as a load-test
// report, name no icon).
func isUIPath(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, UIPrefix) || path == "/favicon.ico"
}

// uiSurface is the surface of the portal's paths: everything (so that the ordinary 404
// answers) while no portal is set.
func (s *Server) uiSurface() surface {
	if u := s.ui.Load(); u != nil {
		return u.sf
	}
	return surfaceAll
}

// serveUI answers a portal path; false when no portal is set.
func (s *Server) serveUI(ctx *fasthttp.RequestCtx) bool {
	u := s.ui.Load()
	if u == nil || !isUIPath(string(ctx.Path())) {
		return false
	}
	if string(ctx.Path()) == "/ui" {
		ctx.Redirect(UIPrefix, fasthttp.StatusMovedPermanently)
		return true
	}
	u.h(ctx)
	return true
}

// Predict runs body through POST /v1/predict's own path (decode, resolve, admission,
// assemble, score, encode, and the shadows, logs and metrics after) in-process, and
// returns the status, the response body and the time it took. contentType is the
// body's, as a client would send it.
func (s *Server) Predict(body []byte, contentType string, header map[string]string) (status int, resp []byte, took time.Duration) {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/predict")
	req.Header.SetContentType(contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	start := time.Now()
	s.handle(&ctx)
	took = time.Since(start)
	return ctx.Response.StatusCode(), bytes.Clone(ctx.Response.Body()), took
}

// MetricFamilies returns what GET /metrics answers now, parsed, by family name: the
// portal reads the feature cache's hit counters from it, so it shows exactly what a
// Prometheus scraping the sidecar sees.
func (s *Server) MetricFamilies() (map[string]*dto.MetricFamily, error) {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("/metrics")
	req.Header.Set("Accept", "text/plain")
	ctx.Init(&req, nil, nil)
	s.met.handler(&ctx)
	if ctx.Response.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", ctx.Response.StatusCode())
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(ctx.Response.Body()))
}
