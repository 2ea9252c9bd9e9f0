// Package tracing sets up OpenTelemetry tracing for predictd and names the spans of a
// prediction request.
//
// With no endpoint configured, Setup returns a disabled Provider: the span helpers then
// return a no-op span without touching the context, so tracing costs a branch. With an
// endpoint, spans are batched and exported over OTLP/HTTP (protobuf), the protocol every
// OpenTelemetry collector accepts on port 4318.
//
// A request's span tree:
//
//	predict                      (model, model.version, rows)
//	├── decode                   (request body → candidates)
//	├── features.fetch           (features.source = cache | redis | snapshot)
//	├── score                    (score.backend = c/avx2 | go | onnx/cuda …, rows)
//	└── encode                   (response body)
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Span names. The sidecar's request handler creates one of each per request.
const (
	SpanPredict       = "predict"
	SpanDecode        = "decode"
	SpanFeaturesFetch = "features.fetch"
	SpanScore         = "score"
	SpanEncode        = "encode"
)

// Attribute keys set by the span helpers.
const (
	AttrModel          = attribute.Key("model")
	AttrModelVersion   = attribute.Key("model.version")
	AttrRows           = attribute.Key("rows")
	AttrFeaturesSource = attribute.Key("features.source")
	AttrScoreBackend   = attribute.Key("score.backend")
	// AttrScoreBackground is true on the score span of a request scored on the C++ core's
	// lowest-priority background threads (sidecar.Config.BackgroundAfter).
	AttrScoreBackground = attribute.Key("score.background")
)

// Feature sources for FeaturesFetch.
const (
	SourceCache    = "cache"
	SourceRedis    = "redis"
	SourceSnapshot = "snapshot"
)

// Config configures tracing. Field comments give the defaults.
type Config struct {
	// Endpoint is the OTLP/HTTP endpoint, e.g. "http://otel-collector:4318" (spans go to
	// its /v1/traces) or a full URL ending in a path. Empty disables tracing.
	Endpoint string
	// Headers are sent with every export (e.g. an API key).
	Headers map[string]string
	// ServiceName is the service.name resource attribute; default "predictd".
	ServiceName string
	// SampleRatio is the fraction of new traces recorded, in [0, 1]; default 1. A request
	// that arrives with a sampled parent (traceparent header) follows its parent.
	SampleRatio *float64
	// ExportTimeout bounds one export; default 10s.
	ExportTimeout time.Duration
}

// Provider is predictd's tracer provider.
type Provider struct {
	tp      trace.TracerProvider
	sdk     *sdktrace.TracerProvider // nil when disabled
	tracer  trace.Tracer
	enabled bool
	prop    propagation.TextMapPropagator
}

// Setup builds the Provider that cfg describes: disabled without an endpoint, else an
// OTLP/HTTP exporter behind a batch span processor.
func Setup(cfg Config) (*Provider, error) {
	if cfg.Endpoint == "" {
		tp := noop.NewTracerProvider()
		return &Provider{tp: tp, tracer: tp.Tracer("predictd"), prop: propagation.TraceContext{}}, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: endpoint %q must be an http:// or https:// URL, like http://otel-collector:4318", cfg.Endpoint)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpointURL(u))}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	if cfg.ExportTimeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(cfg.ExportTimeout))
	}
	// New does not connect; the first export does.
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return NewProvider(cfg, sdktrace.NewBatchSpanProcessor(exp))
}

// endpointURL adds the OTLP traces path to an endpoint given without one.
func endpointURL(u *url.URL) string {
	if u.Path == "" || u.Path == "/" {
		v := *u
		v.Path = "/v1/traces"
		return v.String()
	}
	return u.String()
}

// NewProvider builds an enabled Provider that hands spans to sp; Setup uses it with the
// OTLP exporter, tests with an in-memory one.
func NewProvider(cfg Config, sp sdktrace.SpanProcessor) (*Provider, error) {
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	if !(ratio >= 0 && ratio <= 1) {
		return nil, fmt.Errorf("tracing: sample ratio %v is outside [0, 1]", ratio)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "predictd"
	}
	res, err := sdkresource.Merge(sdkresource.Default(),
		sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(name)))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(sp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return &Provider{
		tp:      tp,
		sdk:     tp,
		tracer:  tp.Tracer("github.com/predictd/predictd/sidecar"),
		enabled: true,
		prop:    propagation.TraceContext{},
	}, nil
}

// TracerProvider returns the OpenTelemetry provider, for libraries that take one
// (e.g. the Redis client's instrumentation).
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Enabled tells whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p.enabled }

// Shutdown flushes queued spans and stops the exporter; call it during graceful
// shutdown, after the server stopped taking requests.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// ForceFlush exports every finished span now.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.ForceFlush(ctx)
}

// Extract returns ctx carrying the remote parent from W3C trace-context headers
// ("traceparent", "tracestate") read through carrier, so predictd's spans join the
// caller's trace.
func (p *Provider) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if !p.enabled {
		return ctx
	}
	return p.prop.Extract(ctx, carrier)
}

// noopSpan is returned by the helpers when tracing is disabled: ending it does nothing
// and it allocates nothing.
var noopSpan = trace.SpanFromContext(context.Background())

// Predict starts a request's root span. The returned context carries it: pass it to the
// other helpers.
func (p *Provider) Predict(ctx context.Context, model, version string) (context.Context, trace.Span) {
	if !p.enabled {
		return ctx, noopSpan
	}
	return p.tracer.Start(ctx, SpanPredict, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(AttrModel.String(model), AttrModelVersion.String(version)))
}

// Decode starts the span for decoding the request body.
func (p *Provider) Decode(ctx context.Context) trace.Span { return p.child(ctx, SpanDecode) }

// FeaturesFetch starts the span for a feature-store lookup; source is SourceCache,
// SourceRedis or SourceSnapshot. Call it once per source consulted.
func (p *Provider) FeaturesFetch(ctx context.Context, source string) trace.Span {
	if !p.enabled {
		return noopSpan
	}
	_, s := p.tracer.Start(ctx, SpanFeaturesFetch, trace.WithAttributes(AttrFeaturesSource.String(source)))
	return s
}

// Score starts the span for scoring rows with backend (the model's BackendName).
func (p *Provider) Score(ctx context.Context, backend string, rows int) trace.Span {
	if !p.enabled {
		return noopSpan
	}
	_, s := p.tracer.Start(ctx, SpanScore, trace.WithAttributes(AttrScoreBackend.String(backend), AttrRows.Int(rows)))
	return s
}

// Encode starts the span for encoding the response.
func (p *Provider) Encode(ctx context.Context) trace.Span { return p.child(ctx, SpanEncode) }

func (p *Provider) child(ctx context.Context, name string) trace.Span {
	if !p.enabled {
		return noopSpan
	}
	_, s := p.tracer.Start(ctx, name)
	return s
}

// EndWithError records err on span (if not nil), marks the span failed, and ends it.
func EndWithError(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
