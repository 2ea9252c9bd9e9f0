package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/predictd/predictd/examples"
)

const demoBody = `{"model":"claims","candidates":[{"id":"a","features":{"DrivAge":55,"BonusMalus":50}}]}`

// serveOn starts serve on a fresh loopback listener and returns its base URL; the
// server's Shutdown (newQuietServer's cleanup) ends it.
func serveOn(t *testing.T, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serve(ln)
	base := "http://" + ln.Addr().String()
	waitFor(t, "the listener", 10*time.Second, func() bool {
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	})
	return base
}

func do(t *testing.T, method, url, token, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func newQuietServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// TestListenerSurfaces: the predict listener serves predictions, the read-only model
// routes and the probes, never /metrics or the admin routes; the admin listener serves
// the probes, /metrics, the model routes and the admin routes, never predictions; with
// an admin token, admin routes need it (a wrong or missing one is 401).
func TestListenerSurfaces(t *testing.T) {
	const token = "s3cret-token"
	s := newQuietServer(t, Config{ModelFS: examples.Models(), AdminToken: token, Pprof: true})
	s.Reload()
	pred, admin := serveOn(t, s.ServePredict), serveOn(t, s.ServeAdmin)

	for _, c := range []struct {
		method, url, token, body string
		status                   int
		want                     string
	}{
		{"POST", pred + "/v1/predict", "", demoBody, 200, `"id":"a"`},
		{"GET", pred + "/v1/models", "", "", 200, `"claims"`},
		{"GET", pred + "/v1/models/claims", "", "", 200, `"claims"`},
		{"GET", pred + "/healthz", "", "", 200, "ok"},
		{"GET", pred + "/readyz", "", "", 200, "ready"},
		{"GET", pred + "/metrics", "", "", 404, "--admin-listen"},
		{"POST", pred + "/v1/admin/reload", token, "", 404, "--admin-listen"},
		{"GET", pred + "/debug/pprof/", token, "", 404, "--admin-listen"},

		{"POST", admin + "/v1/predict", "", demoBody, 404, "--listen"},
		{"GET", admin + "/metrics", "", "", 200, "predictd_"},
		{"GET", admin + "/healthz", "", "", 200, "ok"},
		{"GET", admin + "/readyz", "", "", 200, "ready"},
		{"GET", admin + "/v1/models", "", "", 200, `"claims"`},
		{"POST", admin + "/v1/admin/reload", "", "", 401, "PREDICTD_ADMIN_TOKEN"},
		{"POST", admin + "/v1/admin/reload", "wrong", "", 401, "unauthorized"},
		{"POST", admin + "/v1/admin/reload", token + "x", "", 401, "unauthorized"},
		{"GET", admin + "/debug/pprof/", "", "", 401, "unauthorized"},
		{"POST", admin + "/v1/admin/reload", token, "", 200, "serving"},
		{"GET", admin + "/debug/pprof/", token, "", 200, "profile"},
	} {
		status, body, hdr := do(t, c.method, c.url, c.token, c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s %s (token %q): %d %.200s, want %d with %q", c.method, c.url, c.token, status, body, c.status, c.want)
		}
		if strings.Contains(body, token) {
			t.Errorf("%s %s: the answer carries the token", c.method, c.url)
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.url)
		}
	}
}

// TestNotReadyDuringInitialLoad: before the first load finishes a prediction for any
// model is 503 not_ready with Retry-After, not 404 unknown_model (the model may be on
// its way); after it, a model that really is missing is 404.
func TestNotReadyDuringInitialLoad(t *testing.T) {
	s := newQuietServer(t, Config{ModelFS: examples.Models()})
	base := serveOn(t, s.ServePredict)
	for _, path := range []string{"/v1/predict", "/v1/models/claims"} {
		method, body := "POST", demoBody
		if path != "/v1/predict" {
			method, body = "GET", ""
		}
		status, got, hdr := do(t, method, base+path, "", body)
		if status != 503 || !strings.Contains(got, `"not_ready"`) || hdr.Get("Retry-After") == "" {
			t.Errorf("%s before the initial load: %d %s (Retry-After %q), want 503 not_ready", path, status, got, hdr.Get("Retry-After"))
		}
	}
	s.Reload()
	if status, got, _ := do(t, "POST", base+"/v1/predict", "", demoBody); status != 200 {
		t.Errorf("after the load: %d %s", status, got)
	}
	if status, got, _ := do(t, "POST", base+"/v1/predict", "", `{"model":"nope","candidates":[{}]}`); status != 404 || !strings.Contains(got, "unknown_model") {
		t.Errorf("unknown model after the load: %d %s", status, got)
	}
}

// secretLine stands for the contents of a file a model path may link to.
const secretLine = "root:x:0:0:root:/root:/bin/bash"

// TestErrorsEchoNoInput: malformed HTTP, unknown paths and methods, and model files or
// manifests that are links to some other file: no answer and no /v1/models entry
// carries the bytes sent or the file's contents.
func TestErrorsEchoNoInput(t *testing.T) {
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	secret := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(secret, []byte(secretLine+"\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"), 0o644)
	for _, v := range []struct{ name, file, manifest string }{
		{"linked", "model.txt", lgbManifest},     // the model file is the link
		{"linkedxgb", "model.json", xgbManifest}, // as XGBoost JSON
		{"linkedyaml", "model.yaml", ""},         // the manifest is the link
		{"tokenfile", "model.txt", lgbManifest},  // a one-token file
	} {
		dir := filepath.Join(root, v.name, "1")
		os.MkdirAll(dir, 0o755)
		if v.manifest != "" {
			os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(v.manifest), 0o644)
		}
		target := secret
		if v.name == "tokenfile" {
			target = filepath.Join(t.TempDir(), "token")
			os.WriteFile(target, []byte("AKIAabcdefSECRET0123456789xyzXYZ\n"), 0o644)
		}
		if err := os.Symlink(target, filepath.Join(dir, v.file)); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, Config{ModelDir: root})
	_, models := ts.get(t, "/v1/models")
	for _, leak := range []string{"root:x", "daemon", "/bin/bash", "AKIAabcdef"} {
		if strings.Contains(string(models), leak) {
			t.Errorf("/v1/models quotes a linked file (%q):\n%s", leak, models)
		}
	}
	if !strings.Contains(string(models), "not a LightGBM text model") {
		t.Errorf("/v1/models does not say why the linked file failed:\n%s", models)
	}

	// A client-sent name is quoted only while short: the answer does not grow with it.
	long := strings.Repeat("N", 100_000)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/predict", `{"model":"` + long + `","candidates":[{}]}`},
		{"POST", "/v1/predict", `{"model":"claims","version":"` + long + `","candidates":[{}]}`},
		{"GET", "/v1/models/" + long, ""},
	} {
		st, body := 0, []byte(nil)
		if c.method == "POST" {
			st, body = ts.post(t, "tcp", c.path, "application/json", []byte(c.body))
		} else {
			st, body = ts.get(t, c.path)
		}
		if len(body) > 1000 || st/100 != 4 {
			t.Errorf("%s %.40s with a 100,000-byte name: %d, %d bytes of answer", c.method, c.path, st, len(body))
		}
	}

	const marker = "MARKER<script>"
	for _, raw := range []string{
		"GET /v1/models " + marker + "\r\n\r\n",
		"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + marker + "\r\n\r\n",
		"GET /" + marker + " HTTP/1.1\r\nHost: x\r\n" + marker + "\r\n\r\n",
		marker + "\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat(marker, 1000) + "\r\n\r\n",
		"GET /nope/" + marker + " HTTP/1.1\r\nHost: x\r\n\r\n",
		marker + " /v1/predict HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c, err := net.Dial("tcp", ts.tcp)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, raw)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, _ := io.ReadAll(c)
		c.Close()
		if strings.Contains(string(resp), "MARKER") || strings.Contains(string(resp), "fasthttp") {
			t.Errorf("the answer to %.60q echoes the request:\n%s", raw, resp)
		}
		if !strings.Contains(string(resp), `"error"`) {
			t.Errorf("the answer to %.60q is not an error body:\n%s", raw, resp)
		}
	}
}

// TestMaxModelBytes: a model file over Config.MaxModelBytes fails its load with an error
// that names the limit and the flag that raises it.
func TestMaxModelBytes(t *testing.T) {
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	ts := startServer(t, Config{ModelDir: root, MaxModelBytes: 1000})
	_, models := ts.get(t, "/v1/models/claims")
	if !strings.Contains(string(models), "over the limit of 1000 bytes (--max-model-bytes)") {
		t.Errorf("/v1/models/claims:\n%s", models)
	}
}

// TestFIFOModelFileShutdown: a FIFO in a model file's place (which nobody writes) fails
// that version at once; the others serve, and SIGTERM ends the real binary within its
// drain timeout.
func TestFIFOModelFileShutdown(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	dir := filepath.Join(root, "fifo", "1")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(lgbManifest), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, "model.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "pdfifo")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s")
	cmd, hc, stderr := serveBinary(t, bin, sock, nil,
		"--models", root, "--listen", "", "--unix", sock, "--shutdown-timeout", "5s")
	resp, err := hc.Get("http://predictd/v1/models/fifo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "not a regular file") {
		t.Errorf("/v1/models/fifo:\n%s", body)
	}
	// A change that triggers a reload, which must not block on the FIFO either.
	os.Chtimes(filepath.Join(dir, "model.yaml"), time.Now(), time.Now())
	os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(lgbManifest+"\n"), 0o644)
	time.Sleep(700 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGTERM with --shutdown-timeout 5s\n%s", stderr.String())
	}
}

// TestHotReloadInPlaceRewrite: a served model file rewritten in place, slowly, under
// load, again and again: every answer comes from one of the two whole models, never a
// half-written file, and the last one written ends up served.
func TestHotReloadInPlaceRewrite(t *testing.T) {
	a, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	// b: the same model with every leaf of tree 0 raised by 0.5.
	lines := strings.Split(string(a), "\n")
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l, "leaf_value="); ok {
			f := strings.Fields(v)
			for j, x := range f {
				n, _ := strconv.ParseFloat(x, 64)
				f[j] = strconv.FormatFloat(n+0.5, 'g', -1, 64)
			}
			lines[i] = "leaf_value=" + strings.Join(f, " ")
			break
		}
	}
	b := []byte(strings.Join(lines, "\n"))
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	path := filepath.Join(root, "claims", "1", "model.txt")
	ts := startServer(t, Config{ModelDir: root, Watch: true, ReloadDebounce: 20 * time.Millisecond})
	score := func() (float64, int, string) {
		st, body := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(demoBody))
		var r struct {
			Predictions []struct{ Score float64 } `json:"predictions"`
		}
		if st != 200 || json.Unmarshal(body, &r) != nil || len(r.Predictions) != 1 {
			return 0, st, string(body)
		}
		return r.Predictions[0].Score, st, ""
	}
	sa, st, msg := score()
	if st != 200 {
		t.Fatalf("%d %s", st, msg)
	}
	// The score of b, from a server of its own.
	rootB := t.TempDir()
	os.MkdirAll(filepath.Join(rootB, "claims", "1"), 0o755)
	os.WriteFile(filepath.Join(rootB, "claims", "1", "model.txt"), b, 0o644)
	os.WriteFile(filepath.Join(rootB, "claims", "1", "model.yaml"), []byte(lgbManifest), 0o644)
	tb := startServer(t, Config{ModelDir: rootB})
	stB, bodyB := tb.post(t, "tcp", "/v1/predict", "application/json", []byte(demoBody))
	var rb struct {
		Predictions []struct{ Score float64 } `json:"predictions"`
	}
	if stB != 200 || json.Unmarshal(bodyB, &rb) != nil {
		t.Fatalf("model b: %d %s", stB, bodyB)
	}
	sb := rb.Predictions[0].Score
	if sa == sb {
		t.Fatalf("the two models score alike (%v)", sa)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var answers atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				s, st, msg := score()
				if st != 200 {
					t.Errorf("a request failed during the rewrite: %d %s", st, msg)
					return
				}
				if s != sa && s != sb {
					t.Errorf("score %v is neither model's (%v, %v): a half-written file served", s, sa, sb)
					return
				}
				answers.Add(1)
			}
		}()
	}
	rewrite := func(data []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		for off := 0; off < len(data); off += 4096 {
			f.Write(data[off:min(off+4096, len(data))])
			time.Sleep(3 * time.Millisecond)
		}
		f.Close()
	}
	for i := range 6 {
		if i%2 == 0 {
			rewrite(b)
		} else {
			rewrite(a)
		}
	}
	rewrite(b)
	waitFor(t, "the last model written to serve", 20*time.Second, func() bool {
		s, _, _ := score()
		return s == sb
	})
	stop.Store(true)
	wg.Wait()
	if answers.Load() == 0 {
		t.Fatal("no answers during the rewrite")
	}
}

// TestCheckSaysHowToPublish: predictd check ends with the safe way to publish.
func TestCheckSaysHowToPublish(t *testing.T) {
	bin := predictdBinary(t)
	good := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	out, err := exec.Command(bin, "check", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rename it to") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	out, _ = exec.Command(bin, "serve", "--help").CombinedOutput()
	for _, want := range []string{"--admin-listen", "PREDICTD_ADMIN_LISTEN", "--max-model-bytes", "PREDICTD_MAX_MODEL_BYTES", "PREDICTD_ADMIN_TOKEN", "renaming it into place"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help lacks %s", want)
		}
	}
}

// TestAdminTokenNotLogged and the loopback warning: the real binary with a token and
// a predict listener beyond loopback never writes the token to its log, and warns
// only when predict listens beyond loopback without a token.
func TestAdminTokenNotLogged(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: lgbManifest})
	for _, c := range []struct {
		token, listen string
		warn          bool
	}{{"tok-abc-123", "0.0.0.0:0", false}, {"", "0.0.0.0:0", true}, {"", "127.0.0.1:0", false}} {
		dir, _ := os.MkdirTemp("", "pdtok")
		sock := filepath.Join(dir, "s")
		var env []string
		if c.token != "" {
			env = append(env, "PREDICTD_ADMIN_TOKEN="+c.token)
		}
		cmd, hc, stderr := serveBinary(t, bin, sock, env, "--models", root, "--listen", c.listen, "--unix", sock)
		req, _ := http.NewRequest("POST", "http://predictd/v1/admin/reload", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 401, false: 200}[c.token != ""]; resp.StatusCode != want {
			t.Errorf("token %q: reload over the socket without it: %d, want %d", c.token, resp.StatusCode, want)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
		log := stderr.String()
		if c.token != "" && strings.Contains(log, c.token) {
			t.Errorf("the log carries the admin token:\n%s", log)
		}
		if got := strings.Contains(log, "beyond loopback"); got != c.warn {
			t.Errorf("token %q listen %s: warning %v, want %v\n%s", c.token, c.listen, got, c.warn, log)
		}
	}
}

// slowStore spends the whole request deadline, as a store whose backend hangs would if
// it did not keep the deadline itself: with "late", it returns after the deadline with
// the context's error; with "degraded" it answers degraded after the deadline passed.
type slowStore struct{ keyStore }

func (slowStore) Bind(model, version string, cols []StoreColumn) (FeatureBinding, error) {
	return slowBinding{cols}, nil
}

type slowBinding struct{ cols []StoreColumn }

func (slowBinding) Close() error   { return nil }
func (slowBinding) Source() string { return "slow" }

func (b slowBinding) Fill(ctx context.Context, q *StoreQuery) error {
	<-ctx.Done()
	if string(q.Key(0, "user_id")) == "late" {
		return fmt.Errorf("group users: %w", ctx.Err())
	}
	for _, c := range b.cols {
		q.F64[c.Column] = *c.Spec.Default
		q.SetDegraded(c.Spec.Group)
	}
	return nil
}

// TestStoreTimeNotA504: a store that answers degraded only once the deadline has passed
// still gets its answer scored (200, degraded): the time it spent is not held against
// the request; a Fill that fails with the request's deadline is a 504 that says the
// deadline passed, not a 503 blaming the store.
func TestStoreTimeNotA504(t *testing.T) {
	manifest := lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 100}, Density]
`
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest})
	ts := startServer(t, Config{ModelDir: root, FeatureStore: slowStore{}})
	status, resp := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"claims","keys":{"user_id":"u1"},"candidates":[{}]}`), "X-Deadline-Ms", "20")
	if status != 200 || !strings.Contains(string(resp), `"degraded":true`) {
		t.Errorf("degraded at the deadline: %d %s, want 200 degraded", status, resp)
	}
	status, resp = ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"claims","keys":{"user_id":"late"},"candidates":[{}]}`), "X-Deadline-Ms", "20")
	if code, msg := apiError(t, resp); status != 504 || code != "deadline_exceeded" || !strings.Contains(msg, "before the feature store") {
		t.Errorf("late store: %d %s", status, resp)
	}
}
