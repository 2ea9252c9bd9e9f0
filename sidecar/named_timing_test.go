//go:build linux

package sidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/examples"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"

	"github.com/predictd/predictd/internal/cputime"
)

// namedModel is a model the named-candidate benchmarks serve: its server, its feature
// names in column order and n rows of its inputs.
type namedModel struct {
	name  string
	s     *Server
	names []string
	rows  []float64
}

// wideFeatureNames names the wide benchmark model's columns as a ranker would (a source,
// a signal and a window: 14–18 bytes), not f0..f99, so name comparison costs what it
// costs in production.
func wideFeatureNames(n int) []string {
	sources := []string{"user", "item", "query", "ctx"}
	signals := []string{"ctr", "cvr", "dwell", "views", "score"}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s_%s_%02d_7d", sources[i%len(sources)], signals[i/len(sources)%len(signals)], i)
	}
	return names
}

// namedModels returns the two benchmark models: the demo model `claims` (LightGBM, 9
// features: decoding is most of its cost) and XGBoost gen_regression_nan (300 trees,
// 100 features, the engine's fixture), with ranker-style feature names set in its
// manifest. Each server scores on the request's own thread, as a light request does.
func namedModels(b *testing.B, n int) []namedModel {
	b.Helper()
	cfg := Config{Logger: slog.New(slog.DiscardHandler), DefaultDeadline: -1, BackgroundAfter: -1,
		MaxCandidates: 1 << 20, MaxCells: 1 << 30}
	demo := cfg
	demo.ModelFS = examples.Models()
	ds, err := New(demo)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ds.Close() })
	ds.Reload()
	cm := claimsEngine(b)

	root := b.TempDir()
	vdir := filepath.Join(root, "reg", "1")
	os.MkdirAll(vdir, 0o755)
	if err := os.WriteFile(filepath.Join(vdir, "model.json"), readGzip(b, filepath.Join(benchFixture, "model.json.gz")), 0o644); err != nil {
		b.Fatal(err)
	}
	names := wideFeatureNames(100)
	if err := os.WriteFile(filepath.Join(vdir, "model.yaml"),
		[]byte(xgbManifest+"features: ["+strings.Join(names, ", ")+"]\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	wide := cfg
	wide.ModelDir = root
	ws, err := New(wide)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.Close() })
	ws.Reload()
	return []namedModel{
		{name: "claims", s: ds, names: cm.FeatureNames(), rows: randomRows(cm, n, 1)},
		{name: "reg", s: ws, names: names, rows: benchRows(b, n)},
	}
}

// roundRows returns rows rounded to d decimals (NaN stays NaN).
func roundRows(rows []float64, d int) []float64 {
	p := math.Pow10(d)
	out := make([]float64, len(rows))
	for i, x := range rows {
		out[i] = math.Round(x*p) / p
	}
	return out
}

// namedBodies encodes rows three ways: dense protobuf rows, and candidates naming every
// feature in column order (a missing value as null in JSON, a Feature without a value
// in protobuf), in protobuf and JSON.
func namedBodies(b *testing.B, model string, names []string, rows []float64) (denseProto, namedProto, namedJSON []byte) {
	nf := len(names)
	dense := &predictpb.PredictRequest{Model: model}
	named := &predictpb.PredictRequest{Model: model}
	var js strings.Builder
	fmt.Fprintf(&js, `{"model":%q,"candidates":[`, model)
	for i := 0; i < len(rows)/nf; i++ {
		row := rows[i*nf : (i+1)*nf]
		dense.Rows = append(dense.Rows, &predictpb.Row{Values: row})
		c := &predictpb.Candidate{Id: "c" + strconv.Itoa(i)}
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `{"id":"c%d","features":{`, i)
		for j, v := range row {
			f := &predictpb.Feature{Name: names[j]}
			if j > 0 {
				js.WriteByte(',')
			}
			if math.IsNaN(v) {
				fmt.Fprintf(&js, "%q:null", names[j])
			} else {
				f.Value = proto.Float64(v)
				fmt.Fprintf(&js, "%q:%s", names[j], strconv.FormatFloat(v, 'g', -1, 64))
			}
			c.Features = append(c.Features, f)
		}
		js.WriteString("}}")
		named.Candidates = append(named.Candidates, c)
	}
	js.WriteString("]}")
	return mustMarshal(b, dense), mustMarshal(b, named), []byte(js.String())
}

// handlerCall serves one request body through s's handler in process (no network): the
// sidecar's own CPU for the request, from the routing on.
type handlerCall struct {
	ctx fasthttp.RequestCtx
	req fasthttp.Request
}

// prepare sets up the request; serve runs the handler on it.
func (h *handlerCall) prepare(ct string, body []byte) {
	h.ctx.Init(&h.req, nil, nil)
	h.ctx.Request.Header.SetMethod("POST")
	h.ctx.Request.SetRequestURI("/v1/predict")
	h.ctx.Request.Header.SetContentType(ct)
	h.ctx.Request.SetBody(body) // a copy: the JSON decoder may unescape in place
	h.ctx.Response.Reset()
}

func (h *handlerCall) serve(b *testing.B, s *Server) {
	s.handle(&h.ctx)
	if sc := h.ctx.Response.StatusCode(); sc != 200 {
		b.Fatalf("status %d: %.300s", sc, h.ctx.Response.Body())
	}
}

// threadCPU is the calling thread's CPU time (its CPU clock, user + system): on a shared
// machine the CPU a request costs, not how long it waited for one.
func threadCPU() time.Duration { return cputime.Thread() }

// BenchmarkNamedCandidates: a request of 1,000 candidates through the handler in
// process (decode, resolve, assemble, score, encode; no network), as dense protobuf rows
// and as candidates naming every feature in protobuf and in JSON, on the demo model and
// on a 100-feature XGBoost model.
//
// Every iteration serves the three forms one after the other on one locked thread and
// charges each the thread's CPU time it took, so load on the machine hits the three
// alike. Reported per form: ns/cand (CPU per candidate), x-dense (its CPU over the
// dense rows' CPU) and ns/feat-extra (what a named feature costs beyond its value in a
// dense row: (named − dense) / (candidates × features)); ns/op is the wall time of all
// three.
//
//	go test ./sidecar -run '^$' -bench NamedCandidates -benchtime 100x -count 3
func BenchmarkNamedCandidates(b *testing.B) {
	const n = 1000
	models := namedModels(b, n)
	type variant struct {
		label string
		m     namedModel
		rows  []float64
	}
	var variants []variant
	for _, m := range models {
		variants = append(variants, variant{m.name, m, m.rows})
	}
	// -2dp: the rows with two decimals, the load generator's values ("37.45"): a JSON
	// number as short as a ranker's rounded features.
	for _, m := range models {
		variants = append(variants, variant{m.name + "-2dp", m, roundRows(m.rows, 2)})
	}
	for _, vt := range variants {
		m := vt.m
		dp, np, nj := namedBodies(b, m.name, m.names, vt.rows)
		forms := []struct {
			name, ct string
			body     []byte
		}{{"proto-rows", "application/x-protobuf", dp}, {"proto-named", "application/x-protobuf", np},
			{"json-named", "application/json", nj}}
		b.Run(vt.label, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var h handlerCall
			cpu := make([]time.Duration, len(forms))
			for b.Loop() {
				for i, f := range forms {
					h.prepare(f.ct, f.body)
					t0 := threadCPU()
					h.serve(b, m.s)
					cpu[i] += threadCPU() - t0
				}
			}
			perCand := func(i int) float64 { return float64(cpu[i].Nanoseconds()) / float64(b.N*n) }
			for i, f := range forms {
				b.ReportMetric(perCand(i), f.name+"-ns/cand")
				if i > 0 {
					b.ReportMetric(perCand(i)/perCand(0), f.name+"-x-dense")
					b.ReportMetric((perCand(i)-perCand(0))/float64(len(m.names)), f.name+"-ns/feat-extra")
				}
			}
		})
	}
}

// BenchmarkNamedStages: the named request's steps alone on the 100-feature model (1,000
// candidates, every feature named), per feature: decoding (protobuf and JSON), name
// resolution (the learned layout and, as the reference, a map lookup per name) and the
// writes into the matrix.
//
//	go test ./sidecar -run '^$' -bench NamedStages -count 3
func BenchmarkNamedStages(b *testing.B) {
	const n = 1000
	m := namedModels(b, n)[1]
	_, np, nj := namedBodies(b, m.name, m.names, m.rows)
	// The load generator's values are positive with two decimals ("37.45"): the
	// fixture's rows made so, for the direct JSON path on such numbers.
	pos := make([]float64, len(m.rows))
	for i, x := range m.rows {
		pos[i] = math.Abs(x) * 30
	}
	_, _, nj2 := namedBodies(b, m.name, m.names, roundRows(pos, 2))
	// The fixture's values with two decimals, as they are: both signs, mostly under 1
	// in magnitude ("-0.38"), some missing (null).
	_, _, nj2s := namedBodies(b, m.name, m.names, roundRows(m.rows, 2))
	// A client that sends float64s as they are (Python's json, Go's encoding/json)
	// writes 16 or 17 significant digits: the fixture's values divided by 3.
	long := make([]float64, len(m.rows))
	for i, x := range m.rows {
		long[i] = x / 3
	}
	_, _, nj17 := namedBodies(b, m.name, m.names, long)
	// Python's json.dumps, with its default separators (", " and ": "), on the same
	// two-decimal values.
	nj2py := pythonSeparators(nj2)
	// Just past wordRun's word: the fixture's values ×3000 with two decimals, most 8
	// bytes with their sign ("-1234.56").
	wide := make([]float64, len(m.rows))
	for i, x := range m.rows {
		wide[i] = x * 3000
	}
	_, _, nj8 := namedBodies(b, m.name, m.names, roundRows(wide, 2))
	// Pretty-printed (json.Indent, as Python's json.dumps(indent=2) writes it too).
	var indented bytes.Buffer
	if err := json.Indent(&indented, nj2, "", "  "); err != nil {
		b.Fatal(err)
	}
	v, err := m.s.reg.acquire([]byte(m.name), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.release()
	// perFeat reports the thread's CPU time per feature since t0 (the thread locked).
	perFeat := func(b *testing.B, t0 time.Duration) {
		b.ReportMetric(float64((threadCPU()-t0).Nanoseconds())/float64(b.N*n*len(m.names)), "cpu-ns/feat")
	}
	for _, f := range []struct {
		name   string
		body   []byte
		decode func(*request, []byte, decodeLimits) error
	}{{"decode-proto", np, decodeProto}, {"decode-json", nj, decodeJSON}} {
		b.Run(f.name, func(b *testing.B) {
			r := getRequest()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			t0 := threadCPU()
			for b.Loop() {
				r.reset()
				if err := f.decode(r, f.body, codecLimits); err != nil {
					b.Fatal(err)
				}
			}
			perFeat(b, t0)
		})
	}
	// The direct path: decoding into the matrix, names resolved as they are read.
	for _, f := range []struct {
		name   string
		body   []byte
		decode func(*request, []byte, decodeLimits) error
	}{{"direct-proto", np, decodeProto}, {"direct-json", nj, decodeJSON}, {"direct-json-2dp", nj2, decodeJSON},
		{"direct-json-2dp-signs", nj2s, decodeJSON}, {"direct-json-17d", nj17, decodeJSON},
		{"direct-json-2dp-python", nj2py, decodeJSON}, {"direct-json-2dp-indented", indented.Bytes(), decodeJSON},
		{"direct-json-2dp-8b", nj8, decodeJSON}} {
		b.Run(f.name, func(b *testing.B) {
			r := getRequest()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			t0 := threadCPU()
			for b.Loop() {
				r.reset()
				r.beginDirect(v, []byte(m.name), nil, 1<<30)
				if err := f.decode(r, f.body, codecLimits); err != nil {
					b.Fatal(err)
				}
				if !r.dir.on() {
					b.Fatal("the direct path handed the body to the generic path")
				}
			}
			perFeat(b, t0)
		})
	}
	r := getRequest()
	if err := decodeProto(r, np, codecLimits); err != nil {
		b.Fatal(err)
	}
	for _, plain := range []bool{false, true} {
		name := "assemble-layout"
		if plain {
			name = "assemble-map"
		}
		b.Run(name, func(b *testing.B) {
			none := func(int) error { return nil }
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			t0 := threadCPU()
			for b.Loop() {
				m64, err := r.matrix(v, 1<<30)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.writeFeatures(v, m64, plain, none); err != nil {
					b.Fatal(err)
				}
			}
			perFeat(b, t0)
		})
	}
}

// BenchmarkOneCandidate: the fixed cost of a request. A protobuf request for one named
// candidate of the demo model over the Unix socket (HTTP, routing, decoding, resolve,
// scoring, encoding, metrics), against a bare fasthttp handler on another Unix socket
// of the same process that echoes the body back; the two alternate, so load on the
// machine hits both alike. Reports the p50 and p99 of each and p50-x-echo, the
// sidecar's p50 over the echo's.
//
//	go test ./sidecar -run '^$' -bench OneCandidate -benchtime 20000x -count 3
func BenchmarkOneCandidate(b *testing.B) {
	ts := startServer(b, Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler)})
	dir, err := os.MkdirTemp("", "pdecho")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	echo := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/x-protobuf")
		ctx.SetBody(ctx.Request.Body())
	}}
	go echo.Serve(ln)
	defer echo.Shutdown()
	cm := claimsEngine(b)
	_, body, _ := namedBodies(b, "claims", cm.FeatureNames(), randomRows(cm, 1, 3))
	clients := []*fasthttp.HostClient{rawClient(ts, "unix"),
		{Addr: "echo", Dial: func(string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	lat := [2][]time.Duration{}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	b.ReportAllocs()
	for b.Loop() {
		for i, hc := range clients {
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://predictd/v1/predict")
			req.Header.SetContentType("application/x-protobuf")
			req.SetBodyRaw(body)
			t0 := time.Now()
			if err := hc.DoTimeout(req, resp, time.Minute); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d %.200s", err, resp.StatusCode(), resp.Body())
			}
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	q := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(q(lat[0], 0.5), "sidecar-p50-µs")
	b.ReportMetric(q(lat[0], 0.99), "sidecar-p99-µs")
	b.ReportMetric(q(lat[1], 0.5), "echo-p50-µs")
	b.ReportMetric(q(lat[1], 0.99), "echo-p99-µs")
	b.ReportMetric(q(lat[0], 0.5)/q(lat[1], 0.5), "p50-x-echo")
}
