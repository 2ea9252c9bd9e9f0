// Package otlptest is an OpenTelemetry collector for tests: it accepts traces and metrics
// over OTLP/gRPC and OTLP/HTTP (protobuf) on loopback, as a real collector does, and keeps
// the name and service.name of every span and metric it receives.
package otlptest

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Item is one received span or metric.
type Item struct {
	Name     string
	Service  string // the service.name resource attribute
	Protocol string // "grpc" or "http/protobuf"
	Path     string // the HTTP request path; empty over gRPC
}

// Collector is a running collector. Its methods are safe for concurrent use.
type Collector struct {
	// GRPCEndpoint is the gRPC listener as a URL, http://127.0.0.1:port.
	GRPCEndpoint string
	// HTTPEndpoint is the HTTP listener's base URL; spans go to /v1/traces, metrics to
	// /v1/metrics.
	HTTPEndpoint string

	mu      sync.Mutex
	spans   []Item
	metrics []Item
}

// Start starts a collector that stops when the test ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, traceService{c: c})
	colmetricpb.RegisterMetricsServiceServer(gs, metricsService{c: c})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	c.GRPCEndpoint = "http://" + ln.Addr().String()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		var req coltracepb.ExportTraceServiceRequest
		if !decode(w, r, &req) {
			return
		}
		c.addSpans(&req, "http/protobuf", r.URL.Path)
		reply(w, &coltracepb.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		var req colmetricpb.ExportMetricsServiceRequest
		if !decode(w, r, &req) {
			return
		}
		c.addMetrics(&req, "http/protobuf", r.URL.Path)
		reply(w, &colmetricpb.ExportMetricsServiceResponse{})
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c.HTTPEndpoint = hs.URL
	return c
}

// decode reads an OTLP/HTTP protobuf body (gzip-compressed or not) into m; on failure it
// answers 400 and returns false.
func decode(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "Content-Type "+ct+", want application/x-protobuf", http.StatusUnsupportedMediaType)
		return false
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return false
		}
		body = z
	}
	b, err := io.ReadAll(body)
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}

func serviceName(r *resourcepb.Resource) string {
	for _, kv := range r.GetAttributes() {
		if kv.GetKey() == "service.name" {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func (c *Collector) addSpans(req *coltracepb.ExportTraceServiceRequest, protocol, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := serviceName(rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, Item{Name: s.GetName(), Service: svc, Protocol: protocol, Path: path})
			}
		}
	}
}

func (c *Collector) addMetrics(req *colmetricpb.ExportMetricsServiceRequest, protocol, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		svc := serviceName(rm.GetResource())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				c.metrics = append(c.metrics, Item{Name: m.GetName(), Service: svc, Protocol: protocol, Path: path})
			}
		}
	}
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Item(nil), c.spans...)
}

// Metrics returns the metrics received so far, one Item per metric per export.
func (c *Collector) Metrics() []Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Item(nil), c.metrics...)
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	c *Collector
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.c.addSpans(req, "grpc", "")
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricsService struct {
	colmetricpb.UnimplementedMetricsServiceServer
	c *Collector
}

func (s metricsService) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	s.c.addMetrics(req, "grpc", "")
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}
