//go:build !race

package sidecar

import (
	"log/slog"
	"testing"
	"time"

	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/encoding/protowire"
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

// BenchmarkRejection: what a request costs the handler (no network) when its model's
// bulkhead is full and it is answered 429: "rejected" names its model first, so it is
// rejected before decoding (peekModel); "rejected-after-decoding" is the same request
// with the model field last, so it is decoded first (as every request was before
// admission moved ahead of decoding); "served" is the baseline of a request that is
// scored. The flooded model's slot is held and its queue filled before the loop, so every
// rejected request finds the queue full. 200 named candidates of the demo model, protobuf:
//
//	go test ./sidecar -run '^$' -bench Rejection -benchtime 5000x
func BenchmarkRejection(b *testing.B) {
	m := claimsEngine(b)
	names := m.FeatureNames()
	rows := randomRows(m, 200, 3)
	root := newRepo(b, repoVersion{model: "quiet", version: "1", src: "demo", manifest: lgbManifest},
		repoVersion{model: "flooded", version: "1", src: "demo", manifest: lgbManifest})
	s, err := New(Config{ModelDir: root, Logger: slog.New(slog.DiscardHandler), AdmissionCapacity: 2,
		AdmissionMaxQueueWait: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Reload()
	fill := fillBulkhead(b, s, "flooded")
	defer fill()
	// The model field last: the request without it, then field 1 appended.
	last := mustMarshal(b, protoRequest("", "", names, rows, false))
	last = protowire.AppendString(protowire.AppendTag(last, 1, protowire.BytesType), "flooded")
	for _, c := range []struct {
		name   string
		body   []byte
		status int
	}{
		{"served", mustMarshal(b, protoRequest("quiet", "", names, rows, false)), 200},
		{"rejected", mustMarshal(b, protoRequest("flooded", "", names, rows, false)), 429},
		{"rejected-after-decoding", last, 429},
	} {
		body := c.body
		b.Run(c.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			ctx.Init(&req, nil, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/v1/predict")
				ctx.Request.Header.SetContentType("application/x-protobuf")
				ctx.Request.SetBody(body)
				ctx.Response.Reset()
				s.handle(&ctx)
				if ctx.Response.StatusCode() != c.status {
					b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}
