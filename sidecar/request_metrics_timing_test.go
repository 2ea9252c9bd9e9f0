package sidecar

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkRecordRequest is what Server.count records per successful request, from
// every P at once on one version, not degraded: sdk is the former path (two counter adds
// and a histogram record on SDK instruments, attribute set built once at load as registry.go
// did), atomic the per-version atomics of metrics.go.
//
//	go test ./sidecar -run '^$' -bench RecordRequest -count 5
func BenchmarkRecordRequest(b *testing.B) {
	const rows, d = 1, 300 * time.Microsecond
	b.Run("sdk", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer mp.Shutdown(bg)
		meter := mp.Meter(meterName)
		requests, _ := meter.Int64Counter("predictd.requests")
		candidates, _ := meter.Int64Counter("predictd.candidates")
		latency, _ := meter.Float64Histogram("predictd.request.duration", metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(latencyBuckets...))
		attrs := attribute.NewSet(attribute.String("model", "claims"), attribute.String("version", "1"))
		addOpts := []metric.AddOption{metric.WithAttributeSet(attrs)}
		recOpts := []metric.RecordOption{metric.WithAttributeSet(attrs)}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				requests.Add(bg, 1, addOpts...)
				candidates.Add(bg, rows, addOpts...)
				latency.Record(bg, d.Seconds(), recOpts...)
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		met, err := newMetrics(disabledTracer)
		if err != nil {
			b.Fatal(err)
		}
		defer met.provider.Shutdown(bg)
		c := met.acquire("claims", "1")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.recordRequest(rows, d, false)
			}
		})
	})
}

// BenchmarkCountError is the counter a failed request adds (errors.go, fail): sdk the
// former SDK counter with its attributes built per call, atomic the errKey map.
func BenchmarkCountError(b *testing.B) {
	b.Run("sdk", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer mp.Shutdown(bg)
		errs, _ := mp.Meter(meterName).Int64Counter("predictd.request.errors")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				attrs := []attribute.KeyValue{attribute.String("code", "overloaded"),
					attribute.String("model", "claims"), attribute.String("version", "1")}
				errs.Add(bg, 1, metric.WithAttributes(attrs...))
			}
		})
	})
	b.Run("atomic", func(b *testing.B) {
		met, err := newMetrics(disabledTracer)
		if err != nil {
			b.Fatal(err)
		}
		defer met.provider.Shutdown(bg)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				met.countError("claims", "1", "overloaded")
			}
		})
	})
}
