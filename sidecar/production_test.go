package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/tracing"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// gate controls a "test-gate" model: a LightGBM model whose Predict can be made to
// block until the gate opens, or to fail. Gates are found by model name.
type gate struct {
	mu      sync.Mutex
	closed  chan struct{} // non-nil: Predict waits until it is closed
	fail    atomic.Bool
	waiting atomic.Int64 // Predict calls blocked now
}

var gates sync.Map // model name → *gate

func gateFor(model string) *gate {
	g, _ := gates.LoadOrStore(model, &gate{})
	return g.(*gate)
}

// block makes Predict wait until the returned function is called (idempotent).
func (g *gate) block() (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	g.closed = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.closed = nil
			g.mu.Unlock()
			close(ch)
		})
	}
}

type gatedModel struct {
	*engine.Model
	g *gate
}

func (m gatedModel) wait() error {
	if m.g.fail.Load() {
		return errors.New("gated model: failing on purpose")
	}
	m.g.mu.Lock()
	ch := m.g.closed
	m.g.mu.Unlock()
	if ch != nil {
		m.g.waiting.Add(1)
		<-ch
		m.g.waiting.Add(-1)
	}
	return nil
}

func (m gatedModel) PredictF64(rows []float64, n int, out []float64, raw bool) error {
	if err := m.wait(); err != nil {
		return err
	}
	return m.Model.PredictF64(rows, n, out, raw)
}

func (m gatedModel) PredictF32(rows []float32, n int, out []float64, raw bool) error {
	if err := m.wait(); err != nil {
		return err
	}
	return m.Model.PredictF32(rows, n, out, raw)
}

// gateFormat serves gateManifest's "test-gate" format (Config.Formats).
var gateFormat = map[string]FormatLoader{"test-gate": func(req LoadRequest) (engine.Predictor, error) {
	ens, err := engine.Parse(engine.FormatLightGBM, req.Data)
	if err != nil {
		return nil, err
	}
	m, err := engine.NewModel(ens, engine.Options{})
	if err != nil {
		return nil, err
	}
	return gatedModel{m, gateFor(req.Model)}, nil
}}

const gateManifest = "format: test-gate\nfile: model.txt\n"

// renamedManifest lists the demo model's features with DrivAge renamed: a shadow with
// it scores DrivAge as missing, so it disagrees with the primary by a computable amount.
const renamedManifest = lgbManifest + "features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DriverAge, BonusMalus, Density]\n"

func modelsStatus(t *testing.T, ts *testServer) ModelsStatus {
	t.Helper()
	status, body := ts.get(t, "/v1/models")
	if status != 200 {
		t.Fatalf("GET /v1/models: %d %s", status, body)
	}
	var st ModelsStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func shadowStats(t *testing.T, ts *testServer, model, shadowName string) (ss struct {
	Requests, Rows, Dropped, Errors uint64
	MeanAbsDiff                     float64 `json:"mean_abs_diff"`
	MaxAbsDiff                      float64 `json:"max_abs_diff"`
	RankCorr                        float64 `json:"rank_corr"`
	RankCorrRequests                uint64  `json:"rank_corr_requests"`
	LastError                       string  `json:"last_error"`
	MissingFeatures                 int     `json:"missing_features"`
}) {
	t.Helper()
	_, body := ts.get(t, "/v1/models/"+model)
	var st struct {
		Versions []struct {
			State   string            `json:"state"`
			Shadows []json.RawMessage `json:"shadows"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Versions {
		for _, raw := range v.Shadows {
			var named struct{ Name string }
			json.Unmarshal(raw, &named)
			if named.Name == shadowName {
				if err := json.Unmarshal(raw, &ss); err != nil {
					t.Fatal(err)
				}
				return ss
			}
		}
	}
	t.Fatalf("no shadow %s of %s in /v1/models/%s: %s", shadowName, model, model, body)
	return ss
}

// TestShadowsAtAPI: with a shadow attached, the primary's responses are byte-identical
// to a server without shadows, and /v1/models reports the shadow's agreement, which
// matches the engine's scores for the rows as each model saw them.
func TestShadowsAtAPI(t *testing.T) {
	plain := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})})
	shadowed := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest +
			"shadows: [{model: claims_next, top_k: 5}]\n"},
		repoVersion{model: "claims_next", version: "7", src: "demo", manifest: renamedManifest})})
	m := claimsEngine(t)
	names := m.FeatureNames()
	nf := len(names)
	var sumDiff, maxDiff float64
	var nvals int
	const nreq, nrows = 6, 25
	for i := 0; i < nreq; i++ {
		rows := randomRows(m, nrows, uint64(100+i))
		body := jsonRequest("claims", "", "", names, rows, i%2 == 0)
		s1, want := plain.post(t, "tcp", "/v1/predict", "application/json", body)
		s2, got := shadowed.post(t, "unix", "/v1/predict", "application/json", body)
		if s1 != 200 || s2 != 200 || !bytes.Equal(got, want) {
			t.Fatalf("request %d: with shadows %d %s\nwithout %d %s", i, s2, got, s1, want)
		}
		// What each model scores: the primary the rows, the shadow the rows without DrivAge.
		prim := make([]float64, nrows)
		shad := make([]float64, nrows)
		if err := m.PredictF64(rows, nrows, prim, false); err != nil {
			t.Fatal(err)
		}
		masked := append([]float64(nil), rows...)
		for r := 0; r < nrows; r++ {
			masked[r*nf+6] = math.NaN()
		}
		if err := m.PredictF64(masked, nrows, shad, false); err != nil {
			t.Fatal(err)
		}
		for r := range prim {
			d := math.Abs(shad[r] - prim[r])
			sumDiff += d
			maxDiff = max(maxDiff, d)
			nvals++
		}
		// One request at a time, so the shadow budget (1 worker) never drops one.
		waitFor(t, "the shadow to score the request", 10*time.Second, func() bool {
			return shadowStats(t, shadowed, "claims", "claims_next").Requests == uint64(i+1)
		})
	}
	ss := shadowStats(t, shadowed, "claims", "claims_next")
	if ss.Rows != nreq*nrows || ss.Dropped != 0 || ss.Errors != 0 || ss.MissingFeatures != 1 {
		t.Fatalf("shadow stats %+v", ss)
	}
	wantMean := sumDiff / float64(nvals)
	if math.Abs(ss.MeanAbsDiff-wantMean) > 1e-12*max(1, wantMean) || ss.MaxAbsDiff != maxDiff || maxDiff == 0 {
		t.Errorf("mean_abs_diff %v max %v, want %v and %v", ss.MeanAbsDiff, ss.MaxAbsDiff, wantMean, maxDiff)
	}
	if ss.RankCorrRequests == 0 || !(ss.RankCorr >= -1 && ss.RankCorr <= 1) {
		t.Errorf("rank_corr %v over %d requests", ss.RankCorr, ss.RankCorrRequests)
	}
	// The shadow model also serves on its own.
	if st := modelStatus(t, shadowed, "claims_next"); st.Serving != "7" {
		t.Errorf("claims_next: %+v", st)
	}
}

// TestSlowAndFailingShadows: a shadow that never returns, and one that fails, change
// neither the primary's answers nor whether it answers at all; the stalled shadow's
// budget fills and further mirrors are dropped and counted, the failures counted.
func TestSlowAndFailingShadows(t *testing.T) {
	plain := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})})
	ts := startServer(t, Config{ModelDir: newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest +
			"shadows: [{model: stuck}, {model: broken}]\n"},
		repoVersion{model: "stuck", version: "1", src: "demo", manifest: gateManifest},
		repoVersion{model: "broken", version: "1", src: "demo", manifest: gateManifest}), ShadowWorkers: 1,
		Formats: gateFormat})
	open := gateFor("stuck").block()
	t.Cleanup(open) // runs before the server's shutdown, which waits for queued shadow jobs
	gateFor("broken").fail.Store(true)
	t.Cleanup(func() { gateFor("broken").fail.Store(false) })

	m := claimsEngine(t)
	const nreq = 20
	for i := 0; i < nreq; i++ {
		body := jsonRequest("claims", "", "", m.FeatureNames(), randomRows(m, 10, uint64(i)), false)
		// The client's own timeout bounds a request that would hang on a shadow.
		s1, want := plain.post(t, "tcp", "/v1/predict", "application/json", body)
		s2, got := ts.post(t, "tcp", "/v1/predict", "application/json", body)
		if s1 != 200 || s2 != 200 || !bytes.Equal(got, want) {
			t.Fatalf("request %d: %d %s, want %d %s", i, s2, got, s1, want)
		}
	}
	stuck := shadowStats(t, ts, "claims", "stuck")
	broken := shadowStats(t, ts, "claims", "broken")
	// One job holds the only worker, the queue (4) fills; the rest are dropped.
	if stuck.Dropped == 0 || stuck.Requests != 0 {
		t.Errorf("stalled shadow: %+v", stuck)
	}
	if broken.Requests != 0 || broken.Dropped == 0 {
		t.Errorf("failing shadow shares the stalled budget: %+v", broken)
	}
	open()
	waitFor(t, "the queued shadow jobs to run", 10*time.Second, func() bool {
		b := shadowStats(t, ts, "claims", "broken")
		return b.Errors > 0 && b.Errors+b.Dropped == nreq
	})
	if b := shadowStats(t, ts, "claims", "broken"); !strings.Contains(b.LastError, "failing on purpose") {
		t.Errorf("failing shadow: %+v", b)
	}
}

// TestAdmissionAtAPI: a flooded model gets 429 with Retry-After at once or after the
// queue wait, never a hang, while another model keeps answering correctly; a
// saturated process answers 503; a deadline that expires in the queue is 504.
func TestAdmissionAtAPI(t *testing.T) {
	repo := func() string {
		return newRepo(t,
			repoVersion{model: "hot", version: "1", src: "demo", manifest: gateManifest},
			repoVersion{model: "quiet", version: "1", src: "demo", manifest: lgbManifest + "weight: 1\n"})
	}
	m := claimsEngine(t)
	quietBody := jsonRequest("quiet", "", "", m.FeatureNames(), randomRows(m, 5, 9), true)
	want := make([]float64, 5)
	if err := m.PredictF64(randomRows(m, 5, 9), 5, want, false); err != nil {
		t.Fatal(err)
	}
	hotBody := []byte(`{"model":"hot","candidates":[{"id":"x","features":{"DrivAge":40}}]}`)

	t.Run("429", func(t *testing.T) {
		ts := startServer(t, Config{ModelDir: repo(), Formats: gateFormat, AdmissionCapacity: 2, AdmissionMaxQueueWait: 50 * time.Millisecond,
			AdmissionMaxPending: 100})
		g := gateFor("hot")
		open := g.block()
		t.Cleanup(open)
		first := make(chan int, 1)
		go func() {
			s, _ := ts.post(t, "tcp", "/v1/predict", "application/json", hotBody)
			first <- s
		}()
		waitFor(t, "the first hot request to hold the slot", 10*time.Second, func() bool { return g.waiting.Load() == 1 })
		const flood = 12
		var wg sync.WaitGroup
		statuses := make([]int, flood)
		retry := make([]string, flood)
		c, base := ts.httpClient("tcp")
		for i := range flood {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Post(base+"/v1/predict", "application/json", bytes.NewReader(hotBody))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
			}()
		}
		// The quiet model answers, correctly, while hot is flooded.
		for range 5 {
			status, body := ts.post(t, "unix", "/v1/predict", "application/json", quietBody)
			if status != 200 {
				t.Fatalf("quiet model while hot is flooded: %d %s", status, body)
			}
			var r jsonResponse
			json.Unmarshal(body, &r)
			for i, p := range r.Predictions {
				if *p.Score != want[i] {
					t.Fatalf("quiet row %d: %v, want %v", i, *p.Score, want[i])
				}
			}
		}
		wg.Wait()
		for i := range flood {
			if statuses[i] != 429 || retry[i] != "1" {
				t.Errorf("flood request %d: %d Retry-After %q, want 429 and 1", i, statuses[i], retry[i])
			}
		}
		st := modelStatus(t, ts, "hot")
		if st.Admission == nil || st.Admission.Slots != 1 || st.Admission.Rejected+st.Admission.Timeouts != flood || st.Admission.Rejected == 0 {
			t.Errorf("hot admission stats: %+v", st.Admission)
		}
		open()
		if s := <-first; s != 200 {
			t.Errorf("the admitted hot request: %d", s)
		}
		_, body := ts.post(t, "tcp", "/v1/predict", "application/json", hotBody)
		if code, msg := apiErrorOrNil(body); code != "" {
			t.Errorf("hot after the flood: %s %s", code, msg)
		}
	})

	t.Run("503 and 504", func(t *testing.T) {
		ts := startServer(t, Config{ModelDir: repo(), Formats: gateFormat, AdmissionCapacity: 2, AdmissionMaxQueueWait: 5 * time.Second,
			AdmissionMaxPending: 2})
		g := gateFor("hot")
		open := g.block()
		t.Cleanup(open)
		done := make(chan int, 2)
		go func() { s, _ := ts.post(t, "tcp", "/v1/predict", "application/json", hotBody); done <- s }()
		waitFor(t, "hot to hold its slot", 10*time.Second, func() bool { return g.waiting.Load() == 1 })
		// A deadline shorter than the queue wait ends the wait: 504.
		status, body := ts.post(t, "tcp", "/v1/predict", "application/json", hotBody, "X-Deadline-Ms", "50")
		if code, _ := apiError(t, body); status != 504 || code != "deadline_exceeded" {
			t.Errorf("deadline in the queue: %d %s", status, body)
		}
		go func() {
			s, _ := ts.post(t, "tcp", "/v1/predict", "application/json", hotBody, "X-Deadline-Ms", "60000")
			done <- s
		}()
		waitFor(t, "a second hot request to queue", 10*time.Second, func() bool {
			b := modelStatus(t, ts, "hot").Admission
			return b != nil && b.Queued == 1
		})
		// Two pending in the process: even the quiet model is refused, at once.
		c, base := ts.httpClient("tcp")
		resp, err := c.Post(base+"/v1/predict", "application/json", bytes.NewReader(quietBody))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 503 || e.Error.Code != "overloaded" || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(e.Error.Message, "--admission-max-pending") {
			t.Errorf("saturated: %d %+v Retry-After %q", resp.StatusCode, e, resp.Header.Get("Retry-After"))
		}
		if st := modelsStatus(t, ts); st.Overloaded == nil || *st.Overloaded != 1 {
			t.Errorf("process-wide rejections: %v", st.Overloaded)
		}
		open()
		for range 2 {
			if s := <-done; s != 200 {
				t.Errorf("admitted hot request: %d", s)
			}
		}
	})
}

// apiErrorOrNil returns the error code of an error body, "" for a prediction.
func apiErrorOrNil(body []byte) (string, string) {
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(body, &e)
	return e.Error.Code, e.Error.Message
}

// TestSpanTree: one /v1/predict over real HTTP with a W3C traceparent produces
// predict (child of the caller's span) → decode, features.fetch, score, encode.
func TestSpanTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp, err := tracing.NewProvider(tracing.Config{}, sdktrace.NewSimpleSpanProcessor(exp))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Shutdown(context.Background())
	manifest := lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 100}, Density]
`
	ts := startServer(t, Config{ModelDir: newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest}),
		FeatureStore: keyStore{}, Tracer: tp})
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	status, body := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"claims","keys":{"user_id":"u1"},"candidates":[{"id":"a"},{"id":"b"}]}`),
		"traceparent", "00-"+traceID+"-"+parentID+"-01")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		if _, dup := byName[s.Name]; dup {
			t.Errorf("span %s twice", s.Name)
		}
		byName[s.Name] = s
	}
	root, ok := byName[tracing.SpanPredict]
	if !ok || len(spans) != 5 {
		t.Fatalf("spans: %v", spanNames(spans))
	}
	if root.SpanContext.TraceID().String() != traceID || root.Parent.SpanID().String() != parentID || !root.Parent.IsRemote() {
		t.Errorf("predict's parent: trace %s parent %s", root.SpanContext.TraceID(), root.Parent.SpanID())
	}
	attrs := map[string]string{}
	for _, kv := range root.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["model"] != "claims" || attrs["model.version"] != "1" || attrs["rows"] != "2" {
		t.Errorf("predict attributes: %v", attrs)
	}
	for _, name := range []string{tracing.SpanDecode, tracing.SpanFeaturesFetch, tracing.SpanScore, tracing.SpanEncode} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no %s span: %v", name, spanNames(spans))
			continue
		}
		if s.Parent.SpanID() != root.SpanContext.SpanID() || s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("%s is not a child of predict", name)
		}
	}
	m := claimsEngine(t)
	for _, kv := range byName[tracing.SpanScore].Attributes {
		if kv.Key == tracing.AttrScoreBackend && kv.Value.AsString() != m.BackendName() {
			t.Errorf("score.backend %q, the model's backend is %q", kv.Value.AsString(), m.BackendName())
		}
	}
	// A failing request marks its predict span failed.
	exp.Reset()
	ts.post(t, "tcp", "/v1/predict", "application/json", []byte(`{"model":"nope","candidates":[{}]}`))
	if s := exp.GetSpans(); len(s) != 2 || s[len(s)-1].Name != tracing.SpanPredict || s[len(s)-1].Status.Code.String() != "Error" {
		t.Errorf("failed request spans: %v", spanNames(s))
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

// TestServeBinaryFlushesPredictionLog runs the real binary with a logged model and a
// shadow, sends requests with X-Request-Id, then SIGTERM: it must exit 0 with every
// accepted record in finished (renamed) zstd files, each record holding the rows as
// scored and the predictions the client got. The Unix socket is group-writable only.
func TestServeBinaryFlushesPredictionLog(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest +
			"log: {rate: 1}\nshadows: [{model: claims_next}]\n"},
		repoVersion{model: "claims_next", version: "1", src: "demo", manifest: renamedManifest + "log: {rate: 1}\n"})
	logDir := t.TempDir()
	dir, err := os.MkdirTemp("", "pdlog")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	// An OTLP/HTTP collector: the spans must reach it by the time the process exits.
	var exports atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" && r.Method == "POST" {
			if b, _ := io.ReadAll(r.Body); len(b) > 0 {
				exports.Add(1)
			}
		}
	}))
	defer collector.Close()
	cmd, hc, stderr := serveBinary(t, bin, sock, nil, "--models", root, "--listen", "", "--unix", sock,
		"--prediction-log-dir", logDir, "--admission-capacity", "4", "--otlp-endpoint", collector.URL)
	if fi, err := os.Stat(sock); err != nil {
		t.Fatalf("socket: %v", err)
	} else if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode: %v, want 0660", fi.Mode())
	}
	m := claimsEngine(t)
	names := m.FeatureNames()
	const nreq = 40
	sent := map[string][]float64{}   // request id → rows
	scores := map[string][]float64{} // request id → scores returned
	for i := 0; i < nreq; i++ {
		rows := randomRows(m, 3, uint64(i))
		id := fmt.Sprintf("r-%d", i)
		req, _ := http.NewRequest("POST", "http://predictd/v1/predict", bytes.NewReader(jsonRequest("claims", "", "", names, rows, true)))
		req.Header.Set("X-Request-Id", id)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r jsonResponse
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		sent[id] = rows
		for _, p := range r.Predictions {
			scores[id] = append(scores[id], *p.Score)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("did not exit after SIGTERM\n%s", stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "*"))
	primary, shadows := 0, 0
	for _, f := range files {
		if !strings.HasSuffix(f, ".jsonl.zst") {
			t.Fatalf("unfinished log file %s", f)
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		text, err := dec.DecodeAll(raw, nil)
		dec.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
			var rec struct {
				Header      json.RawMessage `json:"header"`
				RequestID   string          `json:"request_id"`
				Model       string          `json:"model"`
				ShadowOf    string          `json:"shadow_of"`
				Features    [][]*float64    `json:"features"`
				Predictions []float64       `json:"predictions"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%s: %v: %s", f, err, line)
			}
			if rec.Header != nil {
				continue
			}
			if rec.ShadowOf != "" {
				if rec.ShadowOf != "claims@1" || rec.Model != "claims_next" || sent[rec.RequestID] == nil {
					t.Errorf("shadow record: %s", line)
				}
				shadows++
				continue
			}
			primary++
			rows, want := sent[rec.RequestID], scores[rec.RequestID]
			if rows == nil || len(rec.Features) != 3 || !slices.Equal(rec.Predictions, want) {
				t.Fatalf("record %s, sent %v scored %v", line, rows, want)
			}
			for r, row := range rec.Features {
				for j, v := range row {
					x := rows[r*len(names)+j]
					if (v == nil) != math.IsNaN(x) || (v != nil && *v != x) {
						t.Fatalf("record %s row %d col %d: %v, sent %v", rec.RequestID, r, j, v, x)
					}
				}
			}
		}
	}
	if primary != nreq {
		t.Errorf("%d primary records for %d accepted requests\n%s", primary, nreq, stderr.String())
	}
	if exports.Load() == 0 {
		t.Errorf("no spans exported to --otlp-endpoint by exit")
	}
	// Shadow records are written when the shadow scored the request (its budget may drop some).
	if shadows == 0 || shadows > nreq {
		t.Errorf("%d shadow records", shadows)
	}
}

// TestErrorStatusOfPredictorErrors: the sentinels a Predictor wraps choose the status.
func TestErrorStatusOfPredictorErrors(t *testing.T) {
	f := func(err error, status int, code string) {
		t.Helper()
		if s, c := errorStatus(err); s != status || c != code {
			t.Errorf("%v: %d %s, want %d %s", err, s, c, status, code)
		}
	}
	f(fmt.Errorf("model m: %w: onnx: batching queue is full", ErrBusy), 503, "busy")
	f(fmt.Errorf("model m: %w: id 1.5", ErrBadInput), 400, "bad_input")
	f(fmt.Errorf("model %q: waiting for a slot: %w", "m", context.DeadlineExceeded), 504, "deadline_exceeded")
	f(errors.New("something else"), 500, "internal")
}

// TestAdmissionBeforeDecoding: a body that names its model first is admitted before it
// is decoded (peekModel), so when the model's bulkhead is full even a malformed body for
// it gets 429, and decoding costs the flooded model nothing; a body that names the model
// later is decoded first (its errors are 400s), then admitted. A body that names two
// models is rejected by the first one's full bulkhead before decoding, and one admitted
// for the first is admitted again for the model the decoder takes (the last).
func TestAdmissionBeforeDecoding(t *testing.T) {
	root := newRepo(t,
		repoVersion{model: "flooded", version: "1", src: "demo", manifest: lgbManifest},
		repoVersion{model: "quiet", version: "1", src: "demo", manifest: lgbManifest})
	ts := startServer(t, Config{ModelDir: root, AdmissionCapacity: 2, AdmissionMaxQueueWait: time.Hour})
	release := fillBulkhead(t, ts.Server, "flooded")
	defer release()
	m := claimsEngine(t)
	names := m.FeatureNames()
	rows := randomRows(m, 3, 5)
	pbFlooded := mustMarshal(t, protoRequest("flooded", "", names, rows, false))
	for _, c := range []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"json, malformed after the model", "application/json", `{"model":"flooded","candidates":[{"id":`, 429, "overloaded"},
		{"json, unknown field after the model", "application/json", `{ "model" : "flooded", "nope": 1}`, 429, "overloaded"},
		{"protobuf, truncated after the model", "application/x-protobuf", string(pbFlooded[:len(pbFlooded)-3]), 429, "overloaded"},
		{"json, well-formed", "application/json", string(jsonRequest("flooded", "", "", names, rows, false)), 429, "overloaded"},
		// Model not first: decoded first, so a malformed body is a 400 ...
		{"json, model last, malformed", "application/json", `{"candidates":[{"id":1}],"model":"flooded"`, 400, "bad_request"},
		// ... and a well-formed one is admitted after decoding: still 429.
		{"json, model last", "application/json", `{"candidates":[],"model":"flooded"}`, 429, "overloaded"},
		// An escaped name is not peeked.
		{"json, escaped name, malformed", "application/json", `{"model":"floo\u0064ed","x":}`, 400, "bad_request"},
		// A model named twice: the first name's bulkhead decides before decoding ...
		{"json, flooded then quiet", "application/json", `{"model":"flooded","candidates":[],"model":"quiet"}`, 429, "overloaded"},
		// ... and a request admitted for the first is admitted again for the decoded one
		// (the decoder takes the last model field).
		{"json, quiet then flooded", "application/json", `{"model":"quiet","candidates":[],"model":"flooded"}`, 429, "overloaded"},
		{"quiet model", "application/json", string(jsonRequest("quiet", "", "", names, rows, false)), 200, ""},
		{"quiet model, malformed", "application/json", `{"model":"quiet","candidates":[{"id":`, 400, "bad_request"},
	} {
		status, body := ts.post(t, "unix", "/v1/predict", c.ct, []byte(c.body))
		code, _ := apiErrorOrNil(body)
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %q", c.name, status, body, c.status, c.code)
		}
	}
	st := modelStatus(t, ts, "flooded").Admission
	if st == nil || st.Rejected != 7 || st.Admitted != 1 {
		t.Errorf("flooded admission stats %+v: want 7 rejected and only the slot fillBulkhead holds admitted", st)
	}
	q := modelStatus(t, ts, "quiet").Admission
	if q == nil || q.Admitted != 3 || q.InFlight != 0 {
		t.Errorf("quiet admission stats %+v: want 3 admitted (quiet then flooded, and two quiet ones), none held", q)
	}
}
