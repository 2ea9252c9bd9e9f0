//go:build !race

package sidecar

import (
	"log/slog"
	"testing"

	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkProductionOverhead: the handler (no network) scoring 20 candidates with the
// demo model, as a plain server (the baseline) and with each production behaviour on:
// admission control (a free slot: the fast path), a shadow model (mirrored to one worker;
// under this load most mirrors are dropped, which is the cost the primary pays), a
// prediction log at rate 1 (the writer drops what it cannot keep up with), tracing with
// every span recorded (to a discarding exporter). Compare each to "plain" in the same run:
//
//	go test ./sidecar -run '^$' -bench ProductionOverhead -benchtime 20000x
func BenchmarkProductionOverhead(b *testing.B) {
	m := claimsEngine(b)
	body := jsonRequest("claims", "", "", m.FeatureNames(), randomRows(m, 20, 7), false)
	tp, err := tracing.NewProvider(tracing.Config{}, sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter()))
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Shutdown(bg)
	cases := []struct {
		name     string
		manifest string
		cfg      Config
	}{
		{"plain", lgbManifest, Config{}},
		{"admission", lgbManifest, Config{AdmissionCapacity: 4}},
		{"shadow", lgbManifest + "shadows: [{model: next}]\n", Config{}},
		{"log", lgbManifest + "log: {rate: 1}\n", Config{PredictionLogDir: b.TempDir()}},
		{"traced", lgbManifest, Config{Tracer: tp}},
	}
	for _, c := range cases {
		root := newRepo(b, repoVersion{model: "claims", version: "1", src: "demo", manifest: c.manifest},
			repoVersion{model: "next", version: "1", src: "demo", manifest: lgbManifest})
		cfg := c.cfg
		cfg.ModelDir, cfg.Logger = root, slog.New(slog.DiscardHandler)
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		s.Reload()
		b.Run(c.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			ctx.Init(&req, nil, nil)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/v1/predict")
				ctx.Request.Header.SetContentType("application/json")
				ctx.Request.SetBody(body)
				ctx.Response.Reset()
				s.handle(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
		s.Close()
	}
}
