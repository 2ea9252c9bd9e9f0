package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/predictd/predictd/loadtest"
)

// writeRun writes a one-step profile whose windows all answered in latencyUs.
func writeRun(t *testing.T, dir string, latencyUs int64) {
	t.Helper()
	st := loadtest.StepResult{Phase: "step", MeasuredS: 5}
	st.OfferedRPS, st.AchievedRPS, st.Requests = 300, 300, 1500
	for k := range 5 {
		jitter := int64(k % 2) // two neighbouring values, so the windows differ a little
		st.WindowLatencyUs = append(st.WindowLatencyUs, []int64{latencyUs, 150, latencyUs + jitter, 150})
		st.WindowMeanMs = append(st.WindowMeanMs, float64(latencyUs)/1000)
		st.WindowAchieved = append(st.WindowAchieved, 300)
		st.WindowErrors = append(st.WindowErrors, 0)
	}
	r := &loadtest.Result{Schema: loadtest.ResultSchema, Scenario: "s", RunID: filepath.Base(dir), Steps: []loadtest.StepResult{st}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := loadtest.WriteResult(dir, r); err != nil {
		t.Fatal(err)
	}
}

// TestCompareSides: sides given as --repeat directories and as comma lists; identical
// runs pass, a 50% slower side fails, bad arguments are usage errors.
func TestCompareSides(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/rep-1", "a/rep-2", "same/rep-1", "same/rep-2"} {
		writeRun(t, filepath.Join(root, d), 2000)
	}
	writeRun(t, filepath.Join(root, "slow1"), 3000)
	writeRun(t, filepath.Join(root, "slow2"), 3000)
	f := func(want int, args ...string) {
		t.Helper()
		if got := compareCmd(args); got != want {
			t.Errorf("compare %q: exit %d, want %d", args, got, want)
		}
	}
	f(0, filepath.Join(root, "a"), filepath.Join(root, "same"))
	f(1, filepath.Join(root, "a"), filepath.Join(root, "slow1")+","+filepath.Join(root, "slow2"))
	f(0, "--latency", "60", filepath.Join(root, "a"), filepath.Join(root, "slow1")+","+filepath.Join(root, "slow2"))
	f(0, filepath.Join(root, "a", "rep-1"), filepath.Join(root, "slow1")) // one run per side: not judged
	f(1, "--min-runs", "1", filepath.Join(root, "a", "rep-1"), filepath.Join(root, "slow1"))
	f(2, "--min-runs", "0", filepath.Join(root, "a"), filepath.Join(root, "same"))
	f(2, filepath.Join(root, "a"))
	f(2, filepath.Join(root, "a"), filepath.Join(root, "missing"))
	f(2, "--confidence", "100", filepath.Join(root, "a"), filepath.Join(root, "same"))
	sides, err := loadSide(filepath.Join(root, "a") + "," + filepath.Join(root, "slow1", "result.json"))
	if err != nil || len(sides) != 3 {
		t.Errorf("loadSide: %d runs, %v", len(sides), err)
	}
}
