package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/proto"
)

// repoVersion is one version directory of a test repository.
type repoVersion struct {
	model, version string
	src            string // model file to copy (testdata path or "demo")
	manifest       string // model.yaml; file names the copied file
}

// writeVersion writes one version directory under root. The directory appears
// atomically (written under a hidden name, then renamed), as a deploy tool would do.
func writeVersion(t testing.TB, root string, v repoVersion) {
	t.Helper()
	tmp := filepath.Join(root, v.model, ".tmp-"+v.version)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	var data []byte
	var err error
	if v.src == "demo" {
		data, err = fs.ReadFile(examples.Models(), "claims/1/model.txt")
	} else if v.src != "" {
		data, err = os.ReadFile(v.src)
	}
	if err != nil {
		t.Fatal(err)
	}
	name := "model.json"
	if v.src == "demo" || strings.HasSuffix(v.src, ".txt") {
		name = "model.txt"
	}
	if v.src != "" {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "model.yaml"), []byte(v.manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, v.model, v.version)); err != nil {
		t.Fatal(err)
	}
}

func newRepo(t testing.TB, versions ...repoVersion) string {
	t.Helper()
	root := t.TempDir()
	for _, v := range versions {
		writeVersion(t, root, v)
	}
	return root
}

const (
	xgbManifest = "format: xgboost\nfile: model.json\n"
	lgbManifest = "format: lightgbm\nfile: model.txt\n"
)

// testServer is a Server listening on loopback TCP and a Unix socket.
type testServer struct {
	*Server
	tcp, unix string // "127.0.0.1:port", socket path
	// One client per network, its connections kept alive across requests: a client
	// per request would leave a connection (two descriptors in this process) open per
	// request until the server's idle timeout.
	tcpClient, unixClient *http.Client
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := s.Reload()
	if len(res.Failed) > 0 && cfg.ModelFS == nil && !strings.Contains(t.Name(), "Broken") {
		t.Logf("initial load failures: %v", res.Failed)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "pdsock")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ux, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	for _, ln := range []net.Listener{tcp, ux} {
		go func() { s.Serve(ln); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		<-done
		os.RemoveAll(dir)
	})
	ts := &testServer{Server: s, tcp: tcp.Addr().String(), unix: sock}
	ts.tcpClient = &http.Client{Transport: &http.Transport{}}
	ts.unixClient = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ts.unix)
		},
	}}
	t.Cleanup(func() {
		ts.tcpClient.CloseIdleConnections()
		ts.unixClient.CloseIdleConnections()
	})
	// fasthttp's Shutdown closes only the listeners Serve has registered: a test that
	// ends before both Serve calls started would leave them serving, and the cleanup
	// waiting for them forever. One request on each proves they are registered.
	for _, network := range []string{"tcp", "unix"} {
		c, base := ts.httpClient(network)
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("GET /healthz over %s: %v", network, err)
		}
		resp.Body.Close()
	}
	return ts
}

// httpClient returns the server's net/http client for "tcp" or "unix" (an independent
// HTTP implementation from the server's) and the URL base to use with it.
func (ts *testServer) httpClient(network string) (*http.Client, string) {
	if network == "unix" {
		return ts.unixClient, "http://predictd"
	}
	return ts.tcpClient, "http://" + ts.tcp
}

// unixHTTP is a net/http client whose every connection goes to the Unix socket sock.
// serveBinary starts the predictd binary bin with `serve` args (plus env), which must
// include --unix sock, and waits until /readyz answers 200 over that socket. The process
// is killed when the test ends, unless the test stops it first; stderr collects its log
// (read it after Wait).
func serveBinary(t *testing.T, bin, sock string, env []string, args ...string) (*exec.Cmd, *http.Client, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	hc := unixHTTP(sock)
	waitFor(t, "the server to be ready", 30*time.Second, func() bool {
		resp, err := hc.Get("http://predictd/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, hc, stderr
}

// postPredict posts a JSON prediction request to a served binary and returns the
// status.
func postPredict(t *testing.T, hc *http.Client, body string) int {
	t.Helper()
	resp, err := hc.Post("http://predictd/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func unixHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// post sends body to path and returns the status and body.
func (ts *testServer) post(t testing.TB, network, path, contentType string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	c, base := ts.httpClient(network)
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (ts *testServer) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	c, base := ts.httpClient("tcp")
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiError decodes an error body; it fails the test when the body is not one.
func apiError(t testing.TB, body []byte) (code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not an error body (%v): %s", err, body)
	}
	return e.Error.Code, e.Error.Message
}

// jsonResponse is the JSON prediction response, decoded with encoding/json.
type jsonResponse struct {
	Model       string `json:"model"`
	Version     string `json:"version"`
	Predictions []struct {
		ID     *string    `json:"id"`
		Score  *float64   `json:"score"`
		Scores []*float64 `json:"scores"`
	} `json:"predictions"`
}

// randomRows draws n rows for m: values from the model's own split thresholds (so rows
// fall on both sides of real splits, and exactly on some), small integers (categories)
// and ~10% missing.
func randomRows(m *engine.Model, n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	ens := m.Ensemble()
	nf := m.NumFeatures()
	byFeat := make([][]float64, nf)
	for i, f := range ens.Feature {
		byFeat[f] = append(byFeat[f], ens.Threshold[i])
	}
	rows := make([]float64, n*nf)
	for i := range rows {
		f := i % nf
		switch r := rng.IntN(10); {
		case r == 0:
			rows[i] = math.NaN()
		case r < 3:
			rows[i] = float64(rng.IntN(8))
		case len(byFeat[f]) > 0:
			th := byFeat[f][rng.IntN(len(byFeat[f]))]
			switch rng.IntN(3) {
			case 0:
				rows[i] = th
			case 1:
				rows[i] = math.Nextafter(th, math.Inf(1))
			default:
				rows[i] = th + rng.NormFloat64()
			}
		default:
			rows[i] = rng.NormFloat64() * 10
		}
	}
	return rows
}

// jsonRequest writes a JSON request: candidates with named features (missing values
// left out or sent as null), or dense rows.
func jsonRequest(model, version, output string, names []string, rows []float64, dense bool) []byte {
	nf := len(names)
	var b strings.Builder
	fmt.Fprintf(&b, `{"model":%q`, model)
	if version != "" {
		fmt.Fprintf(&b, `,"version":%q`, version)
	}
	if output != "" {
		fmt.Fprintf(&b, `,"output":%q`, output)
	}
	num := func(v float64) string {
		if math.IsNaN(v) {
			return "null"
		}
		return fmt.Sprint(v) // %v is the shortest round-trip form
	}
	if dense {
		b.WriteString(`,"rows":[`)
		for i := 0; i < len(rows)/nf; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('[')
			for j, v := range rows[i*nf : (i+1)*nf] {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(num(v))
			}
			b.WriteByte(']')
		}
		b.WriteString("]}")
		return []byte(b.String())
	}
	b.WriteString(`,"candidates":[`)
	for i := 0; i < len(rows)/nf; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c%d","features":{`, i)
		first := true
		for j, v := range rows[i*nf : (i+1)*nf] {
			if math.IsNaN(v) && (i+j)%2 == 0 {
				continue // leave it out: also missing
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			fmt.Fprintf(&b, `%q:%s`, names[j], num(v))
		}
		b.WriteString("}}")
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fillBulkhead takes every admission slot of model and fills its queue with waiters (the
// server's MaxQueueWait must outlast the test), so that every further request for model
// is rejected at once (429, queue full). The returned func empties the queue and frees
// the slots.
func fillBulkhead(t testing.TB, s *Server, model string) func() {
	t.Helper()
	b := s.prod.lim.Bulkhead(model)
	if b == nil {
		t.Fatalf("model %s has no bulkhead", model)
	}
	slots := b.Stats().Slots
	for range slots {
		if err := b.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waiters := int64(slots * 4) // the default QueuePerSlot
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for range waiters {
		go func() {
			if b.Acquire(ctx) == nil {
				b.Release()
			}
			done <- struct{}{}
		}()
	}
	for b.Stats().Queued < waiters {
		time.Sleep(time.Millisecond)
	}
	return func() {
		cancel()
		for range waiters {
			<-done
		}
		for range slots {
			b.Release()
		}
	}
}
