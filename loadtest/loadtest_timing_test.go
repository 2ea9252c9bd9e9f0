package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Generator benchmarks. They measure over wall-clock seconds, so run them one at a time:
//
//	go test ./loadtest -run '^$' -bench 'GeneratorLimit|VsWrk' -benchtime=1x -v
//
// Each runs its measurement once whatever b.N is and reports it with b.ReportMetric,
// beside its baseline from the same run: wrk (Debian's wrk, closed loop) against the same
// in-process endpoint.

// wrkResult is what wrk --latency prints.
type wrkResult struct {
	rps                float64
	p50, p90, p99, avg float64 // ms
}

var wrkLatRe = regexp.MustCompile(`^\s*(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
var wrkAvgRe = regexp.MustCompile(`^\s*Latency\s+([\d.]+)(us|ms|s)\s`)

func wrkMs(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	}
	return f
}

// runWrk runs wrk against http://addr/v1/predict posting body, with threads and conns.
func runWrk(b *testing.B, addr string, body []byte, threads, conns int, dur time.Duration) wrkResult {
	b.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatalf("wrk not installed (apt-get install wrk): %v", err)
	}
	script := filepath.Join(b.TempDir(), "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[%s]==]\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(dur.Seconds())),
		"--latency", "-s", script, "http://"+addr+"/v1/predict").CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	var r wrkResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if m := wrkLatRe.FindStringSubmatch(line); m != nil {
			v := wrkMs(m[2], m[3])
			switch m[1] {
			case "50":
				r.p50 = v
			case "90":
				r.p90 = v
			case "99":
				r.p99 = v
			}
		}
		if m := wrkAvgRe.FindStringSubmatch(line); m != nil {
			r.avg = wrkMs(m[1], m[2])
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Requests/sec:"); ok {
			r.rps, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if r.rps == 0 || r.p50 == 0 {
		b.Fatalf("could not parse wrk output:\n%s", out)
	}
	return r
}

const benchWorkload = `[{model: m, candidates: 10, features: {count: 8}, pool: 1}]`

// BenchmarkLatencyVsWrk: the same endpoint (1ms injected delay, JSON, 10 candidates)
// measured by wrk with one connection (closed loop) and by the generator (open loop,
// constant arrivals), once at a low rate (100/s) and once at the rate wrk reached. On a
// quiet machine both see the server's delay plus loopback; where the machine stalls, the
// open loop queues requests behind the stall and reports it while wrk, waiting, hides it
// (coordinated omission), so the two part at the tail.
func BenchmarkLatencyVsWrk(b *testing.B) {
	ts := startTestServer(b, fixedDelay(time.Millisecond))
	sc0 := testScenario(b, `
name: vs-wrk
steps: [{rate: 1, duration: 2s}]
workloads: `+benchWorkload)
	body := BuildBodies(&sc0.Workloads[0], sc0.Workloads[0].featureNames(), "json")[0].Data
	w := runWrk(b, ts.tcp, body, 1, 1, 5*time.Second)
	b.Logf("wrk -t1 -c1: p50 %.3fms p90 %.3fms p99 %.3fms mean %.3fms at %.1f/s", w.p50, w.p90, w.p99, w.avg, w.rps)
	for _, c := range []struct {
		name string
		rate float64
	}{{"low", 100}, {"wrk-rate", math.Round(w.rps)}} {
		sc := testScenario(b, fmt.Sprintf(`
name: vs-wrk
protocol: json
arrival: constant
warmup: 1s
steps: [{rate: %g, duration: 6s}]
workloads: %s`, c.rate, benchWorkload))
		res, _, err := Run(context.Background(), sc, Config{Target: ts.tcp, OutDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		st := res.Steps[0]
		b.ReportMetric(st.Latency.P50/w.p50, c.name+"-p50-ratio")
		b.ReportMetric(st.Latency.Mean/w.avg, c.name+"-mean-ratio")
		b.Logf("loadtest at %.0f/s (%s): p50 %.3fms p90 %.3fms p99 %.3fms mean %.3fms; ratios to wrk: p50 %.2f p90 %.2f mean %.2f",
			c.rate, c.name, st.Latency.P50, st.Latency.P90, st.Latency.P99, st.Latency.Mean, st.Latency.P50/w.p50, st.Latency.P90/w.p90, st.Latency.Mean/w.avg)
	}
	b.ReportMetric(w.p50, "wrk-p50-ms")
}

// BenchmarkGeneratorLimit measures the generator's own limit: the highest constant rate
// it sustains against a zero-delay in-process server with achieved and sent rate within
// 1% of the target, no errors and no wait for max_in_flight. Send lag is logged: on a
// busy machine it grows long before the rate falls short. Baseline: the most requests/s wrk gets
// from the same server (closed loop, 2 threads, 64 connections).
func BenchmarkGeneratorLimit(b *testing.B) {
	ts := startTestServer(b, nil)
	ts.noDecode = true // measure the generator, not the test server's JSON decoding
	sc0 := testScenario(b, `
name: limit
steps: [{rate: 1, duration: 2s}]
workloads: `+benchWorkload)
	body := BuildBodies(&sc0.Workloads[0], sc0.Workloads[0].featureNames(), "json")[0].Data
	w := runWrk(b, ts.tcp, body, 2, 64, 5*time.Second)
	best := 0.0
	for _, rate := range []float64{1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000, 32000} {
		sc := testScenario(b, fmt.Sprintf(`
name: limit
protocol: json
arrival: constant
warmup: 1s
steps: [{rate: %g, duration: 4s}]
workloads: %s`, rate, benchWorkload))
		res, _, err := Run(context.Background(), sc, Config{Target: ts.tcp, OutDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		st := res.Steps[0]
		ok := within(st.AchievedRPS, rate, 0.01, 0) && within(st.SentRPS, rate, 0.01, 0) && st.InFlightWaits == 0 && st.ErrorRate == 0
		b.Logf("rate %6.0f/s: sent %8.1f achieved %8.1f p50 %.3fms p99 %.3fms send-lag p99 %.3fms late %d in-flight waits %d limited %v -> ok %v",
			rate, st.SentRPS, st.AchievedRPS, st.Latency.P50, st.Latency.P99, st.SendLagP99Ms, st.LateSends, st.InFlightWaits, st.GeneratorLimited, ok)
		if !ok {
			break
		}
		best = rate
	}
	b.ReportMetric(best, "max-rps")
	b.ReportMetric(w.rps, "wrk-max-rps")
	b.ReportMetric(best/w.rps, "ratio")
}

// BenchmarkBuildBodies is the cost of generating request bodies ahead of a run: a
// 1,000-candidate, 100-feature request in protobuf and JSON.
func BenchmarkBuildBodies(b *testing.B) {
	for _, proto := range []string{"protobuf", "json"} {
		b.Run(proto, func(b *testing.B) {
			sc := testScenario(b, `
name: bb
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, candidates: 1000, features: {count: 100}, pool: 1}]`)
			w := &sc.Workloads[0]
			names := w.featureNames()
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n += len(BuildBodies(w, names, proto)[0].Data)
			}
			b.SetBytes(int64(n / b.N))
		})
	}
}

// BenchmarkDecodeResponse: what the generator reads from every answer (degraded, or the
// error code) with its hand-written readers, beside proto.Unmarshal and encoding/json on
// the same bodies (a 1,000-prediction response; an error). The hand-written readers are
// kept only while they are at least twice as fast:
//
//	go test ./loadtest -run '^$' -bench 'Decode' -count 3
func BenchmarkDecodeResponse(b *testing.B) {
	m := &predictpb.PredictResponse{Model: "ranker", Version: "2", Degraded: true, DegradedGroups: []string{"user"}}
	for i := 0; i < 1000; i++ {
		m.Predictions = append(m.Predictions, &predictpb.Prediction{Id: "c" + strconv.Itoa(i), Score: 1 / float64(i+3)})
	}
	pb, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	js, err := protojson.Marshal(m) // compact enough: the check only needs "degraded":true
	if err != nil {
		b.Fatal(err)
	}
	js = bytes.ReplaceAll(js, []byte(`"degraded": true`), []byte(`"degraded":true`))
	eb := protoErrorBody("overloaded")
	b.Run("degraded/protobuf/predictd", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			if !isDegraded(contentTypeProtobuf, pb) {
				b.Fatal("not degraded")
			}
		}
	})
	b.Run("degraded/protobuf/proto.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		var out predictpb.PredictResponse
		for b.Loop() {
			if err := proto.Unmarshal(pb, &out); err != nil || !out.Degraded {
				b.Fatal(err)
			}
		}
	})
	b.Run("degraded/json/predictd", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			if !isDegraded(contentTypeJSON, js) {
				b.Fatalf("not degraded: %.200s", js)
			}
		}
	})
	b.Run("degraded/json/encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var out struct {
				Degraded bool `json:"degraded"`
			}
			if err := json.Unmarshal(js, &out); err != nil || !out.Degraded {
				b.Fatal(err)
			}
		}
	})
	b.Run("error/protobuf/predictd", func(b *testing.B) {
		for b.Loop() {
			if errorCode(contentTypeProtobuf, eb) != "overloaded" {
				b.Fatal("no code")
			}
		}
	})
	b.Run("error/protobuf/proto.Unmarshal", func(b *testing.B) {
		var out predictpb.ErrorResponse
		for b.Loop() {
			if err := proto.Unmarshal(eb, &out); err != nil || sanitizeCode(out.GetError().GetCode()) != "overloaded" {
				b.Fatal(err)
			}
		}
	})
}
