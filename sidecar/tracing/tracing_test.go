package tracing

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// simulateRequest plays the sidecar's handler for one request with the given headers.
func simulateRequest(p *Provider, hdr http.Header) {
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(hdr))
	ctx, root := p.Predict(ctx, "ctr", "3")
	defer root.End()
	p.Decode(ctx).End()
	p.FeaturesFetch(ctx, SourceCache).End()
	EndWithError(p.FeaturesFetch(ctx, SourceRedis), errors.New("redis: i/o timeout"))
	p.Score(ctx, "c/avx2", 64).End()
	p.Encode(ctx).End()
}

func attr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestSpanTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, err := NewProvider(Config{}, sdktrace.NewSimpleSpanProcessor(exp))
	if err != nil {
		t.Fatal(err)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	simulateRequest(p, http.Header{"Traceparent": {parent}})
	// The in-memory exporter forgets its spans at Shutdown: read them before.
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	defer p.Shutdown(context.Background())
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	// Spans are exported as they end: the children in order, the root last.
	want := []string{SpanDecode, SpanFeaturesFetch, SpanFeaturesFetch, SpanScore, SpanEncode, SpanPredict}
	if !slices.Equal(names, want) {
		t.Fatalf("spans %v, want %v", names, want)
	}
	root := spans[len(spans)-1]
	if root.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		root.Parent.SpanID().String() != "00f067aa0ba902b7" || !root.Parent.IsRemote() {
		t.Fatalf("root span does not continue the caller's trace: parent %v", root.Parent)
	}
	if root.SpanKind != trace.SpanKindServer || attr(root, AttrModel).AsString() != "ctr" || attr(root, AttrModelVersion).AsString() != "3" {
		t.Fatalf("root span: kind %v, attributes %v", root.SpanKind, root.Attributes)
	}
	if got := root.Resource.Attributes(); !slices.ContainsFunc(got, func(kv attribute.KeyValue) bool {
		return kv.Key == "service.name" && kv.Value.AsString() == "predictd"
	}) {
		t.Fatalf("resource %v lacks service.name=predictd", got)
	}
	for _, s := range spans[:len(spans)-1] {
		if s.Parent.SpanID() != root.SpanContext.SpanID() || s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Fatalf("span %s is not a child of predict", s.Name)
		}
	}
	if v := attr(spans[1], AttrFeaturesSource).AsString(); v != SourceCache {
		t.Fatalf("first fetch source %q", v)
	}
	redis := spans[2]
	if attr(redis, AttrFeaturesSource).AsString() != SourceRedis || redis.Status.Code != codes.Error ||
		len(redis.Events) != 1 || redis.Events[0].Name != "exception" {
		t.Fatalf("failed redis fetch: attributes %v, status %v, events %v", redis.Attributes, redis.Status, redis.Events)
	}
	score := spans[3]
	if attr(score, AttrScoreBackend).AsString() != "c/avx2" || attr(score, AttrRows).AsInt64() != 64 {
		t.Fatalf("score attributes %v", score.Attributes)
	}
}

func TestSampleRatioZeroRecordsNothingNew(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	zero := 0.0
	p, err := NewProvider(Config{SampleRatio: &zero}, sdktrace.NewSimpleSpanProcessor(exp))
	if err != nil {
		t.Fatal(err)
	}
	simulateRequest(p, http.Header{})
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans recorded at ratio 0", n)
	}
	// A sampled caller's trace is still followed.
	simulateRequest(p, http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	if n := len(exp.GetSpans()); n != 6 {
		t.Fatalf("%d spans for a sampled parent, want 6", n)
	}
}

func TestDisabledByDefault(t *testing.T) {
	p, err := Setup(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() {
		t.Fatal("tracing enabled without an endpoint")
	}
	ctx := context.Background()
	ctx2, span := p.Predict(ctx, "m", "1")
	if ctx2 != ctx || span.IsRecording() || span.SpanContext().IsValid() {
		t.Fatal("disabled Predict changed the context or returned a live span")
	}
	simulateRequest(p, http.Header{})
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOTLPExport sends spans to a real HTTP server over loopback and decodes what the
// exporter posted, as a collector would.
func TestOTLPExport(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
		paths []string
		auth  []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		paths = append(paths, r.URL.Path)
		auth = append(auth, r.Header.Get("Authorization"))
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	defer srv.Close()

	p, err := Setup(Config{Endpoint: srv.URL, Headers: map[string]string{"Authorization": "Bearer t0ken"}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled() {
		t.Fatal("not enabled with an endpoint")
	}
	simulateRequest(p, http.Header{})
	simulateRequest(p, http.Header{})
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(names)
	want := []string{"decode", "decode", "encode", "encode", "features.fetch", "features.fetch", "features.fetch",
		"features.fetch", "predict", "predict", "score", "score"}
	if !slices.Equal(names, want) {
		t.Fatalf("collector got %v, want %v", names, want)
	}
	for i := range paths {
		if paths[i] != "/v1/traces" || auth[i] != "Bearer t0ken" {
			t.Fatalf("export %d: path %q, Authorization %q", i, paths[i], auth[i])
		}
	}
}

func TestConfigErrors(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		_, err := Setup(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Setup(%+v) = %v, want an error containing %q", cfg, err, want)
		}
	}
	f(Config{Endpoint: "otel-collector:4318"}, "http://")
	f(Config{Endpoint: "ftp://x"}, "http://")
	bad := 1.5
	f(Config{Endpoint: "http://localhost:4318", SampleRatio: &bad}, "sample ratio")
	f2 := func(in, want string) {
		t.Helper()
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := withPath(u.String(), "/v1/traces"); got != want {
			t.Fatalf("endpoint %q → %q, want %q", in, got, want)
		}
	}
	f2("http://localhost:4318", "http://localhost:4318/v1/traces")
	f2("http://localhost:4318/", "http://localhost:4318/v1/traces")
	f2("https://collector.example/custom/path", "https://collector.example/custom/path")
}
