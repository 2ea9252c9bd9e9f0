package sidecar

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/client"
	"github.com/predictd/predictd/engine"
	"github.com/valyala/fasthttp"
)

// The benchmark model: XGBoost gen_regression_nan from the engine's fixtures, 100
// features, 300 trees, scored on the fixture's own rows (about 2% missing).
const benchFixture = "../engine/testdata/xgboost/gen_regression_nan"

func readGzip(b *testing.B, path string) []byte {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	if _, err := bufio.NewReader(zr).WriteTo(&sb); err != nil {
		b.Fatal(err)
	}
	return []byte(sb.String())
}

// benchRows returns the first n fixture rows (cycling), 100 values each.
func benchRows(b *testing.B, n int) []float64 {
	lines := strings.Split(strings.TrimSpace(string(readGzip(b, filepath.Join(benchFixture, "input.csv.gz")))), "\n")
	var rows []float64
	for i := 0; i < n; i++ {
		for _, f := range strings.Split(lines[i%len(lines)], ",") {
			v := math.NaN()
			if f != "" {
				var err error
				if v, err = strconv.ParseFloat(f, 64); err != nil {
					b.Fatal(err)
				}
			}
			rows = append(rows, v)
		}
	}
	return rows
}

// BenchmarkSidecar scores a batch of 100-feature rows (10 and 1,000) through the
// sidecar — protobuf and JSON, Unix socket and loopback TCP, dense rows and named
// candidates — against the direct in-process engine call on the same batch
// (engine.Model.PredictF32, as the sidecar calls it for an XGBoost model).
//
// The baseline is paired: every iteration also makes the in-process call (with the timer
// stopped), and x-inproc is the sidecar's total time over the in-process total of the
// same iterations. Load on the machine then hits both sides alike. ns/op, B/op and
// allocs/op are the sidecar call alone; the in-process sub-benchmark shows the baseline
// on its own.
//
//	go test ./sidecar -run '^$' -bench BenchmarkSidecar -benchtime 200x
func BenchmarkSidecar(b *testing.B) {
	root := b.TempDir()
	vdir := filepath.Join(root, "reg", "1")
	os.MkdirAll(vdir, 0o755)
	if err := os.WriteFile(filepath.Join(vdir, "model.json"), readGzip(b, filepath.Join(benchFixture, "model.json.gz")), 0o644); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, "model.yaml"), []byte(xgbManifest), 0o644)
	m, err := engine.LoadFile(filepath.Join(vdir, "model.json"), "", engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if m.NumFeatures() != 100 {
		b.Fatalf("%d features", m.NumFeatures())
	}
	ts := startServer(b, Config{ModelDir: root, Logger: slog.New(slog.DiscardHandler), DefaultDeadline: -1})
	names := m.FeatureNames()
	for _, n := range []int{10, 1000} {
		rows := benchRows(b, n)
		// The baseline is the call the sidecar itself makes for this XGBoost model:
		// PredictF32 on float32 rows (XGBoost's own arithmetic), which a ranking service
		// scoring in process would use too.
		rows32 := make([]float32, len(rows))
		for i, x := range rows {
			rows32[i] = float32(x)
		}
		out := make([]float64, n)
		inProcess := func() {
			if err := m.PredictF32(rows32, n, out, false); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("n=%d/in-process", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				inProcess()
			}
		})
		// paired runs call once per iteration, timed, and the baseline untimed.
		paired := func(b *testing.B, call func()) {
			b.ReportAllocs()
			var base time.Duration
			for b.Loop() {
				b.StopTimer()
				t0 := time.Now()
				inProcess()
				base += time.Since(t0)
				b.StartTimer()
				call()
			}
			b.ReportMetric(float64(b.Elapsed())/float64(base), "x-inproc")
		}
		for _, network := range []string{"unix", "tcp"} {
			addr := ts.tcp
			if network == "unix" {
				addr = "unix:" + ts.unix
			}
			cl, err := client.New(addr, client.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			b.Run(fmt.Sprintf("n=%d/proto-rows/%s", n, network), func(b *testing.B) {
				scores := make([]float64, 0, n)
				ctx := context.Background()
				paired(b, func() {
					scores, err = cl.PredictRows(ctx, client.DenseRequest{Model: "reg", Rows: rows, NCols: 100}, scores)
					if err != nil || len(scores) != n {
						b.Fatal(err)
					}
				})
			})
			// Pre-encoded bodies: the client's own encoding is not the sidecar's cost.
			for _, form := range []string{"proto-candidates", "json-rows", "json-candidates"} {
				var body []byte
				ct := "application/json"
				switch form {
				case "proto-candidates":
					body = mustMarshal(b, protoRequest("reg", "", names, rows, false))
					ct = "application/x-protobuf"
				default:
					body = jsonRequest("reg", "", "", names, rows, form == "json-rows")
				}
				hc := rawClient(ts, network)
				b.Run(fmt.Sprintf("n=%d/%s/%s", n, form, network), func(b *testing.B) {
					b.SetBytes(int64(len(body)))
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					paired(b, func() {
						req.Header.SetMethod("POST")
						req.SetRequestURI("http://predictd/v1/predict")
						req.Header.SetContentType(ct)
						req.SetBodyRaw(body)
						if err := hc.DoTimeout(req, resp, time.Minute); err != nil || resp.StatusCode() != 200 {
							b.Fatalf("%v %d %.200s", err, resp.StatusCode(), resp.Body())
						}
					})
				})
			}
		}
	}
}

func rawClient(ts *testServer, network string) *fasthttp.HostClient {
	hc := &fasthttp.HostClient{Addr: ts.tcp}
	if network == "unix" {
		hc.Addr = "predictd"
		hc.Dial = func(string) (net.Conn, error) { return net.Dial("unix", ts.unix) }
	}
	return hc
}
