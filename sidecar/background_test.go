package sidecar

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
)

// TestBackgroundScoring: with BackgroundAfter set, a model's requests are scored on the
// C++ core's background threads once the first one has measured its cost, give answers
// byte-identical to a server that scores every request on its own thread (float64 rows
// for LightGBM, float32 for XGBoost), and are counted in /metrics.
func TestBackgroundScoring(t *testing.T) {
	root := newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest},
		repoVersion{model: "rank", version: "1", src: "testdata/agaricus/model.json", manifest: xgbManifest})
	on := startServer(t, Config{ModelDir: root, BackgroundAfter: time.Nanosecond})
	off := startServer(t, Config{ModelDir: root, BackgroundAfter: -1})
	agaricus, err := engine.LoadFile("testdata/agaricus/model.json", "", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer agaricus.Close()
	const requests = 5
	for model, m := range map[string]*engine.Model{"claims": claimsEngine(t), "rank": agaricus} {
		for i := range requests {
			body := jsonRequest(model, "", "", m.FeatureNames(), randomRows(m, 300, uint64(i)), true)
			s1, b1 := on.post(t, "unix", "/v1/predict", "application/json", body)
			s2, b2 := off.post(t, "unix", "/v1/predict", "application/json", body)
			if s1 != 200 || s2 != 200 || !bytes.Equal(b1, b2) {
				t.Fatalf("%s request %d: background %d %.200s\nforeground %d %.200s", model, i, s1, b1, s2, b2)
			}
		}
	}
	_, metrics := on.get(t, "/metrics")
	for _, model := range []string{"claims", "rank"} {
		// The first request of each model runs on its own thread and measures the cost.
		want := fmt.Sprintf(`predictd_background_scorings_total{model=%q,version="1"} %d`, model, requests-1)
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
		if !strings.Contains(string(metrics), fmt.Sprintf(`predictd_background_cpu_seconds_total{model=%q,version="1"}`, model)) {
			t.Errorf("/metrics lacks the background CPU time of %s", model)
		}
	}
	if _, metrics := off.get(t, "/metrics"); strings.Contains(string(metrics), "predictd_background_scorings_total{") {
		t.Errorf("a server with BackgroundAfter < 0 scored in the background")
	}
}

// starvedModel is the demo model whose background threads never get the CPU: every
// background call ends as engine's does when no thread started the batch in time.
type starvedModel struct{ *engine.Model }

func (m starvedModel) PredictF64Background([]float64, int, []float64, bool, time.Duration) (time.Duration, error) {
	return 0, fmt.Errorf("%w: C++ core: no background thread started the batch", engine.ErrBackgroundTimeout)
}

func (m starvedModel) PredictF32Background([]float32, int, []float64, bool, time.Duration) (time.Duration, error) {
	return 0, fmt.Errorf("%w: C++ core: no background thread started the batch", engine.ErrBackgroundTimeout)
}

// TestBackgroundStarvedIs504: a request whose background batch no thread started before
// its deadline fails as out of time (504 deadline_exceeded), naming the background threads.
func TestBackgroundStarvedIs504(t *testing.T) {
	m := claimsEngine(t)
	v := &version{model: "s", version: "1", pred: m, nfeat: m.NumFeatures(), bg: starvedModel{m}}
	v.psPerRow.Store(int64(time.Millisecond) * 1000) // 1 ms a row: far past bgAfter
	const n = 100
	r := &request{dense: true, nrows: n}
	_, _, _, err := r.score(v, randomRows(m, n, 1), nil, false, time.Now().Add(time.Second), time.Nanosecond)
	status, code := errorStatus(err)
	if status != 504 || code != "deadline_exceeded" || !strings.Contains(err.Error(), "background") {
		t.Errorf("%d %s %v, want 504 deadline_exceeded naming the background threads", status, code, err)
	}
}

// TestObserveClipsOutliers: one preempted request (100× its usual time) moves a version's
// estimate by at most 1/8, while a model that really got slower is followed.
func TestObserveClipsOutliers(t *testing.T) {
	v := &version{}
	v.observe(20*time.Microsecond, 200) // 100 ns a row
	if got := v.expected(200); got != 20*time.Microsecond {
		t.Fatalf("first sample: %v", got)
	}
	v.observe(2*time.Millisecond, 200) // preempted
	if got := v.expected(200); got > 23*time.Microsecond {
		t.Errorf("after one outlier the estimate is %v, want at most 20µs × 1.125", got)
	}
	for range 60 {
		v.observe(2*time.Millisecond, 200)
	}
	if got := v.expected(200); got < 1900*time.Microsecond {
		t.Errorf("after 60 slow requests the estimate is %v, want near 2ms", got)
	}
	for range 40 {
		v.observe(20*time.Microsecond, 200)
	}
	if got := v.expected(200); got > 40*time.Microsecond {
		t.Errorf("after 40 fast requests again the estimate is %v, want near 20µs", got)
	}
	v.observe(time.Second, 10) // too few rows to count
	if got := v.expected(200); got > 40*time.Microsecond {
		t.Errorf("a 10-row batch moved the estimate to %v", got)
	}
}
