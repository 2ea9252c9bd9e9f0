package sidecar

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/examples"
)

func claimsEngine(t testing.TB) *engine.Model {
	t.Helper()
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	return loadEngineModel(t, root, "claims")
}

// TestDemoModel: the embedded demo answers the README's curl example with LightGBM's
// own prediction for that row (the fixture's expected_transformed.txt, first line).
func TestDemoModel(t *testing.T) {
	ts := startServer(t, Config{ModelFS: examples.Models(), Pprof: true})
	body := `{"model": "claims",
  "candidates": [{"id": "policy-1", "features": {"VehBrand": 6, "VehPower": 3, "VehGas": 0,
    "Region": 4, "Area": 0, "VehAge": 18, "DrivAge": 55, "BonusMalus": 50, "Density": 43}}]}`
	// curl -d sends application/x-www-form-urlencoded; the README's example relies on it.
	status, resp := ts.post(t, "tcp", "/v1/predict", "application/x-www-form-urlencoded", []byte(body))
	if status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	var r jsonResponse
	if err := json.Unmarshal(resp, &r); err != nil || len(r.Predictions) != 1 || r.Predictions[0].Score == nil {
		t.Fatalf("%v: %s", err, resp)
	}
	const lightgbm = 3.747921901318901350e-02
	if got := *r.Predictions[0].Score; math.Abs(got-lightgbm) > 1e-12*lightgbm {
		t.Fatalf("score %v, LightGBM says %v", got, lightgbm)
	}
	if status, _ := ts.get(t, "/readyz"); status != 200 {
		t.Fatalf("readyz %d", status)
	}
	if status, _ := ts.get(t, "/healthz"); status != 200 {
		t.Fatalf("healthz %d", status)
	}
	if status, body := ts.get(t, "/debug/pprof/"); status != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("pprof enabled: %d %.100s", status, body)
	}
}
