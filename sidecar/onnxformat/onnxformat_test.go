package onnxformat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/predictd/predictd/engine/onnx"
	"github.com/predictd/predictd/sidecar"
)

const testdata = "../../engine/onnx/testdata"

// inputs reads testdata/<name>.inputs.json: the feature order and the rows.
func inputs(t *testing.T, name string) ([]string, [][]float64) {
	t.Helper()
	var in struct {
		Features []string    `json:"features"`
		Rows     [][]float64 `json:"rows"`
	}
	b, err := os.ReadFile(filepath.Join(testdata, name+".inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	return in.Features, in.Rows
}

// expected reads ONNX Runtime's own outputs for the inputs (testdata/<name>.expected.json).
func expected(t *testing.T, name, output string) []float64 {
	t.Helper()
	var ex struct {
		Outputs map[string][]float64 `json:"outputs"`
	}
	b, err := os.ReadFile(filepath.Join(testdata, name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	return ex.Outputs[output]
}

// testDevice is the device the models run on: ONNX_TEST_DEVICE (e.g. cuda, for the
// GPU check), else cpu. Off the CPU, outputs are compared with ONNX Runtime on CPU
// within 1e-3, as engine/onnx's own tests do.
func testDevice() (device, want string, tol float64) {
	if d := os.Getenv("ONNX_TEST_DEVICE"); d != "" && d != "cpu" {
		want = d
		if d == "cuda" {
			want = "cuda:0"
		}
		return d, want, 1e-3
	}
	return "cpu", "cpu", 1e-6
}

// repo writes a model repository with the two test models: mlp (one float input of 8
// of the 10 features, the logit output) and emb (a dense and an int64 id input, both
// softmax probabilities).
func repo(t *testing.T, extra string) string {
	t.Helper()
	root := t.TempDir()
	mlpFeat, _ := inputs(t, "mlp")
	embFeat, _ := inputs(t, "emb")
	dev, _, _ := testDevice()
	write := func(model, manifest, file string) {
		dir := filepath.Join(root, model, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(testdata, file))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644)
		os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(manifest), 0o644)
	}
	write("mlp", fmt.Sprintf(`format: onnx
file: model.onnx
features: [%s]
onnx:
  inputs: [{name: x, features: [m0, m1, m2, m3, m4, m5, m6, m7]}]
  output: {name: logit}
  device: %s
%s`, strings.Join(mlpFeat, ", "), dev, extra), "mlp.onnx")
	write("emb", fmt.Sprintf(`format: onnx
file: model.onnx
features: [%s]
onnx:
  inputs:
    - {name: dense, dtype: float32, features: [d0, d1, d2, d3]}
    - {name: ids, dtype: int64, features: [user_id, item_id]}
  output: {name: probs}
  device: %s
`, strings.Join(embFeat, ", "), dev), "emb.onnx")
	return root
}

func serve(t *testing.T, root string) string {
	t.Helper()
	s, err := sidecar.New(sidecar.Config{ModelDir: root, Formats: Formats(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if res := s.Reload(); len(res.Failed) > 0 {
		t.Fatalf("load: %v", res.Failed)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String()
}

func post(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func rowsBody(model string, rows [][]float64) []byte {
	b, _ := json.Marshal(map[string]any{"model": model, "rows": rows})
	return b
}

// TestPredictMatchesORT: both test models served through /v1/predict over real HTTP
// answer ONNX Runtime's own outputs (engine/onnx/testdata/*.expected.json, written by
// onnxruntime_go directly), and /v1/models names the device actually used.
func TestPredictMatchesORT(t *testing.T) {
	url := serve(t, repo(t, ""))
	_, wantDevice, tol := testDevice()
	for _, tc := range []struct{ model, output string }{{"mlp", "logit"}, {"emb", "probs"}} {
		_, rows := inputs(t, tc.model)
		want := expected(t, tc.model, tc.output)
		status, body := post(t, url, rowsBody(tc.model, rows))
		if status != 200 {
			t.Fatalf("%s: %d %s", tc.model, status, body)
		}
		var r struct {
			Predictions []struct {
				Score  float64   `json:"score"`
				Scores []float64 `json:"scores"`
			} `json:"predictions"`
		}
		if err := json.Unmarshal(body, &r); err != nil || len(r.Predictions) != len(rows) {
			t.Fatalf("%s: %v %s", tc.model, err, body)
		}
		width := len(want) / len(rows)
		for i, p := range r.Predictions {
			got := []float64{p.Score}
			if width > 1 {
				got = p.Scores
			}
			for k := 0; k < width; k++ {
				w := want[i*width+k]
				// The expected values are float32 printed in shortest form; ONNX Runtime may
				// differ in the last bits across thread counts.
				if math.Abs(got[k]-w) > tol*max(1, math.Abs(w)) {
					t.Fatalf("%s row %d output %d: %v, ONNX Runtime says %v", tc.model, i, k, got[k], w)
				}
			}
		}
	}
	resp, err := http.Get(url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var st sidecar.ModelsStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st.Models) != 2 {
		t.Fatalf("%+v", st)
	}
	for _, m := range st.Models {
		if v := m.Versions[0]; v.Format != "onnx" || v.Device != wantDevice || v.Backend != "onnx/"+wantDevice {
			t.Errorf("%s: format %q device %q backend %q", m.Name, v.Format, v.Device, v.Backend)
		}
	}
	// An id that is not an integer is the client's error.
	_, rows := inputs(t, "emb")
	rows[0][0] = 1.5 // item_id
	status, body := post(t, url, rowsBody("emb", rows[:1]))
	if status != 400 || !strings.Contains(string(body), `"bad_input"`) {
		t.Errorf("fractional id: %d %s", status, body)
	}
}

// TestErrorMapping: the errors of engine/onnx that are not bugs map to the sidecar's
// status sentinels.
func TestErrorMapping(t *testing.T) {
	f := func(err, want error) {
		t.Helper()
		got := mapErr(fmt.Errorf("ctx: %w", err))
		if !errors.Is(got, want) || !errors.Is(got, err) {
			t.Errorf("%v → %v, want it to wrap %v", err, got, want)
		}
	}
	f(onnx.ErrQueueFull, sidecar.ErrBusy)
	f(onnx.ErrInvalidInput, sidecar.ErrBadInput)
	if mapErr(nil) != nil {
		t.Error("nil error mapped")
	}
}

// TestManifestErrors: the onnx: section is decoded with unknown keys as errors, and a
// model without a feature list fails its load with the fix.
func TestManifestErrors(t *testing.T) {
	root := repo(t, "  colour: blue\n")
	res := sidecar.Check(os.DirFS(root), root, nil, Formats())
	var mlpErr error
	for _, r := range res {
		if r.Name == "mlp/1" {
			mlpErr = r.Err
		}
	}
	if mlpErr == nil || !strings.Contains(mlpErr.Error(), "colour") {
		t.Errorf("unknown onnx key: %v", res)
	}
	if _, err := sidecar.ParseManifest([]byte("format: xgboost\nfile: m.json\nonnx: {device: cpu}\n")); err == nil {
		t.Error("an onnx section on an xgboost model was accepted")
	}
}

// TestServeBinarySIGTERMWithORT: the real binary with ONNX Runtime loaded (found in
// third_party/onnxruntime from the repository root) answers, then exits 0 on SIGTERM
// (onnxruntime_go#140: ORT must not take over Go's signal handling).
func TestServeBinarySIGTERMWithORT(t *testing.T) {
	// PREDICTD_BIN: a prebuilt binary, for hosts without Go (the GPU check).
	bin := os.Getenv("PREDICTD_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "predictd")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/predictd/predictd/cmd/predictd").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--models", repo(t, ""), "--listen", addr, "--log-format", "json")
	cmd.Dir = "../.." // the repository root: third_party/onnxruntime
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, rows := inputs(t, "mlp")
	if status, body := post(t, url, rowsBody("mlp", rows)); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no graceful stop in the log:\n%s", stderr.String())
	}
}

// TestContextReachesONNX: the Model the sidecar scores through is a
// sidecar.ContextPredictor whose context reaches ONNX Runtime's call (an ended context
// stops the call; without batching, before the run), so the request deadline the
// sidecar passes is honoured.
func TestContextReachesONNX(t *testing.T) {
	root := repo(t, "")
	dir := filepath.Join(root, "mlp", "1")
	yml, err := os.ReadFile(filepath.Join(dir, "model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := sidecar.ParseManifest(yml)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(sidecar.LoadRequest{Model: "mlp", Version: "1", Manifest: man, File: "mlp/1/model.onnx", Data: data, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cp, ok := p.(sidecar.ContextPredictor)
	if !ok {
		t.Fatalf("%T is not a sidecar.ContextPredictor: the request deadline cannot reach it", p)
	}
	_, rows := inputs(t, "mlp")
	nf := p.NumFeatures()
	row := rows[0][:nf]
	out := make([]float64, p.NumOutputs(false))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cp.PredictF64Context(ctx, row, 1, out, false); !errors.Is(err, context.Canceled) {
		t.Errorf("PredictF64Context with an ended context: %v, want context.Canceled", err)
	}
	row32 := make([]float32, nf)
	for i, x := range row {
		row32[i] = float32(x)
	}
	if err := cp.PredictF32Context(ctx, row32, 1, out, false); !errors.Is(err, context.Canceled) {
		t.Errorf("PredictF32Context with an ended context: %v, want context.Canceled", err)
	}
	if err := cp.PredictF64Context(context.Background(), row, 1, out, false); err != nil {
		t.Errorf("PredictF64Context: %v", err)
	}
}
