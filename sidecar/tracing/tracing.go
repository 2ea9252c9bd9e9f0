// Package tracing sets up predictd's OpenTelemetry export, traces and metrics, and names
// the spans of a prediction request.
//
// Setup reads the standard OTEL_* environment variables (otlp.go): an OTLP endpoint alone
// (OTEL_EXPORTER_OTLP_ENDPOINT, or the _TRACES_ / _METRICS_ one) turns export on, over
// OTLP/HTTP (protobuf, the spec's default) or OTLP/gRPC as OTEL_EXPORTER_OTLP_PROTOCOL
// says; OTEL_SERVICE_NAME names the service on both signals; OTEL_SDK_DISABLED=true turns
// everything off. Without an endpoint, Setup returns a disabled Provider: the span helpers
// then return a no-op span without touching the context, so tracing costs a branch.
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
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
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

// Config configures export. Field comments give the defaults; the OTEL_* variables
// fill what a field leaves unset (otlp.go).
type Config struct {
	// Endpoint is the OTLP endpoint of both signals, e.g. "http://otel-collector:4318"
	// (spans then go to its /v1/traces, metrics to /v1/metrics) or, with the grpc
	// protocol, "http://otel-collector:4317". It wins over OTEL_EXPORTER_OTLP_ENDPOINT
	// and the signal-specific variables. Empty: those variables decide; none set, no
	// export.
	Endpoint string
	// Headers are sent with every export (e.g. an API key), besides
	// OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
	// ServiceName is the service.name resource attribute unless OTEL_SERVICE_NAME (or
	// service.name in OTEL_RESOURCE_ATTRIBUTES) sets one; default "predictd".
	ServiceName string
	// SampleRatio is the fraction of new traces recorded, in [0, 1]; default 1. A request
	// that arrives with a sampled parent (traceparent header) follows its parent.
	SampleRatio *float64
	// ExportTimeout bounds one export; default OTEL_EXPORTER_OTLP_TIMEOUT, else 10s.
	ExportTimeout time.Duration
}

// Provider is predictd's tracer provider, and holds the OTLP metric reader that the
// sidecar's meter provider exports through.
type Provider struct {
	tp      trace.TracerProvider
	sdk     *sdktrace.TracerProvider // nil when disabled
	tracer  trace.Tracer
	enabled bool
	prop    propagation.TextMapPropagator
	res     *sdkresource.Resource
	reader  sdkmetric.Reader // nil: no OTLP metric export
	prods   *producers       // the reader's, added by AddMetricProducer
}

// producers are the metric Producers the OTLP reader exports beside the SDK's
// instruments; they may be added after the reader is built.
type producers struct {
	mu   sync.Mutex
	list []sdkmetric.Producer
}

func (ps *producers) Produce(ctx context.Context) ([]metricdata.ScopeMetrics, error) {
	ps.mu.Lock()
	list := ps.list
	ps.mu.Unlock()
	var out []metricdata.ScopeMetrics
	var errs []error
	for _, p := range list {
		sm, err := p.Produce(ctx)
		out = append(out, sm...)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// AddMetricProducer makes the OTLP metric reader export p's metrics too: counts the
// process aggregates itself rather than through SDK instruments. A no-op without a
// metric reader.
func (p *Provider) AddMetricProducer(pr sdkmetric.Producer) {
	if p.prods == nil {
		return
	}
	p.prods.mu.Lock()
	p.prods.list = append(p.prods.list, pr)
	p.prods.mu.Unlock()
}

// Disabled returns a Provider that records and exports nothing, whatever the environment
// says.
func Disabled() *Provider {
	tp := noop.NewTracerProvider()
	return &Provider{tp: tp, tracer: tp.Tracer("predictd"), prop: propagation.TraceContext{}, res: defaultResource}
}

// defaultResource describes a process without OTEL_* variables: service.name predictd.
var defaultResource = sdkresource.NewSchemaless(semconv.ServiceName("predictd"))

// Setup builds the Provider that cfg and the OTEL_* variables describe: spans through a
// batch span processor to an OTLP exporter when traces are enabled, and a periodic OTLP
// metric reader (MetricReader) when metrics are. Either, both or neither may be on.
func Setup(cfg Config) (*Provider, error) {
	env, err := readEnv(cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if env.disabled {
		return Disabled(), nil
	}
	res, err := newResource(cfg.ServiceName)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	var reader sdkmetric.Reader
	prods := &producers{}
	if env.metrics {
		// New does not connect; the first export does.
		exp, err := newMetricExporter(cfg, env.metricsProtocol)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP metrics: %w", err)
		}
		// The interval and timeout come from OTEL_METRIC_EXPORT_INTERVAL (default 60s)
		// and OTEL_METRIC_EXPORT_TIMEOUT (30s).
		reader = sdkmetric.NewPeriodicReader(exp, sdkmetric.WithProducer(prods))
	}
	if !env.traces {
		p := Disabled()
		p.res, p.reader = res, reader
		if reader != nil {
			p.prods = prods
		}
		return p, nil
	}
	exp, err := newSpanExporter(cfg, env.tracesProtocol)
	if err != nil {
		if reader != nil {
			reader.Shutdown(context.Background())
		}
		return nil, fmt.Errorf("tracing: OTLP traces: %w", err)
	}
	bsp := sdktrace.NewBatchSpanProcessor(exp)
	p, err := newProvider(cfg, bsp, res)
	if err != nil {
		bsp.Shutdown(context.Background()) // its goroutine, and the exporter's connections
		if reader != nil {
			reader.Shutdown(context.Background())
		}
		return nil, err
	}
	p.reader = reader
	if reader != nil {
		p.prods = prods
	}
	return p, nil
}

// NewProvider builds an enabled Provider that hands spans to sp; Setup uses it with the
// OTLP exporter, tests with an in-memory one. It reads no environment variable.
func NewProvider(cfg Config, sp sdktrace.SpanProcessor) (*Provider, error) {
	name := cfg.ServiceName
	if name == "" {
		name = "predictd"
	}
	return newProvider(cfg, sp, sdkresource.NewSchemaless(semconv.ServiceName(name)))
}

func newProvider(cfg Config, sp sdktrace.SpanProcessor, res *sdkresource.Resource) (*Provider, error) {
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	if !(ratio >= 0 && ratio <= 1) {
		return nil, fmt.Errorf("tracing: sample ratio %v is outside [0, 1]", ratio)
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
		res:     res,
	}, nil
}

// Resource describes the process on exported spans and metrics: service.name and the
// other attributes of OTEL_RESOURCE_ATTRIBUTES, the SDK, the host.
func (p *Provider) Resource() *sdkresource.Resource { return p.res }

// MetricReader returns the periodic reader that exports metrics over OTLP, or nil when
// metric export is off. Register it with one meter provider (the sidecar's), which then
// shuts it down; Shutdown also stops it if none did.
func (p *Provider) MetricReader() sdkmetric.Reader { return p.reader }

// TracerProvider returns the OpenTelemetry provider, for libraries that take one
// (e.g. the Redis client's instrumentation).
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Enabled tells whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p.enabled }

// Shutdown flushes queued spans and stops the exporters; call it during graceful
// shutdown, after the server stopped taking requests (the server's own shutdown already
// exported the last metrics).
func (p *Provider) Shutdown(ctx context.Context) error {
	var err error
	if p.reader != nil {
		if e := p.reader.Shutdown(ctx); e != nil && !errors.Is(e, sdkmetric.ErrReaderShutdown) {
			err = e
		}
	}
	if p.sdk != nil {
		err = errors.Join(err, p.sdk.Shutdown(ctx))
	}
	return err
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
