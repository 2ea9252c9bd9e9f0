package tracing

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/predictd/predictd/sidecar/tracing/otlptest"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// otelVars are the variables these tests set; each test starts with none of them.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
}

func clearOTEL(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
}

func TestReadEnv(t *testing.T) {
	f := func(cfg Config, env map[string]string, want exportEnv) {
		t.Helper()
		clearOTEL(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		got, err := readEnv(cfg)
		if err != nil || got != want {
			t.Fatalf("readEnv(%+v) with %v = %+v, %v; want %+v", cfg, env, got, err, want)
		}
	}
	h, g := ProtocolHTTP, ProtocolGRPC
	f(Config{}, nil, exportEnv{tracesProtocol: h, metricsProtocol: h})
	f(Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, exportEnv{traces: true, metrics: true, tracesProtocol: h, metricsProtocol: h})
	f(Config{Endpoint: "http://c:4318"}, nil, exportEnv{traces: true, metrics: true, tracesProtocol: h, metricsProtocol: h})
	f(Config{}, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		exportEnv{traces: true, tracesProtocol: g, metricsProtocol: g})
	f(Config{}, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
		exportEnv{metrics: true, tracesProtocol: h, metricsProtocol: g})
	f(Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"},
		exportEnv{traces: true, tracesProtocol: h})
	f(Config{}, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, exportEnv{traces: true, tracesProtocol: h, metricsProtocol: h})
	f(Config{Endpoint: "http://c:4318"}, map[string]string{"OTEL_SDK_DISABLED": "TRUE"}, exportEnv{disabled: true})
	f(Config{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"},
		exportEnv{traces: true, metrics: true, tracesProtocol: h, metricsProtocol: h})

	bad := func(env map[string]string, want string) {
		t.Helper()
		clearOTEL(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		_, err := Setup(Config{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Setup with %v = %v, want an error containing %q", env, err, want)
		}
	}
	bad(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json": want http/protobuf or grpc`)
	bad(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	bad(map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "exports only otlp")
	bad(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_RESOURCE_ATTRIBUTES": "team=ranking,region"}, "OTEL_RESOURCE_ATTRIBUTES")
}

// TestExportFromEnvironment sets only the OTEL_* variables (or the endpoint in Config,
// as --otlp-endpoint does, and the protocol in the environment) and checks that spans and
// metrics reach a real collector over each protocol, named by OTEL_SERVICE_NAME.
func TestExportFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		protocol string
		inConfig bool
	}{{ProtocolHTTP, false}, {ProtocolGRPC, false}, {ProtocolHTTP, true}, {ProtocolGRPC, true}} {
		protocol := tc.protocol
		t.Run(fmt.Sprintf("%s/config=%v", protocol, tc.inConfig), func(t *testing.T) {
			col := otlptest.Start(t)
			clearOTEL(t)
			endpoint := col.HTTPEndpoint
			if protocol == ProtocolGRPC {
				endpoint = col.GRPCEndpoint
			}
			var cfg Config
			if tc.inConfig {
				cfg.Endpoint = endpoint
			} else {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			}
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_SERVICE_NAME", "ranker-sidecar")
			p, err := Setup(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Enabled() || p.MetricReader() == nil {
				t.Fatalf("endpoint alone: traces %v, metrics %v", p.Enabled(), p.MetricReader() != nil)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(p.MetricReader()), sdkmetric.WithResource(p.Resource()))
			c, err := mp.Meter("test").Int64Counter("predictd.requests")
			if err != nil {
				t.Fatal(err)
			}
			c.Add(context.Background(), 1, metric.WithAttributes())
			simulateRequest(p, http.Header{})
			// The meter provider's shutdown exports the last metrics; the Provider's, the spans.
			if err := mp.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			var spans []string
			for _, s := range col.Spans() {
				if s.Service != "ranker-sidecar" || s.Protocol != protocol || protocol == ProtocolHTTP && s.Path != "/v1/traces" {
					t.Fatalf("span %+v", s)
				}
				spans = append(spans, s.Name)
			}
			slices.Sort(spans)
			if want := []string{"decode", "encode", "features.fetch", "features.fetch", "predict", "score"}; !slices.Equal(spans, want) {
				t.Fatalf("collector got spans %v, want %v", spans, want)
			}
			ms := col.Metrics()
			if !slices.ContainsFunc(ms, func(m otlptest.Item) bool {
				return m.Name == "predictd.requests" && m.Service == "ranker-sidecar" && m.Protocol == protocol &&
					(protocol == ProtocolGRPC || m.Path == "/v1/metrics")
			}) {
				t.Fatalf("collector got metrics %+v, want predictd.requests of ranker-sidecar", ms)
			}
		})
	}
}

// TestDisabledByEnvironment: OTEL_SDK_DISABLED=true wins over an endpoint.
func TestDisabledByEnvironment(t *testing.T) {
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	p, err := Setup(Config{Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() || p.MetricReader() != nil {
		t.Fatal("export on with OTEL_SDK_DISABLED=true")
	}
}
