package sidecar

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// BenchmarkLiveRecord is the live view's cost per prediction (live.go, record), from
// every P at once on one model; BenchmarkLiveRecordBaseline, beside it, is the request
// counter /metrics already keeps per prediction (one OpenTelemetry counter add).
func BenchmarkLiveRecord(b *testing.B) {
	l := newLiveStats()
	req := getRequest()
	p := prediction{req: req, start: time.Now(), v: &version{model: "claims"}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.record(&p, nil)
		}
	})
}

func BenchmarkLiveRecordBaseline(b *testing.B) {
	met, err := newMetrics(disabledTracer)
	if err != nil {
		b.Fatal(err)
	}
	attrs := attribute.NewSet(attribute.String("model", "claims"), attribute.String("version", "1"))
	opts := []metric.AddOption{metric.WithAttributeSet(attrs)} // as registry.go builds them
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			met.requests.Add(bg, 1, opts...)
		}
	})
}
