//go:build linux

package sidecar

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const usersGroup = `name: users
key: user_id
ttl: 50ms
max_stale: 1h
features:
  - {name: BonusMalus, type: float64, default: 100}
  - {name: Density, type: float32}
`

// The demo model with two columns from the users group.
const storeManifest = lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 77}, {name: Density, group: users, key: user_id}]
`

// usersCSV is nusers users; user i has BonusMalus 50+i and Density 10.5×i (exact in float32).
func usersCSV(n int) string {
	var b strings.Builder
	b.WriteString("user_id,BonusMalus,Density\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "u%d,%d,%g\n", i, 50+i, 10.5*float64(i))
	}
	return b.String()
}

// TestServeBinaryEmbeddedFeatureStore: with no Redis the real binary serves
// store-backed features from the embedded store, filled from a snapshot written by
// "predictd features load --snapshot"; "predictd check" validates the feature groups
// and the models' use of them.
func TestServeBinaryEmbeddedFeatureStore(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: storeManifest})
	if err := os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte(usersGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	csv, snap := filepath.Join(tmp, "users.csv"), filepath.Join(tmp, "users.snap")
	if err := os.WriteFile(csv, []byte(usersCSV(10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "features", "load", "--group", "users", "--file", csv, "--groups", root,
		"--snapshot", snap).CombinedOutput(); err != nil {
		t.Fatalf("features load: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "check", root).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok   claims/1") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	// A model naming an unknown group, and a broken group file, fail the check.
	bad := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo",
		manifest: strings.Replace(storeManifest, "group: users", "group: nope", 1)})
	os.WriteFile(filepath.Join(bad, "users.group.yaml"), []byte(usersGroup), 0o644)
	out, err := exec.Command(bin, "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAIL claims/1") ||
		!strings.Contains(string(out), "nope") {
		t.Errorf("check with an unknown group: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(bad, "users.group.yaml"), []byte(usersGroup+"colour: blue\n"), 0o644)
	out, err = exec.Command(bin, "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAIL feature groups") {
		t.Errorf("check with a broken group file: %v\n%s", err, out)
	}

	dir, err := os.MkdirTemp("", "pdfeat")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	cmd, hc, stderr := serveBinary(t, bin, sock, nil, "--models", root, "--listen", "", "--unix", sock, "--features-snapshot", snap)
	m := claimsEngine(t)
	rows := randomRows(m, 2, 3)
	rows[7], rows[8] = 53, float64(float32(31.5)) // u3
	rows[9+7], rows[9+8] = 77, math.NaN()         // unknown user: defaults
	want := make([]float64, 2)
	m.PredictF64(rows, 2, want, false)
	feats := func(r int) string {
		var parts []string
		for j := 0; j < 7; j++ {
			if v := rows[r*9+j]; !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%q:%v", m.FeatureNames()[j], v))
			}
		}
		return strings.Join(parts, ",")
	}
	body := fmt.Sprintf(`{"model":"claims","candidates":[{"id":"a","keys":{"user_id":"u3"},"features":{%s}},{"id":"b","keys":{"user_id":"zz"},"features":{%s}}]}`,
		feats(0), feats(1))
	resp, err := hc.Post("http://predictd/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var r jsonResponse
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(r.Predictions) != 2 || *r.Predictions[0].Score != want[0] || *r.Predictions[1].Score != want[1] {
		t.Fatalf("%d %+v, want %v\n%s", resp.StatusCode, r, want, stderr.String())
	}
	// The store records on the server's meter: its metrics are at /metrics.
	mresp, err := hc.Get("http://predictd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), "predictd_features_cache_") {
		t.Errorf("no feature-store metrics at /metrics")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
}
