package sidecar

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// bg is the context for metric calls: measurements carry no trace context here.
var bg = context.Background()

// metrics are the sidecar's OpenTelemetry instruments, exported in Prometheus text at
// /metrics beside the process_* and go_* collectors, and over OTLP when the tracing
// Provider holds a metric reader. Each server has its own provider and registry, so tests
// can run several.
//
// The per-request families (requests, candidates, request duration, degraded, errors,
// background scorings) are not SDK instruments: a synchronous SDK Add looks its attribute
// set up on every call, hundreds of nanoseconds each, four or more per request. They are
// atomics in each version's seriesCounts instead, and m (a metric Producer registered on
// both readers) turns them into the same cumulative sums and histogram at collection
// (BenchmarkRecordRequest).
type metrics struct {
	provider *sdkmetric.MeterProvider
	handler  fasthttp.RequestHandler

	loadErrors metric.Int64Counter // predictd_model_load_errors_total{model,version}
	reloads    metric.Int64Counter // predictd_reloads_total{result}
	panics     metric.Int64Counter // predictd_panics_total{path}

	// acceptErrs counts accept errors the listeners retried (listener.go), from start;
	// predictd_accept_errors_total.
	acceptErrs atomic.Int64
	start      time.Time

	// mu guards series; errs holds *errCount by errKey.
	mu     sync.Mutex
	series map[seriesKey]*seriesCounts
	errs   sync.Map
	// retain is how long a retired version's series stay exported: long enough for every
	// scrape and OTLP export (default interval 60s) to see its last counts.
	retain time.Duration
}

// retainRetired is metrics.retain outside tests.
const retainRetired = 10 * time.Minute

type seriesKey struct{ model, version string }

// errKey is one series of predictd_request_errors_total.
type errKey struct{ model, version, code string }

type errCount struct {
	n     atomic.Int64
	start time.Time
}

// seriesCounts are one (model, version)'s per-request counts since it first loaded. A
// reload of the same version shares them, so its counters never go back. Safe for
// concurrent use; the fields below users are guarded by metrics.mu.
type seriesCounts struct {
	requests, candidates, degraded atomic.Int64 // predictd_requests_total, ..._candidates_total, ..._degraded_responses_total
	background, backgroundNs       atomic.Int64 // predictd_background_scorings_total, ..._background_cpu_seconds_total
	latencyNs                      atomic.Int64 // sum of predictd_request_duration_seconds
	buckets                        [len(latencyBounds) + 1]atomic.Int64

	attrs   attribute.Set // model, version
	start   time.Time
	users   int       // loaded versions holding these counts
	retired time.Time // when users dropped to 0
}

// recordRequest counts one successful request of rows candidates that took d.
func (c *seriesCounts) recordRequest(rows int, d time.Duration, degraded bool) {
	c.requests.Add(1)
	c.candidates.Add(int64(rows))
	if degraded {
		c.degraded.Add(1)
	}
	ns := d.Nanoseconds()
	c.latencyNs.Add(ns)
	// Upper bounds inclusive, as the SDK's histogram and Prometheus' le; most requests
	// fall in the first buckets, so a scan beats a binary search.
	i := 0
	for i < len(latencyBoundsNs) && ns > latencyBoundsNs[i] {
		i++
	}
	c.buckets[i].Add(1)
}

// recordBackground counts one request scored on the background threads.
func (c *seriesCounts) recordBackground(cpu time.Duration) {
	c.background.Add(1)
	c.backgroundNs.Add(cpu.Nanoseconds())
}

// acquire returns the counts of (model, version) for a version being loaded; release
// them when the version retires.
func (m *metrics) acquire(model, version string) *seriesCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := seriesKey{model, version}
	c := m.series[k]
	if c == nil {
		c = &seriesCounts{attrs: attribute.NewSet(attribute.String("model", model), attribute.String("version", version)),
			start: time.Now()}
		m.series[k] = c
	}
	c.users++
	c.retired = time.Time{}
	return c
}

// releaseSeries drops a retired version's hold on c; Produce forgets c m.retain later
// unless a version of the same name loads again.
func (m *metrics) releaseSeries(c *seriesCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.users--; c.users == 0 {
		c.retired = time.Now()
	}
}

// countError counts one request answered with code; model and version are empty when
// the request named none that loaded.
func (m *metrics) countError(model, version, code string) {
	k := errKey{model, version, code}
	c, ok := m.errs.Load(k)
	if !ok {
		c, _ = m.errs.LoadOrStore(k, &errCount{start: time.Now()})
	}
	c.(*errCount).n.Add(1)
}

// Produce implements sdkmetric.Producer: the per-request families as cumulative data,
// in the form the SDK's own counters and histogram take. It forgets the series of
// versions retired more than m.retain ago, after reporting them one last time.
func (m *metrics) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	var (
		requests, candidates, degraded, background []metricdata.DataPoint[int64]
		backgroundCPU                              []metricdata.DataPoint[float64]
		latency                                    []metricdata.HistogramDataPoint[float64]
		gone                                       = map[seriesKey]bool{}
	)
	m.mu.Lock()
	for k, c := range m.series {
		sum := func(n int64) metricdata.DataPoint[int64] {
			return metricdata.DataPoint[int64]{Attributes: c.attrs, StartTime: c.start, Time: now, Value: n}
		}
		// As with the SDK's instruments, a series appears with its first count.
		if n := c.requests.Load(); n > 0 {
			requests = append(requests, sum(n))
			candidates = append(candidates, sum(c.candidates.Load()))
			h := metricdata.HistogramDataPoint[float64]{Attributes: c.attrs, StartTime: c.start, Time: now,
				Bounds: latencyBuckets, BucketCounts: make([]uint64, len(c.buckets))}
			for i := range c.buckets {
				n := uint64(c.buckets[i].Load())
				h.BucketCounts[i] = n
				h.Count += n
			}
			// Read after the buckets, the sum may hold a request they miss; the next
			// collection agrees again.
			h.Sum = float64(c.latencyNs.Load()) / 1e9
			latency = append(latency, h)
		}
		if n := c.degraded.Load(); n > 0 {
			degraded = append(degraded, sum(n))
		}
		if n := c.background.Load(); n > 0 {
			background = append(background, sum(n))
			backgroundCPU = append(backgroundCPU, metricdata.DataPoint[float64]{Attributes: c.attrs, StartTime: c.start,
				Time: now, Value: float64(c.backgroundNs.Load()) / 1e9})
		}
		if c.users == 0 && now.Sub(c.retired) >= m.retain {
			delete(m.series, k)
			gone[k] = true
		}
	}
	// Still under mu, so no version of a gone series loads again meanwhile.
	var errs []metricdata.DataPoint[int64]
	m.errs.Range(func(key, val any) bool {
		k, c := key.(errKey), val.(*errCount)
		errs = append(errs, metricdata.DataPoint[int64]{StartTime: c.start, Time: now, Value: c.n.Load(),
			Attributes: attribute.NewSet(attribute.String("code", k.code), attribute.String("model", k.model),
				attribute.String("version", k.version))})
		if gone[seriesKey{k.model, k.version}] {
			m.errs.Delete(k) // no request holds the version: nothing adds to c any more
		}
		return true
	})
	m.mu.Unlock()
	counter := func(name, desc string, pts []metricdata.DataPoint[int64]) metricdata.Metrics {
		return metricdata.Metrics{Name: name, Description: desc, Data: metricdata.Sum[int64]{
			DataPoints: pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}}
	}
	out := []metricdata.Metrics{
		counter("predictd.requests", "Prediction requests answered successfully.", requests),
		counter("predictd.request.errors", "Prediction requests answered with an error, by error code.", errs),
		counter("predictd.candidates", "Rows (candidates) scored.", candidates),
		{Name: "predictd.request.duration", Unit: "s",
			Description: "Time from a decoded request to its encoded response, successful requests.",
			Data:        metricdata.Histogram[float64]{DataPoints: latency, Temporality: metricdata.CumulativeTemporality}},
		counter("predictd.degraded.responses", "Successful predictions with store-backed features from stale cache or defaults (degraded: true).", degraded),
		counter("predictd.background.scorings", "Requests scored on the C++ core's lowest-priority background threads (--background-after).", background),
		{Name: "predictd.background.cpu", Unit: "s", Description: "CPU time of the requests scored on the background threads.",
			Data: metricdata.Sum[float64]{DataPoints: backgroundCPU, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}},
	}
	if n := m.acceptErrs.Load(); n > 0 {
		out = append(out, counter("predictd.accept.errors",
			"Connections the listeners could not accept at once (out of file descriptors, buffers or memory) and retried.",
			[]metricdata.DataPoint[int64]{{StartTime: m.start, Time: now, Value: n}}))
	}
	// A family without series is left out, as the SDK leaves out an instrument never used.
	out = slices.DeleteFunc(out, func(m metricdata.Metrics) bool {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			return len(d.DataPoints) == 0
		case metricdata.Sum[float64]:
			return len(d.DataPoints) == 0
		case metricdata.Histogram[float64]:
			return len(d.DataPoints) == 0
		}
		return false
	})
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: meterName}, Metrics: out}}, nil
}

// latencyBuckets span 50µs to 5s: a small request over a Unix socket takes tens of
// microseconds, a deadline-bound one up to the default deadline.
var latencyBounds = [...]float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

var (
	latencyBuckets = latencyBounds[:]
	// latencyBoundsNs are the bounds in nanoseconds, all whole: comparing a duration's
	// nanoseconds with them buckets it as comparing its Seconds() with latencyBounds does.
	latencyBoundsNs = func() (ns [len(latencyBounds)]int64) {
		for i, b := range latencyBounds {
			ns[i] = int64(b * 1e9)
		}
		return ns
	}()
)

const meterName = "github.com/predictd/predictd/sidecar"

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
	m := &metrics{series: map[seriesKey]*seriesCounts{}, retain: retainRetired, start: time.Now()}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithProducer(m))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(tp.Resource())}
	if r := tp.MetricReader(); r != nil {
		opts = append(opts, sdkmetric.WithReader(r))
		tp.AddMetricProducer(m)
	}
	m.provider = sdkmetric.NewMeterProvider(opts...)
	meter := m.provider.Meter(meterName)
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var errs [3]error
	m.loadErrors, errs[0] = meter.Int64Counter("predictd.model.load.errors",
		metric.WithDescription("Model versions that failed to load."))
	m.reloads, errs[1] = meter.Int64Counter("predictd.reloads",
		metric.WithDescription("Repository reloads, by result (ok, or error when a version failed)."))
	m.panics, errs[2] = meter.Int64Counter("predictd.panics",
		metric.WithDescription("Requests whose handler panicked (a bug), answered 500; the log has the stack."))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}
