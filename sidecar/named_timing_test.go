package sidecar

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/examples"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"
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

func (h *handlerCall) do(b *testing.B, s *Server, ct string, body []byte) {
	h.ctx.Init(&h.req, nil, nil)
	h.ctx.Request.Header.SetMethod("POST")
	h.ctx.Request.SetRequestURI("/v1/predict")
	h.ctx.Request.Header.SetContentType(ct)
	h.ctx.Request.SetBody(body)
	h.ctx.Response.Reset()
	s.handle(&h.ctx)
	if sc := h.ctx.Response.StatusCode(); sc != 200 {
		b.Fatalf("status %d: %.300s", sc, h.ctx.Response.Body())
	}
}

// BenchmarkNamedCandidates: a request of 1,000 candidates through the handler in
// process (decode, resolve, assemble, score, encode; no network), as dense protobuf rows
// and as candidates naming every feature, in protobuf and JSON, on the demo model and on
// a 100-feature XGBoost model.
//
// Each named iteration also serves the dense request (timed apart, the same machine
// state): x-dense is the named form's total time over the dense form's, ns/cand the
// named form's time per candidate, and ns/feat-extra what a named feature costs beyond
// its value in a dense row ((named − dense) / (candidates × features)).
//
//	go test ./sidecar -run '^$' -bench NamedCandidates -benchtime 200x -count 3
func BenchmarkNamedCandidates(b *testing.B) {
	const n = 1000
	for _, m := range namedModels(b, n) {
		dp, np, nj := namedBodies(b, m.name, m.names, m.rows)
		var dense handlerCall
		b.Run(m.name+"/proto-rows", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dense.do(b, m.s, "application/x-protobuf", dp)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/cand")
		})
		for _, form := range []struct {
			name, ct string
			body     []byte
		}{{"proto-named", "application/x-protobuf", np}, {"json-named", "application/json", nj}} {
			var named handlerCall
			b.Run(m.name+"/"+form.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(form.body)))
				var base time.Duration
				for b.Loop() {
					b.StopTimer()
					t0 := time.Now()
					dense.do(b, m.s, "application/x-protobuf", dp)
					base += time.Since(t0)
					b.StartTimer()
					named.do(b, m.s, form.ct, form.body)
				}
				el := b.Elapsed()
				b.ReportMetric(float64(el)/float64(base), "x-dense")
				b.ReportMetric(float64(el.Nanoseconds())/float64(b.N*n), "ns/cand")
				b.ReportMetric(float64((el - base).Nanoseconds())/float64(b.N*n*len(m.names)), "ns/feat-extra")
			})
		}
	}
}

