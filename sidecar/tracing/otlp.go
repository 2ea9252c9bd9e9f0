package tracing

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL). http/json is the third the specification
// names; the Go exporters do not speak it.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// exportEnv is what the OTEL_* variables and Config.Endpoint decide before any exporter
// is built. The exporters themselves read the rest (endpoints, headers, timeout,
// compression, certificates, temporality) from the same variables.
type exportEnv struct {
	disabled        bool // OTEL_SDK_DISABLED=true
	traces, metrics bool
	tracesProtocol  string
	metricsProtocol string
}

// readEnv decides which signals are exported and over which protocol. A signal is
// exported when an endpoint is set for it (Config.Endpoint, OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT) or OTEL_<SIGNAL>_EXPORTER=otlp asks for it (then
// to the protocol's default endpoint, localhost:4318 or :4317); OTEL_<SIGNAL>_EXPORTER=none
// turns it off.
func readEnv(cfg Config) (exportEnv, error) {
	var e exportEnv
	if v, _ := os.LookupEnv("OTEL_SDK_DISABLED"); strings.EqualFold(strings.TrimSpace(v), "true") {
		e.disabled = true
		return e, nil
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return e, fmt.Errorf("endpoint %q must be an http:// or https:// URL, like http://otel-collector:4318", cfg.Endpoint)
		}
	}
	var err error
	if e.traces, e.tracesProtocol, err = signalEnv(cfg, "TRACES"); err != nil {
		return e, err
	}
	if e.metrics, e.metricsProtocol, err = signalEnv(cfg, "METRICS"); err != nil {
		return e, err
	}
	return e, nil
}

// signalEnv reads one signal's exporter, endpoints and protocol; signal is TRACES or
// METRICS.
func signalEnv(cfg Config, signal string) (on bool, protocol string, err error) {
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_" + signal + "_EXPORTER")))
	switch exporter {
	case "", "otlp":
	case "none":
		return false, "", nil
	default:
		return false, "", fmt.Errorf("OTEL_%s_EXPORTER=%q: predictd exports only otlp (or none)", signal, exporter)
	}
	on = exporter == "otlp" || cfg.Endpoint != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
	name := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
	protocol = strings.TrimSpace(os.Getenv(name))
	if protocol == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
		protocol = strings.TrimSpace(os.Getenv(name))
	}
	switch protocol {
	case "":
		protocol = ProtocolHTTP // the specification's default
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return false, "", fmt.Errorf("%s=%q: want %s or %s", name, protocol, ProtocolHTTP, ProtocolGRPC)
	}
	return on, protocol, nil
}

// newResource describes the process: service.name (OTEL_SERVICE_NAME, else
// OTEL_RESOURCE_ATTRIBUTES, else name, else predictd), the other attributes of
// OTEL_RESOURCE_ATTRIBUTES, the SDK and the host. Later detectors win over earlier ones.
func newResource(name string) (*sdkresource.Resource, error) {
	if name == "" {
		name = "predictd"
	}
	res, err := sdkresource.New(context.Background(),
		sdkresource.WithAttributes(semconv.ServiceName(name)),
		sdkresource.WithTelemetrySDK(),
		sdkresource.WithHost(),
		sdkresource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	return res, nil
}

// withPath adds an OTLP/HTTP signal path (/v1/traces, /v1/metrics) to an endpoint given
// without one; an endpoint with a path is used as it is.
func withPath(endpoint, path string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	v := *u
	v.Path = path
	return v.String()
}

// exporterOptions are one OTLP exporter's options from cfg; the four exporters (traces and
// metrics, gRPC and HTTP) each have their own option type, built by the three functions.
func exporterOptions[O any](cfg Config, endpoint string, withEndpoint func(string) O,
	withHeaders func(map[string]string) O, withTimeout func(time.Duration) O) []O {
	var opts []O
	if cfg.Endpoint != "" {
		opts = append(opts, withEndpoint(endpoint))
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, withHeaders(cfg.Headers))
	}
	if cfg.ExportTimeout > 0 {
		opts = append(opts, withTimeout(cfg.ExportTimeout))
	}
	return opts
}

func newSpanExporter(cfg Config, protocol string) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	if protocol == ProtocolGRPC {
		return otlptracegrpc.New(ctx, exporterOptions(cfg, cfg.Endpoint,
			otlptracegrpc.WithEndpointURL, otlptracegrpc.WithHeaders, otlptracegrpc.WithTimeout)...)
	}
	return otlptracehttp.New(ctx, exporterOptions(cfg, withPath(cfg.Endpoint, "/v1/traces"),
		otlptracehttp.WithEndpointURL, otlptracehttp.WithHeaders, otlptracehttp.WithTimeout)...)
}

func newMetricExporter(cfg Config, protocol string) (sdkmetric.Exporter, error) {
	ctx := context.Background()
	if protocol == ProtocolGRPC {
		return otlpmetricgrpc.New(ctx, exporterOptions(cfg, cfg.Endpoint,
			otlpmetricgrpc.WithEndpointURL, otlpmetricgrpc.WithHeaders, otlpmetricgrpc.WithTimeout)...)
	}
	return otlpmetrichttp.New(ctx, exporterOptions(cfg, withPath(cfg.Endpoint, "/v1/metrics"),
		otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithHeaders, otlpmetrichttp.WithTimeout)...)
}
