package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/client"
	"github.com/predictd/predictd/engine"
	"google.golang.org/protobuf/proto"
)

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func modelStatus(t *testing.T, ts *testServer, name string) ModelStatus {
	t.Helper()
	status, body := ts.get(t, "/v1/models/"+name)
	if status != 200 {
		t.Fatalf("GET /v1/models/%s: %d %s", name, status, body)
	}
	var st ModelStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHotReloadUnderLoad: clients score continuously over TCP and the Unix socket
// while version 2 appears in the watched directory, then a broken version 3, then a
// broken rewrite of version 2 itself. No request may fail; every answer must equal the
// engine's scores for the version it names; each client moves from 1 to 2 and never
// back; the broken versions leave 2 serving and show their errors.
func TestHotReloadUnderLoad(t *testing.T) {
	root := newRepo(t, repoVersion{model: "rank", version: "1", src: "testdata/agaricus/model.json", manifest: xgbManifest})
	ts := startServer(t, Config{ModelDir: root, Watch: true, ReloadDebounce: 50 * time.Millisecond})

	engines := map[string]*engine.Model{}
	for ver, src := range map[string]string{"1": "testdata/agaricus/model.json", "2": "testdata/dart_agaricus/model.json"} {
		m, err := engine.LoadFile(src, "", engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		engines[ver] = m
	}
	if engines["1"].NumFeatures() != engines["2"].NumFeatures() {
		t.Fatalf("test models disagree on features")
	}
	const n = 64
	rows := randomRows(engines["1"], n, 3)
	names := engines["1"].FeatureNames()
	want := map[string][]float64{}
	for ver, m := range engines {
		out := make([]float64, n)
		if err := m.PredictF64(rows, n, out, false); err != nil {
			t.Fatal(err)
		}
		want[ver] = out
	}
	req := protoRequest("rank", "", names, rows, false)

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		failures  atomic.Int64
		firstErr  atomic.Value
		sawV2     [4]atomic.Bool
		responses [4]atomic.Int64
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	for w := 0; w < 4; w++ {
		addr := ts.tcp
		if w%2 == 1 {
			addr = "unix:" + ts.unix
		}
		c, err := client.New(addr, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.Predict(ctx, req)
				cancel()
				if err != nil {
					fail(err)
					continue
				}
				responses[w].Add(1)
				exp, ok := want[resp.Version]
				switch {
				case !ok:
					fail(fmt.Errorf("answer from version %q", resp.Version))
					continue
				case resp.Version == "1" && sawV2[w].Load():
					fail(errors.New("a client went back from version 2 to 1"))
				case resp.Version == "2":
					sawV2[w].Store(true)
				}
				for i, p := range resp.Predictions {
					if math.Float64bits(p.Score) != math.Float64bits(exp[i]) {
						fail(fmt.Errorf("version %s row %d: %v, engine %v", resp.Version, i, p.Score, exp[i]))
						break
					}
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	busy := func(min int64) func() bool {
		start := [4]int64{}
		for w := range responses {
			start[w] = responses[w].Load()
		}
		return func() bool {
			for w := range responses {
				if responses[w].Load() < start[w]+min {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "clients answered by version 1", 20*time.Second, busy(20))

	writeVersion(t, root, repoVersion{model: "rank", version: "2", src: "testdata/dart_agaricus/model.json", manifest: xgbManifest})
	waitFor(t, "every client to see version 2", 20*time.Second, func() bool {
		for w := range sawV2 {
			if !sawV2[w].Load() {
				return false
			}
		}
		return true
	})

	// A broken version 3: a model file that does not parse.
	tmp := filepath.Join(root, "rank", ".tmp-3")
	os.MkdirAll(tmp, 0o755)
	os.WriteFile(filepath.Join(tmp, "model.json"), []byte(`{"learner": {"truncated`), 0o644)
	os.WriteFile(filepath.Join(tmp, "model.yaml"), []byte(xgbManifest), 0o644)
	os.Rename(tmp, filepath.Join(root, "rank", "3"))
	waitFor(t, "version 3 to fail", 20*time.Second, func() bool {
		for _, v := range modelStatus(t, ts, "rank").Versions {
			if v.Version == "3" && v.State == "failed" {
				return true
			}
		}
		return false
	})
	waitFor(t, "more answers after the failed load", 20*time.Second, busy(20))

	// Version 2 rewritten in place with a manifest error: its loaded copy keeps serving.
	os.WriteFile(filepath.Join(root, "rank", "2", "model.yaml"), []byte(xgbManifest+"colour: blue\n"), 0o644)
	waitFor(t, "the rewrite of version 2 to fail", 20*time.Second, func() bool {
		for _, v := range modelStatus(t, ts, "rank").Versions {
			if v.Version == "2" && v.State == "failed" {
				return strings.Contains(v.Error, "colour")
			}
		}
		return false
	})
	waitFor(t, "more answers after the failed rewrite", 20*time.Second, busy(20))
	stop.Store(true)
	wg.Wait()

	if f := failures.Load(); f > 0 {
		t.Fatalf("%d failed requests; first: %v", f, firstErr.Load())
	}
	st := modelStatus(t, ts, "rank")
	if st.Serving != "2" {
		t.Fatalf("serving %q, want 2: %+v", st.Serving, st)
	}
	states := map[string]string{}
	for _, v := range st.Versions {
		states[v.Version+"/"+v.State] = v.Error
		// agaricus and dart_agaricus: small XGBoost trees, scored from leaf tables.
		if v.State != "failed" && strings.HasPrefix(v.Backend, "c/") && v.Traversal != "leaf tables" {
			t.Errorf("version %s (%s): traversal %q, want leaf tables", v.Version, v.Backend, v.Traversal)
		}
	}
	for _, k := range []string{"1/loaded", "2/serving", "2/failed", "3/failed"} {
		if _, ok := states[k]; !ok {
			t.Errorf("GET /v1/models/rank lacks %s: %+v", k, st.Versions)
		}
	}
	if !strings.Contains(states["3/failed"], "model.json") {
		t.Errorf("version 3 error does not name the file: %q", states["3/failed"])
	}
	_, metrics := ts.get(t, "/metrics")
	for _, want := range []string{
		`predictd_model_load_errors_total{model="rank",version="3"} 1`,
		`predictd_model_load_errors_total{model="rank",version="2"} 1`,
		`predictd_requests_total{model="rank",version="1"}`,
		`predictd_requests_total{model="rank",version="2"}`,
		`predictd_candidates_total{model="rank",version="2"}`,
		`predictd_request_duration_seconds_bucket{model="rank",version="2",le="0.001"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestRetireWaitsForInFlight: removing a version retires it, but its model is closed
// only when the last request holding it finishes.
func TestRetireWaitsForInFlight(t *testing.T) {
	root := newRepo(t,
		repoVersion{model: "rank", version: "1", src: "testdata/agaricus/model.json", manifest: xgbManifest},
		repoVersion{model: "rank", version: "2", src: "testdata/agaricus/model.json", manifest: xgbManifest + "output: raw\n"})
	ts := startServer(t, Config{ModelDir: root})

	held, err := ts.reg.acquire([]byte("rank"), []byte("1")) // an in-flight request
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "rank", "1")); err != nil {
		t.Fatal(err)
	}
	status, body := ts.post(t, "tcp", "/v1/admin/reload", "application/json", nil)
	if status != 200 || !strings.Contains(string(body), `"rank/1"`) {
		t.Fatalf("reload: %d %s", status, body)
	}
	status, body = ts.post(t, "tcp", "/v1/predict", "application/json", []byte(`{"model":"rank","version":"1","rows":[]}`))
	if code, _ := apiError(t, body); status != 404 || code != "unknown_version" {
		t.Fatalf("retired version: %d %s", status, body)
	}
	row := make([]float32, held.nfeat)
	out := make([]float64, 1)
	if err := held.pred.PredictF32(row, 1, out, false); err != nil {
		t.Fatalf("the in-flight request lost its model: %v", err)
	}
	held.release()
	if err := held.pred.PredictF32(row, 1, out, false); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("after the last release: %v, want ErrClosed", err)
	}
	// Version 2 answers raw margins by its manifest; a request can ask otherwise.
	for _, c := range []struct{ output, want string }{{"", "raw"}, {"transformed", "transformed"}} {
		body, _ := proto.Marshal(&predictpb.PredictRequest{Model: "rank", Output: c.output,
			Rows: []*predictpb.Row{{Values: make([]float64, held.nfeat)}}})
		status, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", body)
		var r predictpb.PredictResponse
		if status != 200 || proto.Unmarshal(resp, &r) != nil || len(r.Predictions) != 1 {
			t.Fatalf("%d %s", status, resp)
		}
		isProb := r.Predictions[0].Score > 0 && r.Predictions[0].Score < 1
		if (c.want == "transformed") != isProb {
			t.Errorf("output %q: score %v", c.output, r.Predictions[0].Score)
		}
	}
}
