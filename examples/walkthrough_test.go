package examples

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFeatureStoreWalkthrough runs the walkthrough of docs/feature-store.md as written
// (the shell block between its markers, from the repository root) and checks what the
// text says of each step: the user read back, the README's score for u1 from Redis, and
// after Redis is shut down an answer for u2 from the group's defaults, marked degraded.
func TestFeatureStoreWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "redis-server", "redis-cli", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not on PATH (scripts/ci/deps.sh installs it): %v", tool, err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "feature-store.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- walkthrough -->\n```sh\n")
	block, _, ok2 := strings.Cut(block, "```\n<!-- /walkthrough -->")
	if !ok || !ok2 {
		t.Fatal("docs/feature-store.md: no walkthrough block between the markers")
	}
	// Redis is stopped whatever happens; each command's output is framed so the checks
	// below can tell them apart.
	var script strings.Builder
	script.WriteString("set -euo pipefail\ntrap 'redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true; kill %1 2>/dev/null || true' EXIT\n")
	var cmds []string
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		cmds = append(cmds, line)
		script.WriteString("echo '=== " + strings.ReplaceAll(line, "'", "'\\''") + "'\n" + line + "\necho\n")
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the walkthrough did not finish in 5 minutes:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", err, out.String())
	}
	outputs := map[string]string{}
	parts := strings.Split(out.String(), "=== ")
	for _, p := range parts[1:] {
		head, body, _ := strings.Cut(p, "\n")
		outputs[head] += body
	}
	find := func(prefix string) (string, string) {
		t.Helper()
		for _, c := range cmds {
			if strings.HasPrefix(c, prefix) {
				return c, outputs[c]
			}
		}
		t.Fatalf("no walkthrough command starts with %q", prefix)
		return "", ""
	}
	if _, o := find("bin/predictd features get"); !strings.Contains(o, "users u1: from redis") ||
		!strings.Contains(o, "BonusMalus") || !strings.Contains(o, " 50\n") || !strings.Contains(o, " 43\n") {
		t.Errorf("features get u1:\n%s", o)
	}
	type answer struct {
		Predictions    []struct{ Score float64 }
		Degraded       bool     `json:"degraded"`
		DegradedGroups []string `json:"degraded_groups"`
	}
	var curls []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "curl -s localhost:8091/v1/predict") {
			curls = append(curls, outputs[c])
		}
	}
	for _, c := range curls {
		if strings.Count(strings.TrimSpace(c), "\n") != 0 {
			t.Errorf("a predict call printed more than its answer (the server's log must not reach the terminal at --log-level warn):\n%s", c)
		}
	}
	if len(curls) != 2 {
		t.Fatalf("%d predict calls in the walkthrough, want 2", len(curls))
	}
	var a1, a2 answer
	if err := json.Unmarshal([]byte(strings.TrimSpace(curls[0])), &a1); err != nil || len(a1.Predictions) != 1 {
		t.Fatalf("first answer %q: %v", curls[0], err)
	}
	const readme = 0.03747921901318901 // LightGBM's own score for the README's row
	if got := a1.Predictions[0].Score; got < readme*(1-1e-12) || got > readme*(1+1e-12) || a1.Degraded {
		t.Errorf("u1 from Redis: %+v, want score %v, not degraded", a1, readme)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(curls[1])), &a2); err != nil || len(a2.Predictions) != 1 {
		t.Fatalf("second answer %q: %v", curls[1], err)
	}
	if !a2.Degraded || len(a2.DegradedGroups) != 1 || a2.DegradedGroups[0] != "users" || a2.Predictions[0].Score == a1.Predictions[0].Score {
		t.Errorf("u2 with Redis down: %+v, want a degraded answer from the defaults", a2)
	}
}
