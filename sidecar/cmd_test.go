package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// predictdBinary builds cmd/predictd once per test run.
func predictdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "predictd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "predictd")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/predictd/predictd/cmd/predictd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestServeBinaryGracefulShutdown runs the real binary on a Unix socket, settings from
// the environment, starts a request, sends SIGTERM mid-request, and requires the
// request to complete, new connections to be refused and the exit status to be 0.
func TestServeBinaryGracefulShutdown(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	dir, err := os.MkdirTemp("", "pdserve")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	cmd, hc, stderr := serveBinary(t, bin, sock, []string{"PREDICTD_MAX_CANDIDATES=2", "PREDICTD_LOG_FORMAT=json"},
		"--models", root, "--listen", "", "--unix", sock)
	// The environment set --max-candidates 2.
	resp, err := hc.Post("http://predictd/v1/predict", "application/json",
		strings.NewReader(`{"model":"claims","candidates":[{},{},{}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("PREDICTD_MAX_CANDIDATES=2 not applied: 3 candidates got %d", resp.StatusCode)
	}

	// An in-flight request: headers and half the body sent.
	body := `{"model":"claims","candidates":[{"id":"a","features":{"DrivAge":55}}]}`
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body[:20])
	time.Sleep(100 * time.Millisecond) // let the server start reading it
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new connections to be refused", 10*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	fmt.Fprint(c, body[20:])
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("in-flight request lost: %v\n%s", err, stderr.String())
	}
	got, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || !strings.Contains(string(got), `"id":"a","score":`) {
		t.Fatalf("in-flight request: %d %s", r.StatusCode, got)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("did not exit after SIGTERM\n%s", stderr.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("log lacks the stop line:\n%s", stderr.String())
	}
}

// TestCommands: --help documents every flag with its variable; check exits 0 on a good
// repository and 1 with the reasons on a bad one; bad flags exit 2.
func TestCommands(t *testing.T) {
	bin := predictdBinary(t)
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--models", "PREDICTD_MODELS", "--listen", "PREDICTD_LISTEN", "--unix", "PREDICTD_UNIX",
		"--max-body-bytes", "PREDICTD_MAX_BODY_BYTES", "--max-candidates", "--default-deadline", "PREDICTD_DEFAULT_DEADLINE",
		"--threads", "--pprof", "--shutdown-timeout", "--read-timeout", "--watch",
		"--admission-capacity", "PREDICTD_ADMISSION_CAPACITY", "--admission-max-queue-wait", "--admission-max-pending",
		"--shadow-workers", "--prediction-log-dir", "PREDICTD_PREDICTION_LOG_DIR", "--otlp-endpoint", "PREDICTD_OTLP_ENDPOINT",
		"--redis", "PREDICTD_REDIS", "--redis-cluster", "--features", "--features-snapshot", "--features-cache-bytes",
		"--steady-sysmon", "PREDICTD_STEADY_SYSMON"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help lacks %s", want)
		}
	}
	good := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	out, err = exec.Command(bin, "check", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok   claims/1") {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	bad := newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest},
		repoVersion{model: "claims", version: "2", src: "demo", manifest: lgbManifest + "colour: blue\n"},
		repoVersion{model: "other", version: "1", src: "demo", manifest: "format: onnx\nfile: model.txt\n"})
	out, err = exec.Command(bin, "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check bad: %v\n%s", err, out)
	}
	for _, want := range []string{"ok   claims/1", "FAIL claims/2", "colour", "FAIL other/1", "list the model's input features", "2 of 3 failed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{{"serve", "--bogus"}, {"check"}, {"serve", "extra"}} {
		err := exec.Command(bin, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PREDICTD_THREADS=many")
	if err := cmd.Run(); err == nil {
		t.Errorf("PREDICTD_THREADS=many accepted")
	}
}

// TestServeSteadySysmon: serve starts itself again, in the same process, with
// schedtrace added to GODEBUG (what keeps the runtime's monitor thread steady), keeping
// the GODEBUG it was given; a GODEBUG that sets schedtrace, or --steady-sysmon=false,
// leaves the environment as it is. Each serves a prediction.
func TestServeSteadySysmon(t *testing.T) {
	bin := predictdBinary(t)
	for _, c := range []struct {
		godebug string
		args    []string
		want    string
	}{
		{"madvdontneed=1", nil, "madvdontneed=1,schedtrace=2147483647"},
		{"", nil, "schedtrace=2147483647"},
		{"schedtrace=0", nil, "schedtrace=0"},
		{"", []string{"--steady-sysmon=false"}, ""},
	} {
		dir := t.TempDir()
		sock := filepath.Join(dir, "s")
		args := append([]string{"--listen", "", "--unix", sock}, c.args...)
		cmd, hc, stderr := serveBinary(t, bin, sock, []string{"GODEBUG=" + c.godebug}, args...)
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		got := "(unset)"
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
				got = v
			}
		}
		if got != c.want {
			t.Errorf("GODEBUG=%q %v: the serving process has GODEBUG=%q, want %q", c.godebug, c.args, got, c.want)
		}
		if sc := postPredict(t, hc, demoBody); sc != 200 {
			t.Errorf("GODEBUG=%q %v: predict got %d", c.godebug, c.args, sc)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("GODEBUG=%q %v: exit %v\n%s", c.godebug, c.args, err, stderr.String())
		}
		if strings.Contains(stderr.String(), "could not start again") {
			t.Errorf("GODEBUG=%q %v: %s", c.godebug, c.args, stderr.String())
		}
	}
}

// TestServeOutlivesDescriptorShortage runs the real binary with a limit of 64 open
// files, holds connections until it can accept no more (EMFILE), lets them go, and
// requires the next request to be answered: the accept loop waits out the shortage
// instead of ending, and counts it in predictd_accept_errors_total.
func TestServeOutlivesDescriptorShortage(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	dir, err := os.MkdirTemp("", "pdfd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	// ulimit -n sets the hard limit too, so the Go runtime cannot raise it at start.
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, bin, "serve",
		"--models", root, "--listen", "", "--unix", sock, "--watch=false")
	stderr := new(syncBuilder)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	ready := func() bool {
		hc := unixHTTP(sock)
		defer hc.CloseIdleConnections()
		resp, err := hc.Post("http://predictd/v1/predict", "application/json", strings.NewReader(demoBody))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitFor(t, "the server to answer", 30*time.Second, ready)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			break // the listen backlog is full
		}
		held = append(held, c)
	}
	waitFor(t, "an accept to fail for want of descriptors", 10*time.Second, func() bool {
		return strings.Contains(stderr.String(), "too many open files")
	})
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline := time.Now().Add(15 * time.Second)
	for !ready() {
		select {
		case err := <-exited:
			t.Fatalf("the server exited after the shortage: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer 15 s after the connections closed\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	hc := unixHTTP(sock)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://predictd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "predictd_accept_errors_total ") {
		t.Errorf("/metrics lacks predictd_accept_errors_total")
	}
}

// syncBuilder is a strings.Builder safe for a writing process and a reading test.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
