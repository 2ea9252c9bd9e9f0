package sidecar

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
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

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/client"
	"github.com/predictd/predictd/engine"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/proto"
)

// The benchmark model: XGBoost gen_regression_nan from the engine's fixtures, 100
// features, 300 trees, scored on the fixture's own rows (about 2% missing).
const benchFixture = "../engine/testdata/xgboost/gen_regression_nan"

func readGzip(b testing.TB, path string) []byte {
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

// Codec benchmarks: each hand-written decoder and encoder beside the library it replaces,
// on the same bodies (100 rows of the benchmark fixture's 100 features, as named
// candidates and as dense rows). A hand-written decoder is kept only while it is at least
// twice as fast as its library:
//
//	go test ./sidecar -run '^$' -bench 'Decode|Encode|Peek' -count 3

// codecBodies returns the JSON and protobuf forms of the benchmark request, candidates
// or dense rows.
func codecBodies(b *testing.B, dense bool) (js, pb []byte) {
	const n = 100
	rows := benchRows(b, n)
	names := make([]string, 100)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i) // the fixture model's names
	}
	return jsonRequest("reg", "", "", names, rows, dense), mustMarshal(b, protoRequest("reg", "", names, rows, dense))
}

var codecLimits = decodeLimits{rows: 1 << 20, cells: 1 << 30}

func BenchmarkDecodeJSON(b *testing.B) {
	for _, form := range []string{"candidates", "rows"} {
		js, _ := codecBodies(b, form == "rows")
		b.Run(form+"/predictd", func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			r := getRequest()
			for b.Loop() {
				r.reset()
				if err := decodeJSON(r, js, codecLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form+"/fastjson", func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			r := getRequest()
			var p fastjson.Parser
			for b.Loop() {
				r.reset()
				if err := decodeJSONFastjson(r, &p, js); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				var req jsonAPIRequest
				if err := json.Unmarshal(js, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// jsonAPIRequest is the JSON request as encoding/json reads it.
type jsonAPIRequest struct {
	Model      string              `json:"model"`
	Version    json.Number         `json:"version"`
	Output     string              `json:"output"`
	Context    map[string]*float64 `json:"context"`
	Keys       map[string]string   `json:"keys"`
	Candidates []struct {
		ID       string              `json:"id"`
		Features map[string]*float64 `json:"features"`
		Keys     map[string]string   `json:"keys"`
	} `json:"candidates"`
	Rows [][]*float64 `json:"rows"`
}

// decodeJSONFastjson fills r from body with fastjson: the request form the sidecar's
// decoder produces, names aliasing p's memory.
//
// fastjson's names live in the parser's memory, not the body, so they cannot be spans of
// it: fjSpan keeps their lengths only, which costs what computing a span costs.
func decodeJSONFastjson(r *request, p *fastjson.Parser, body []byte) error {
	v, err := p.ParseBytes(body)
	if err != nil {
		return err
	}
	num := func(v *fastjson.Value) float64 {
		if v.Type() == fastjson.TypeNull {
			return math.NaN()
		}
		return v.GetFloat64()
	}
	r.model = v.GetStringBytes("model")
	r.version = v.GetStringBytes("version")
	if o := v.GetObject("context"); o != nil {
		o.Visit(func(k []byte, v *fastjson.Value) {
			r.context = append(r.context, feature{name: fjSpan(k), value: num(v)})
		})
	}
	for _, c := range v.GetArray("candidates") {
		cand := candidate{f0: uint32(len(r.feats)), k0: uint32(len(r.candKeys)), id: fjSpan(c.GetStringBytes("id"))}
		if o := c.GetObject("features"); o != nil {
			o.Visit(func(k []byte, v *fastjson.Value) { r.feats = append(r.feats, feature{name: fjSpan(k), value: num(v)}) })
		}
		cand.f1, cand.k1 = uint32(len(r.feats)), uint32(len(r.candKeys))
		r.cands = append(r.cands, cand)
	}
	if rows := v.GetArray("rows"); rows != nil {
		for i, row := range rows {
			n0 := len(r.rows)
			for _, x := range row.GetArray() {
				r.rows = append(r.rows, num(x))
			}
			if err := r.addRow(i, len(r.rows)-n0); err != nil {
				return err
			}
		}
		r.dense = true
	}
	return nil
}

func BenchmarkDecodeProto(b *testing.B) {
	for _, form := range []string{"candidates", "rows"} {
		_, pb := codecBodies(b, form == "rows")
		b.Run(form+"/predictd", func(b *testing.B) {
			b.SetBytes(int64(len(pb)))
			b.ReportAllocs()
			r := getRequest()
			for b.Loop() {
				r.reset()
				if err := decodeProto(r, pb, codecLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(form+"/proto.Unmarshal", func(b *testing.B) {
			b.SetBytes(int64(len(pb)))
			b.ReportAllocs()
			var m predictpb.PredictRequest
			for b.Loop() {
				if err := proto.Unmarshal(pb, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPeekModel: reading the model's name before admission, against parsing the
// body with fastjson to get it.
func BenchmarkPeekModel(b *testing.B) {
	js, pb := codecBodies(b, false)
	b.Run("json/predictd", func(b *testing.B) {
		for b.Loop() {
			if name, _ := peekModel(js, false); string(name) != "reg" {
				b.Fatal(name)
			}
		}
	})
	b.Run("json/fastjson", func(b *testing.B) {
		var p fastjson.Parser
		for b.Loop() {
			v, err := p.ParseBytes(js)
			if err != nil || string(v.GetStringBytes("model")) != "reg" {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto/predictd", func(b *testing.B) {
		for b.Loop() {
			if name, _ := peekModel(pb, true); string(name) != "reg" {
				b.Fatal(name)
			}
		}
	})
	b.Run("proto/proto.Unmarshal", func(b *testing.B) {
		var m predictpb.PredictRequest
		for b.Loop() {
			if err := proto.Unmarshal(pb, &m); err != nil || m.Model != "reg" {
				b.Fatal(err)
			}
		}
	})
}

// codecResponse decodes the benchmark request and returns a response for it: one score
// per candidate, or width scores per candidate.
func codecResponse(b *testing.B, width int) (*response, *predictpb.PredictResponse) {
	_, pb := codecBodies(b, false)
	r := new(request)
	if err := decodeProto(r, pb, codecLimits); err != nil {
		b.Fatal(err)
	}
	n := len(r.cands)
	out := make([]float64, n*width)
	for i := range out {
		out[i] = 1 / float64(i+3) // full-precision scores, as a model gives
	}
	resp := &response{model: "reg", version: "1", req: r, out: out, nrows: n, width: width}
	m := &predictpb.PredictResponse{Model: resp.model, Version: resp.version}
	for i := 0; i < n; i++ {
		p := &predictpb.Prediction{Id: string(r.id(i)), Score: out[i*width]}
		if width > 1 {
			p.Scores = out[i*width : (i+1)*width]
		}
		m.Predictions = append(m.Predictions, p)
	}
	return resp, m
}

// jsonAPIResponse is the JSON response as encoding/json writes it.
type jsonAPIResponse struct {
	Model       string `json:"model"`
	Version     string `json:"version"`
	Predictions []struct {
		ID     string    `json:"id"`
		Score  float64   `json:"score"`
		Scores []float64 `json:"scores,omitempty"`
	} `json:"predictions"`
}

func BenchmarkEncode(b *testing.B) {
	for _, width := range []int{1, 3} {
		resp, m := codecResponse(b, width)
		var jr jsonAPIResponse
		jr.Model, jr.Version = m.Model, m.Version
		for _, p := range m.Predictions {
			jr.Predictions = append(jr.Predictions, struct {
				ID     string    `json:"id"`
				Score  float64   `json:"score"`
				Scores []float64 `json:"scores,omitempty"`
			}{p.Id, p.Score, p.Scores})
		}
		var buf []byte
		pre := fmt.Sprintf("width=%d/", width)
		b.Run(pre+"json/predictd", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = appendJSONResponse(buf[:0], resp)
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(pre+"json/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = json.Marshal(&jr); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(pre+"proto/predictd", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = appendProtoResponse(buf[:0], resp)
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(pre+"proto/proto.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// fjSpan is a span of b's length (decodeJSONFastjson).
func fjSpan(b []byte) span { return span{n: uint32(len(b))} }

// BenchmarkDecodeLarge decodes 2,000 candidates of 100 features (about 3.5 MB of JSON)
// into a fresh request, as the first large request after start-up does: "counted" counts
// the body first and allocates each slice once (presize.go), "grown" appends and lets
// the slices grow. The ratio is the cost of counting; B/op shows what growth allocates.
func BenchmarkDecodeLarge(b *testing.B) {
	rows := benchRows(b, 2000)
	names := make([]string, 100)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	js := jsonRequest("reg", "", "", names, rows, false)
	pb := mustMarshal(b, protoRequest("reg", "", names, rows, false))
	for _, c := range []struct {
		name      string
		presizeAt int
	}{{"counted", 0}, {"grown", math.MaxInt}} {
		lim := codecLimits
		lim.presizeAt = c.presizeAt
		b.Run("json/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(js)))
			b.ReportAllocs()
			for b.Loop() {
				if err := decodeJSON(new(request), js, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proto/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(pb)))
			b.ReportAllocs()
			for b.Loop() {
				if err := decodeProto(new(request), pb, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
