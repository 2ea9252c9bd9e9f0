package sidecar

import (
	"context"
	"fmt"

	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// bg is the context for metric calls: measurements carry no trace context here.
var bg = context.Background()

// metrics are the sidecar's OpenTelemetry instruments, exported in Prometheus text at
// /metrics beside the process_* and go_* collectors, and over OTLP when the tracing
// Provider holds a metric reader. Each server has its own provider and registry, so tests
// can run several.
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  fasthttp.RequestHandler

	requests   metric.Int64Counter     // predictd_requests_total{model,version}
	errors     metric.Int64Counter     // predictd_request_errors_total{model,version,code}
	candidates metric.Int64Counter     // predictd_candidates_total{model,version}
	latency    metric.Float64Histogram // predictd_request_duration_seconds{model,version}
	loadErrors metric.Int64Counter     // predictd_model_load_errors_total{model,version}
	reloads    metric.Int64Counter     // predictd_reloads_total{result}
	degraded   metric.Int64Counter     // predictd_degraded_responses_total{model,version}
	panics     metric.Int64Counter     // predictd_panics_total{path}

	background    metric.Int64Counter   // predictd_background_scorings_total{model,version}
	backgroundCPU metric.Float64Counter // predictd_background_cpu_seconds_total{model,version}
}

// latencyBuckets span 50µs to 5s: a small request over a Unix socket takes tens of
// microseconds, a deadline-bound one up to the default deadline.
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// newMetrics builds the instruments on a meter provider that describes the process as
// tp.Resource says and exports through tp.MetricReader too, when tp has one.
func newMetrics(tp *tracing.Provider) (*metrics, error) {
	reg := prometheus.NewRegistry()
	// The standard process_* (CPU, resident memory, open files) and go_* (goroutines, GC
	// pauses, heap) series every Prometheus dashboard expects of a Go process.
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("process collector: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("go collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(tp.Resource())}
	if r := tp.MetricReader(); r != nil {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	meter := mp.Meter("github.com/predictd/predictd/sidecar")
	m := &metrics{provider: mp}
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var errs [10]error
	m.requests, errs[0] = meter.Int64Counter("predictd.requests",
		metric.WithDescription("Prediction requests answered successfully."))
	m.errors, errs[1] = meter.Int64Counter("predictd.request.errors",
		metric.WithDescription("Prediction requests answered with an error, by error code."))
	m.candidates, errs[2] = meter.Int64Counter("predictd.candidates",
		metric.WithDescription("Rows (candidates) scored."))
	m.latency, errs[3] = meter.Float64Histogram("predictd.request.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...),
		metric.WithDescription("Time from a decoded request to its encoded response, successful requests."))
	m.loadErrors, errs[4] = meter.Int64Counter("predictd.model.load.errors",
		metric.WithDescription("Model versions that failed to load."))
	m.reloads, errs[5] = meter.Int64Counter("predictd.reloads",
		metric.WithDescription("Repository reloads, by result (ok, or error when a version failed)."))
	m.degraded, errs[6] = meter.Int64Counter("predictd.degraded.responses",
		metric.WithDescription("Successful predictions with store-backed features from stale cache or defaults (degraded: true)."))
	m.panics, errs[7] = meter.Int64Counter("predictd.panics",
		metric.WithDescription("Requests whose handler panicked (a bug), answered 500; the log has the stack."))
	m.background, errs[8] = meter.Int64Counter("predictd.background.scorings",
		metric.WithDescription("Requests scored on the C++ core's lowest-priority background threads (--background-after)."))
	m.backgroundCPU, errs[9] = meter.Float64Counter("predictd.background.cpu",
		metric.WithUnit("s"), metric.WithDescription("CPU time of the requests scored on the background threads."))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}
