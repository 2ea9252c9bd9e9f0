package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBinary builds a command of this module into dir.
func buildBinary(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".." // the module root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// startSidecar runs the real predictd with the bundled demo model on a Unix socket with
// pprof enabled and waits until it is ready.
func startSidecar(t *testing.T, bin, sock string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "", "--unix", sock, "--pprof", "--watch=false")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("predictd output:\n%s", logs.String())
		}
	})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://sidecar/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("predictd not ready after 30s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSmokeAgainstSidecar builds the real sidecar and the load generator, runs the smoke
// scenario through the CLI over a Unix socket, and checks the profile: every step answered
// without errors, sidecar CPU and RSS measured, a CPU profile taken, and the report renders
// (files present and non-empty, plots with data points). Then capacity and compare run on
// the profile.
func TestSmokeAgainstSidecar(t *testing.T) {
	bin := t.TempDir()
	predictd := buildBinary(t, bin, "./cmd/predictd")
	lt := buildBinary(t, bin, "./cmd/predictd-loadtest")
	sock := filepath.Join(t.TempDir(), "predictd.sock")
	sidecar := startSidecar(t, predictd, sock)

	out := t.TempDir()
	run := exec.Command(lt, "run", "--scenario", "scenarios/smoke.yaml", "--target", "unix:"+sock,
		"--out", out, "--run-id", "ci", "--label", "smoke test", "--progress=false")
	b, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("predictd-loadtest run: %v\n%s", err, b)
	}
	t.Logf("%s", b)
	dir := filepath.Join(out, "smoke", "ci")
	res, err := LoadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sidecar.PID != sidecar.Process.Pid {
		t.Errorf("sidecar pid %d, want %d (found by %q)", res.Sidecar.PID, sidecar.Process.Pid, res.Sidecar.PIDSource)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d steps, want 2", len(res.Steps))
	}
	for _, st := range res.Steps {
		if st.Requests == 0 || st.OK != st.Requests || st.PredictionsPerSec <= 0 {
			t.Errorf("step %d: %d requests, %d ok, errors %v", st.Index, st.Requests, st.OK, st.Errors)
		}
		if st.SidecarCPUSeconds <= 0 || st.CPUSecondsPer1kPredictions <= 0 || st.RSSBytes <= 0 {
			t.Errorf("step %d: sidecar cpu %v, per 1k %v, rss %v", st.Index, st.SidecarCPUSeconds, st.CPUSecondsPer1kPredictions, st.RSSBytes)
		}
	}
	if res.Sidecar.CPUProfile == "" {
		t.Errorf("no CPU profile: %s", res.Sidecar.ProfileNote)
	} else if fi, err := os.Stat(filepath.Join(dir, res.Sidecar.CPUProfile)); err != nil || fi.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
	checkReport(t, dir, len(res.Steps))

	// capacity answers from the profile (a p99 bound every step meets). On a busy machine
	// the generator may mark steps generator-limited, which capacity rightly ignores; the
	// copy clears the mark so the machine's load does not decide this test.
	usable := *res
	usable.Steps = append([]StepResult(nil), res.Steps...)
	for i := range usable.Steps {
		usable.Steps[i].GeneratorLimited = false
	}
	udir := t.TempDir()
	if err := WriteResult(udir, &usable); err != nil {
		t.Fatal(err)
	}
	capOut, err := exec.Command(lt, "capacity", "--rps", "100", "--p99", "1s", udir).CombinedOutput()
	if err != nil || !strings.Contains(string(capOut), "you need") {
		t.Errorf("capacity: %v\n%s", err, capOut)
	}
	// compare of a profile with itself finds no regression (exit 0); a doctored copy whose
	// every request took twice as long exits 1.
	if b, err := exec.Command(lt, "compare", dir, dir).CombinedOutput(); err != nil {
		t.Errorf("compare A A: %v\n%s", err, b)
	}
	worse := *res
	worse.Steps = append([]StepResult(nil), res.Steps...)
	for i := range worse.Steps {
		st := &worse.Steps[i]
		var wins [][]int64
		for _, pairs := range st.WindowLatencyUs {
			doubled := append([]int64(nil), pairs...)
			for p := 0; p < len(doubled); p += 2 {
				doubled[p] *= 2
			}
			wins = append(wins, doubled)
		}
		st.WindowLatencyUs = wins
	}
	wdir := t.TempDir()
	if err := WriteResult(wdir, &worse); err != nil {
		t.Fatal(err)
	}
	b, err = exec.Command(lt, "compare", "--min-runs", "1", dir, wdir).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(b), "REGRESSION") {
		t.Errorf("compare A worse: %v\n%s", err, b)
	}
}

// TestInterleavedSidecars: run --interleave against two real sidecars through the CLI
// (Poisson arrivals, every other one to each): each side is measured on its own sidecar
// (its pid, CPU and RSS), gets the scenario's rate, and compare --paired takes the two
// sides' repeats as pairs.
func TestInterleavedSidecars(t *testing.T) {
	bin := t.TempDir()
	predictd := buildBinary(t, bin, "./cmd/predictd")
	lt := buildBinary(t, bin, "./cmd/predictd-loadtest")
	sa, sb := filepath.Join(t.TempDir(), "a.sock"), filepath.Join(t.TempDir(), "b.sock")
	a, b := startSidecar(t, predictd, sa), startSidecar(t, predictd, sb)
	out := t.TempDir()
	run := exec.Command(lt, "run", "--scenario", "scenarios/smoke.yaml", "--target", "unix:"+sa,
		"--interleave", "unix:"+sb, "--repeat", "2", "--out", out, "--run-id", "ab", "--progress=false")
	o, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("predictd-loadtest run --interleave: %v\n%s", err, o)
	}
	t.Logf("%s", o)
	for k := 1; k <= 2; k++ {
		for side, pid := range map[string]int{"a": a.Process.Pid, "b": b.Process.Pid} {
			res, err := LoadResult(filepath.Join(out, "smoke", "ab", side, fmt.Sprintf("rep-%d", k)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Sidecar.PID != pid || res.Interleaved == nil || res.Interleaved.Side != side {
				t.Errorf("rep %d side %s: pid %d (want %d), %+v", k, side, res.Sidecar.PID, pid, res.Interleaved)
			}
			for _, st := range res.Steps {
				// Each side gets every other Poisson arrival: about the step's rate.
				want := st.OfferedRPS * st.MeasuredS
				if st.OK != st.Requests || !within(float64(st.Requests), want, 0.5, 5) {
					t.Errorf("rep %d side %s step %d: %d requests (%d ok), want about %.0f", k, side, st.Index, st.Requests, st.OK, want)
				}
				if st.SidecarCPUSeconds <= 0 || st.CPUSecondsPer1kPredictions <= 0 || st.RSSBytes <= 0 || len(st.WindowCPUSeconds) == 0 {
					t.Errorf("rep %d side %s step %d: cpu %v, per 1k %v, rss %v, windows %v", k, side, st.Index,
						st.SidecarCPUSeconds, st.CPUSecondsPer1kPredictions, st.RSSBytes, st.WindowCPUSeconds)
				}
			}
		}
	}
	cmp := exec.Command(lt, "compare", "--paired", filepath.Join(out, "smoke", "ab", "a"), filepath.Join(out, "smoke", "ab", "b"))
	o, err = cmp.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) || !strings.Contains(string(o), "A: 2 run(s), B: 2 run(s), paired") ||
		strings.Contains(string(o), "did not alternate") {
		t.Errorf("compare --paired a b: %v\n%s", err, o)
	}
}

// TestCLIInterrupt: SIGINT to a running predictd-loadtest stops it cleanly (exit 0) and
// the profile holds the partial step, marked interrupted.
func TestCLIInterrupt(t *testing.T) {
	lt := buildBinary(t, t.TempDir(), "./cmd/predictd-loadtest")
	ts := startTestServer(t, nil)
	scen := filepath.Join(t.TempDir(), "long.yaml")
	if err := os.WriteFile(scen, []byte("name: long\nwarmup: 200ms\nwindow: 500ms\nsteps: [{rate: 50, duration: 60s}]\nworkloads: [{model: m}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(lt, "run", "--scenario", scen, "--target", ts.unix, "--out", out, "--run-id", "x")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, logs.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to stop", d)
	}
	res, err := LoadResult(filepath.Join(out, "long", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || len(res.Steps) != 1 || res.Steps[0].OK == 0 {
		t.Errorf("interrupted %v steps %+v\n%s", res.Interrupted, res.Steps, logs.String())
	}
	if !strings.Contains(logs.String(), "interrupted: partial results written") {
		t.Errorf("output:\n%s", logs.String())
	}
	checkReport(t, filepath.Join(out, "long", "x"), 0)
}
