package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/examples"
	"github.com/valyala/fasthttp"
)

// TestNaNShadowStatsKeepModelsServing: a request whose scores are NaN for both the
// primary and its shadow (gblinear with huge inputs) leaves /v1/models answering 200
// with finite statistics and the NaN counted, instead of a panic that ends the process.
func TestNaNShadowStatsKeepModelsServing(t *testing.T) {
	const src = "testdata/gblinear_agaricus/model.json"
	ts := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "a", version: "1", src: src, manifest: xgbManifest + "shadows: [{model: b}]\n"},
		repoVersion{model: "b", version: "1", src: src, manifest: xgbManifest})})
	status, body := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"a","candidates":[{"features":{"f1":1e308,"f2":1e308}}]}`))
	if status != 200 {
		t.Fatalf("predict: %d %s", status, body)
	}
	var resp jsonResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Predictions) != 1 || resp.Predictions[0].Score != nil {
		t.Fatalf("want one null (NaN) score, so the shadow compares NaN with NaN: %s", body)
	}
	var st struct {
		Versions []struct {
			Shadows []struct {
				Requests    uint64
				NonFinite   uint64  `json:"nonfinite"`
				MeanAbsDiff float64 `json:"mean_abs_diff"`
			} `json:"shadows"`
		} `json:"versions"`
	}
	waitFor(t, "the shadow to score the request", 10*time.Second, func() bool {
		status, body := ts.get(t, "/v1/models/a")
		if status != 200 {
			t.Fatalf("GET /v1/models/a: %d %s", status, body)
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		return len(st.Versions) == 1 && len(st.Versions[0].Shadows) == 1 && st.Versions[0].Shadows[0].Requests == 1
	})
	if sh := st.Versions[0].Shadows[0]; sh.NonFinite != 1 || sh.MeanAbsDiff != 0 {
		t.Errorf("shadow stats %+v: want nonfinite 1, mean_abs_diff 0", sh)
	}
	if status, body := ts.get(t, "/v1/models"); status != 200 {
		t.Fatalf("GET /v1/models: %d %s", status, body)
	}
	if status, body := ts.get(t, "/healthz"); status != 200 {
		t.Fatalf("the server is gone after /v1/models: %d %s", status, body)
	}
}

// TestPanicOnAnyRouteIs500: a panic under handle, on a route other than /v1/predict,
// is answered 500 "internal" and counted; and a value encoding/json rejects is a 500,
// not a panic.
func TestPanicOnAnyRouteIs500(t *testing.T) {
	s, err := New(Config{ModelDir: t.TempDir(), Pprof: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.pprof = func(*fasthttp.RequestCtx) { panic("injected") }
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/debug/pprof/heap")
	ctx.Request.Header.SetMethod("GET")
	s.handle(&ctx) // a panic escaping handle fails the test binary
	if ctx.Response.StatusCode() != 500 {
		t.Fatalf("status %d %s, want 500", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if code, msg := apiError(t, ctx.Response.Body()); code != "internal" || !strings.Contains(msg, "injected") {
		t.Errorf("error %s %q", code, msg)
	}
	var m fasthttp.RequestCtx
	m.Request.SetRequestURI("/metrics")
	s.handle(&m)
	if !strings.Contains(string(m.Response.Body()), `predictd_panics_total{path="/debug/pprof/"`) {
		t.Errorf("panic not counted in /metrics:\n%s", m.Response.Body())
	}

	var j fasthttp.RequestCtx
	s.writeJSON(&j, 200, map[string]float64{"x": math.NaN()})
	if j.Response.StatusCode() != 500 {
		t.Fatalf("writeJSON(NaN): status %d %s, want 500", j.Response.StatusCode(), j.Response.Body())
	}
	apiError(t, j.Response.Body())
}

// TestDecodeLimitsBeforeStoring: both decoders stop at the first row or value past the
// limits, before storing it, so a body of many empty candidates (or many features)
// never grows the request's slices beyond the limits; the server answers 413.
func TestDecodeLimitsBeforeStoring(t *testing.T) {
	lim := decodeLimits{rows: 100, cells: 500}
	manyCands := `{"model":"m","candidates":[` + strings.Repeat(`{},`, 10_000) + `{}]}`
	manyFeats := `{"model":"m","candidates":[{"features":{` + strings.Repeat(`"a":1,`, 10_000) + `"a":1}}]}`
	manyKeys := `{"model":"m","keys":{` + strings.Repeat(`"k":"v",`, 10_000) + `"k":"v"}}`
	manyRows := `{"model":"m","rows":[` + strings.Repeat(`[],`, 10_000) + `[]]}`
	pbCands := []byte("\x0a\x01m")
	pbFeats := []byte("\x0a\x01m")
	pbRows := []byte("\x0a\x01m")
	for i := 0; i < 10_000; i++ {
		pbCands = append(pbCands, 0x22, 0x00)                                   // Candidate{}
		pbFeats = append(pbFeats, 0x1a, 0x03, 0x0a, 0x01, 'a')                  // context Feature{name: "a"}
		pbRows = append(pbRows, 0x2a, 0x0a, 0x0a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0) // Row{values: [0]}
	}
	f := func(name string, decode func(*request, []byte, decodeLimits) error, body []byte, want error) {
		t.Helper()
		r := new(request)
		err := decode(r, body, lim)
		if !errors.Is(err, want) {
			t.Errorf("%s: error %v, want %v", name, err, want)
		}
		if n := len(r.cands) + r.nrows; n > lim.rows {
			t.Errorf("%s: %d rows stored, the limit is %d", name, n, lim.rows)
		}
		if n := len(r.feats) + len(r.context) + len(r.ctxKeys) + len(r.candKeys) + len(r.rows); n > lim.cells {
			t.Errorf("%s: %d values stored, the limit is %d", name, n, lim.cells)
		}
	}
	f("json candidates", decodeJSON, []byte(manyCands), errTooManyCandidates)
	f("json features", decodeJSON, []byte(manyFeats), errTooManyCells)
	f("json keys", decodeJSON, []byte(manyKeys), errTooManyCells)
	f("json rows", decodeJSON, []byte(manyRows), errTooManyCandidates)
	f("proto candidates", decodeProto, pbCands, errTooManyCandidates)
	f("proto context", decodeProto, pbFeats, errTooManyCells)
	f("proto rows", decodeProto, pbRows, errTooManyCandidates)

	ts := startServer(t, Config{ModelFS: examples.Models(), MaxCandidates: 100, MaxCells: 500})
	for _, c := range []struct{ body, code string }{{manyCands, "too_many_candidates"}, {manyFeats, "too_many_cells"}} {
		status, body := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(strings.Replace(c.body, `"m"`, `"claims"`, 1)))
		if code, msg := apiError(t, body); status != 413 || code != c.code || !strings.Contains(msg, "--max-") {
			t.Errorf("status %d %s %q, want 413 %s naming its flag", status, code, msg, c.code)
		}
	}
}

// TestPooledSizeCountsEverySlice: a request whose candidate, feature or key slices grew
// huge is not returned to the pool, whatever its matrix buffers hold.
func TestPooledSizeCountsEverySlice(t *testing.T) {
	for name, r := range map[string]*request{
		"cands":    {cands: make([]candidate, 0, maxPooledBytes/candidateBytes+1)},
		"feats":    {feats: make([]feature, 0, maxPooledBytes/featureBytes+1)},
		"context":  {context: make([]feature, 0, maxPooledBytes/featureBytes+1)},
		"ctxKeys":  {ctxKeys: make([]key, 0, maxPooledBytes/keyBytes+1)},
		"candKeys": {candKeys: make([]key, 0, maxPooledBytes/keyBytes+1)},
	} {
		if r.pooledBytes() <= maxPooledBytes {
			t.Errorf("%s: %d bytes counted, want over %d", name, r.pooledBytes(), maxPooledBytes)
		}
	}
	if n := new(request).pooledBytes(); n != 0 {
		t.Errorf("an empty request counts %d bytes", n)
	}
}

// TestMaxCells: rows × the model's features over MaxCells is 413 too_many_cells naming
// --max-cells, before the matrix is allocated; at the limit the request is scored.
func TestMaxCells(t *testing.T) {
	m := claimsEngine(t)
	names := m.FeatureNames() // 9 features
	ts := startServer(t, Config{ModelFS: examples.Models(), MaxCells: 9 * 10})
	req := func(n int) []byte {
		return []byte(`{"model":"claims","candidates":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}`)
	}
	if status, body := ts.post(t, "tcp", "/v1/predict", "application/json", req(10)); status != 200 {
		t.Fatalf("10 rows × %d features at a limit of 90: %d %s", len(names), status, body)
	}
	status, body := ts.post(t, "tcp", "/v1/predict", "application/json", req(11))
	if code, msg := apiError(t, body); status != 413 || code != "too_many_cells" || !strings.Contains(msg, "--max-cells") {
		t.Errorf("11 rows: %d %s %q, want 413 too_many_cells naming --max-cells", status, code, msg)
	}
}

// TestRepeatedContextFoldsToOneValue: a context name sent many times is one write per
// row, the last value winning, and request-level keys are resolved once per name; the
// deadline stops assembly itself, not only scoring.
func TestRepeatedContextFoldsToOneValue(t *testing.T) {
	ts := startServer(t, Config{ModelFS: examples.Models()})
	v, err := ts.reg.acquire([]byte("claims"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.release()
	body := `{"model":"claims","context":{` + strings.Repeat(`"VehBrand":1,"Area":2,`, 1000) +
		`"VehBrand":3},"keys":{` + strings.Repeat(`"user":"a",`, 1000) + `"user":"z"},"candidates":[{},{},{"features":{"VehBrand":5}}]}`
	r := new(request)
	if err := decodeJSON(r, []byte(body), decodeLimits{rows: 100, cells: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	m64, err := r.matrix(v, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.apply(v, m64, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if len(r.ctxCols) != 2 {
		t.Errorf("context folded to %d columns, want 2", len(r.ctxCols))
	}
	brand, area := v.cols["VehBrand"], v.cols["Area"]
	for i, want := range []float64{3, 3, 5} {
		if got := m64[i*v.nfeat+brand]; got != want {
			t.Errorf("row %d VehBrand = %v, want %v", i, got, want)
		}
		if got := m64[i*v.nfeat+area]; got != 2 {
			t.Errorf("row %d Area = %v, want 2", i, got)
		}
	}
	q := StoreQuery{req: r, NRows: 3, NCols: v.nfeat, F64: m64}
	for row := 0; row < 3; row++ {
		if k := q.Key(row, "user"); string(k) != "z" {
			t.Errorf("row %d: key user = %q, want the last value z", row, k)
		}
		if k := q.Key(row, "item"); k != nil {
			t.Errorf("row %d: key item = %q, want nil", row, k)
		}
	}
	if len(r.ctxKeyOf) != 2 {
		t.Errorf("%d request-level key lookups cached, want 2 (one per name)", len(r.ctxKeyOf))
	}

	// A deadline already past stops assembly before any row is written.
	r2 := new(request)
	if err := decodeJSON(r2, []byte(`{"model":"claims","context":{"VehBrand":1},"candidates":[{},{}]}`), decodeLimits{rows: 100, cells: 100}); err != nil {
		t.Fatal(err)
	}
	m2, _ := r2.matrix(v, 1<<20)
	err = r2.apply(v, m2, time.Now().Add(-time.Second))
	if !errors.Is(err, errDeadline) || !math.IsNaN(m2[brand]) {
		t.Errorf("apply past the deadline: %v, row 0 VehBrand %v; want errDeadline and nothing written", err, m2[brand])
	}
}

// TestPredictionLogsOfVanishedAndChangedModels: the logger of a model removed from the
// repository is closed by the reload that removes it; a logger replaced because its
// settings changed writes files whose names cannot collide with the old logger's,
// though both number their files from 1 within the same second.
func TestPredictionLogsOfVanishedAndChangedModels(t *testing.T) {
	logDir := t.TempDir()
	root := newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest + "log: {rate: 1}\n"},
		repoVersion{model: "gone", version: "1", src: "demo", manifest: lgbManifest + "log: {rate: 1}\n"})
	ts := startServer(t, Config{ModelDir: root, PredictionLogDir: logDir})
	m := claimsEngine(t)
	predict := func() {
		t.Helper()
		body := jsonRequest("claims", "", "", m.FeatureNames(), randomRows(m, 2, 1), true)
		if status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", body); status != 200 {
			t.Fatalf("%d %s", status, resp)
		}
	}
	ts.prod.mu.Lock()
	gone := ts.prod.logs["gone"].lg
	ts.prod.mu.Unlock()
	predict() // the first logger opens its first file

	if err := os.RemoveAll(filepath.Join(root, "gone")); err != nil {
		t.Fatal(err)
	}
	writeVersion(t, root, repoVersion{model: "claims", version: "2", src: "demo", manifest: lgbManifest + "log: {rate: 1, queue_size: 7}\n"})
	if res := ts.Reload(); len(res.Failed) > 0 {
		t.Fatalf("reload: %+v", res)
	}
	if gone.Sample() != nil {
		t.Error("the prediction log of a model removed from the repository is still open")
	}
	ts.prod.mu.Lock()
	_, still := ts.prod.logs["gone"]
	ts.prod.mu.Unlock()
	if still {
		t.Error("a removed model's logger is still held")
	}
	predict() // the replacing logger opens its first file
	ts.Close()
	files, err := filepath.Glob(filepath.Join(logDir, "claims*.jsonl.zst"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("log files %v: want one from each of claims's two loggers", files)
	}
	if parts, _ := filepath.Glob(filepath.Join(logDir, "*.part")); len(parts) != 0 {
		t.Errorf("unfinished log files after Close: %v", parts)
	}
}

// queuedModel stands for a scorer whose calls wait in a queue (ONNX batching) that
// never drains in time: with a context a call waits until the context ends. Without
// one (the load's warm-up) it scores at once, so a request scored without its deadline
// would succeed.
type queuedModel struct{ *engine.Model }

// queuedModelWait bounds the wait, so a broken test ends.
const queuedModelWait = 10 * time.Second

func (m queuedModel) PredictF64Context(ctx context.Context, rows []float64, n int, out []float64, raw bool) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting in the queue: %w", ctx.Err())
	case <-time.After(queuedModelWait):
		return m.Model.PredictF64(rows, n, out, raw)
	}
}

func (m queuedModel) PredictF32Context(ctx context.Context, rows []float32, n int, out []float64, raw bool) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting in the queue: %w", ctx.Err())
	case <-time.After(queuedModelWait):
		return m.Model.PredictF32(rows, n, out, raw)
	}
}

// queuedFormat serves the "test-queued" format (Config.Formats).
var queuedFormat = map[string]FormatLoader{"test-queued": func(req LoadRequest) (engine.Predictor, error) {
	ens, err := engine.Parse(engine.FormatLightGBM, req.Data)
	if err != nil {
		return nil, err
	}
	m, err := engine.NewModel(ens, engine.Options{})
	if err != nil {
		return nil, err
	}
	return queuedModel{m}, nil
}}

// TestContextPredictorGetsDeadline: a predictor with PredictF64Context is scored with a
// context ending at the request's deadline, so a call still queued at the deadline
// answers 504 deadline_exceeded rather than waiting its turn.
func TestContextPredictorGetsDeadline(t *testing.T) {
	ts := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "q", version: "1", src: "demo", manifest: "format: test-queued\nfile: model.txt\n"}),
		Formats: queuedFormat})
	m := claimsEngine(t)
	body := jsonRequest("q", "", "", m.FeatureNames(), randomRows(m, 2, 1), true)
	status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", body, "X-Deadline-Ms", "50")
	if code, msg := apiError(t, resp); status != 504 || code != "deadline_exceeded" {
		t.Errorf("%d %s %q, want 504 deadline_exceeded", status, code, msg)
	}
}
