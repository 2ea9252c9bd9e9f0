package sidecar

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/predictd/predictd/examples"
	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/predictd/predictd/sidecar/tracing/otlptest"
)

// scrapeNames returns the metric family names (# TYPE lines) of a Prometheus text page.
func scrapeNames(t *testing.T, page []byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(page)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	return names
}

// TestMetricsProcessAndGo scrapes a running sidecar over HTTP and finds the standard
// process_* and go_* collectors beside predictd's own series.
func TestMetricsProcessAndGo(t *testing.T) {
	ts := startServer(t, Config{ModelFS: examples.Models()})
	code, body := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"claims","candidates":[{"id":"a","features":{"DrivAge":55}}]}`))
	if code != 200 {
		t.Fatalf("predict: %d %s", code, body)
	}
	code, page := ts.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	names := scrapeNames(t, page)
	for _, want := range []string{"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
		"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_inuse_bytes",
		"predictd_requests_total", "predictd_request_duration_seconds"} {
		if !names[want] {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(string(page), `target_info{service_name="predictd"}`) {
		t.Errorf("/metrics lacks target_info with service_name=predictd")
	}
}

// TestOTLPFromEnvironment runs the predictd binary with only the standard OTEL_*
// variables set (no flag), sends a prediction, stops it, and checks that a real collector
// received its spans and metrics, named by OTEL_SERVICE_NAME, over each protocol.
func TestOTLPFromEnvironment(t *testing.T) {
	bin := predictdBinary(t)
	for _, protocol := range []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			col := otlptest.Start(t)
			endpoint := col.HTTPEndpoint
			if protocol == tracing.ProtocolGRPC {
				endpoint = col.GRPCEndpoint
			}
			dir, err := os.MkdirTemp("", "pdotel")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "s")
			cmd, hc, stderr := serveBinary(t, bin, sock, []string{
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_SERVICE_NAME=ranker-sidecar",
				"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=test",
			}, "--listen", "", "--unix", sock)
			if sc := postPredict(t, hc, `{"model":"claims","candidates":[{"id":"a","features":{"DrivAge":55}}]}`); sc != 200 {
				t.Fatalf("predict: %d", sc)
			}
			// Shutdown exports the last metrics and flushes the spans.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit: %v\n%s", err, stderr)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("did not exit after SIGTERM\n%s", stderr)
			}
			var spans []string
			for _, s := range col.Spans() {
				if s.Service != "ranker-sidecar" || s.Protocol != protocol {
					t.Fatalf("span %+v", s)
				}
				spans = append(spans, s.Name)
			}
			for _, want := range []string{"predict", "decode", "score", "encode"} {
				if !slices.Contains(spans, want) {
					t.Fatalf("collector got spans %v, lacks %s\n%s", spans, want, stderr)
				}
			}
			got := map[string]bool{}
			for _, m := range col.Metrics() {
				if m.Service != "ranker-sidecar" || m.Protocol != protocol {
					t.Fatalf("metric %+v", m)
				}
				got[m.Name] = true
			}
			for _, want := range []string{"predictd.requests", "predictd.request.duration", "predictd.candidates"} {
				if !got[want] {
					t.Fatalf("collector got metrics %v, lacks %s\n%s", got, want, stderr)
				}
			}
		})
	}
}
