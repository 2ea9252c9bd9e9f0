package sidecar

import (
	"testing"
	"time"
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
	c := met.acquire("claims", "1") // as registry.go does at load
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.recordRequest(1, 300*time.Microsecond, false)
		}
	})
}
