package onnx

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/predictd/predictd/engine"
)

var update = flag.Bool("update", false, "rewrite testdata/*.expected.json from ONNX Runtime")

// testDevice is the device the tests load models on: ONNX_TEST_DEVICE (default cpu). The
// GPU check runs the whole suite with ONNX_TEST_DEVICE=cuda; a cuda run that falls back to
// CPU fails (see loadModel).
var testDevice = os.Getenv("ONNX_TEST_DEVICE")

func TestMain(m *testing.M) {
	if os.Getenv(sigtermChildEnv) != "" {
		os.Exit(sigtermChild())
	}
	flag.Parse()
	// No skip for a missing library: the tests need the real ONNX Runtime.
	if err := Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// testCase is a small model in testdata with the config that serves it.
type testCase struct {
	name    string
	cfg     Config
	outputs []string // every output of the model, for the reference run
}

func intp(v int) *int { return &v }

func mlpCase() testCase {
	return testCase{
		name: "mlp",
		cfg: Config{
			Inputs: []InputConfig{{Name: "x", Features: []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}}},
			Output: OutputConfig{Name: "score"},
		},
		outputs: []string{"logit", "score"},
	}
}

func embCase() testCase {
	return testCase{
		name: "emb",
		cfg: Config{
			Inputs: []InputConfig{
				{Name: "dense", DType: "float32", Features: []string{"d0", "d1", "d2", "d3"}},
				{Name: "ids", DType: "int64", Features: []string{"user_id", "item_id"}},
			},
			Output: OutputConfig{Name: "probs", Index: intp(1)},
		},
		outputs: []string{"probs"},
	}
}

type inputsFile struct {
	Features []string    `json:"features"`
	Rows     [][]float64 `json:"rows"`
}

// loadInputs returns the feature order and the row-major rows of testdata/<name>.inputs.json.
func loadInputs(t testing.TB, name string) ([]string, []float64, int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f inputsFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	rows := make([]float64, 0, len(f.Rows)*len(f.Features))
	for _, r := range f.Rows {
		rows = append(rows, r...)
	}
	return f.Features, rows, len(f.Rows)
}

func modelPath(name string) string { return filepath.Join("testdata", name+".onnx") }

// loadModel loads a test model on testDevice. On a cuda run, falling back to CPU fails the
// test: the GPU check must prove the GPU path.
func loadModel(t testing.TB, tc testCase, features []string, mutate func(*Config)) *Model {
	t.Helper()
	cfg := tc.cfg
	cfg.Device = testDevice
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := Load(modelPath(tc.name), cfg, features)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if cfg.Device != "" && cfg.Device != "cpu" && !strings.HasPrefix(m.Device(), "cuda") {
		t.Fatalf("device %q requested, model runs on %q", cfg.Device, m.Device())
	}
	return m
}

// reference runs the model with onnxruntime_go directly (Go-memory tensors, default session
// options, CPU) and returns every output, flattened. It is the ground truth the Model must
// reproduce.
func reference(t testing.TB, tc testCase, features []string, rows []float64, nrows int) map[string][]float32 {
	t.Helper()
	idx := map[string]int{}
	for i, f := range features {
		idx[f] = i
	}
	var (
		names  []string
		inputs []ort.Value
	)
	for _, in := range tc.cfg.Inputs {
		k := len(in.Features)
		shape := ort.NewShape(int64(nrows), int64(k))
		var v ort.Value
		var err error
		if in.DType == "int64" {
			data := make([]int64, nrows*k)
			for r := range nrows {
				for j, f := range in.Features {
					data[r*k+j] = int64(rows[r*len(features)+idx[f]])
				}
			}
			v, err = ort.NewTensor(shape, data)
		} else {
			data := make([]float32, nrows*k)
			for r := range nrows {
				for j, f := range in.Features {
					data[r*k+j] = float32(rows[r*len(features)+idx[f]])
				}
			}
			v, err = ort.NewTensor(shape, data)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		names = append(names, in.Name)
		inputs = append(inputs, v)
	}
	sess, err := ort.NewDynamicAdvancedSession(modelPath(tc.name), names, tc.outputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	outs := make([]ort.Value, len(tc.outputs))
	if err := sess.Run(inputs, outs); err != nil {
		t.Fatal(err)
	}
	res := map[string][]float32{}
	for i, name := range tc.outputs {
		res[name] = append([]float32(nil), outs[i].(*ort.Tensor[float32]).GetData()...)
		outs[i].Destroy()
	}
	return res
}

// score extracts what the Model should return from the reference outputs.
func score(tc testCase, ref map[string][]float32, nrows int) []float64 {
	o := ref[tc.cfg.Output.Name]
	w := len(o) / nrows
	var want []float64
	for r := range nrows {
		if tc.cfg.Output.Index != nil {
			want = append(want, float64(o[r*w+*tc.cfg.Output.Index]))
			continue
		}
		for j := range w {
			want = append(want, float64(o[r*w+j]))
		}
	}
	return want
}

// tolerance: on CPU the Model runs the same kernels on the same float32 values as the
// reference, but at other batch sizes, which may change the GEMM's summation order; 1e-5
// covers that. A GPU must agree with the CPU within 1e-3 (the GPU target, docs/onnx.md).
func tolerance() float64 {
	if testDevice != "" && testDevice != "cpu" {
		return 1e-3
	}
	return 1e-5
}

func checkClose(t testing.TB, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(got[i] - want[i]); !(d <= tol*math.Max(1, math.Abs(want[i]))) {
			t.Fatalf("%s: value %d = %v, want %v (diff %g > %g)", what, i, got[i], want[i], d, tol)
		}
	}
}

// TestGolden checks that ONNX Runtime still computes the checked-in expected outputs
// (written by -update from the same reference run), so an ONNX Runtime upgrade that
// changes results shows up here.
func TestGolden(t *testing.T) {
	for _, tc := range []testCase{mlpCase(), embCase()} {
		t.Run(tc.name, func(t *testing.T) {
			features, rows, nrows := loadInputs(t, tc.name)
			ref := reference(t, tc, features, rows, nrows)
			path := filepath.Join("testdata", tc.name+".expected.json")
			if *update {
				data, err := json.MarshalIndent(map[string]any{
					"ort_version": Version(),
					"outputs":     ref,
				}, "", " ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (generate it: go test ./engine/onnx -run TestGolden -update)", err)
			}
			var golden struct {
				Outputs map[string][]float64 `json:"outputs"`
			}
			if err := json.Unmarshal(data, &golden); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.outputs {
				got := make([]float64, len(ref[name]))
				for i, v := range ref[name] {
					got[i] = float64(v)
				}
				checkClose(t, name, got, golden.Outputs[name], 1e-6)
			}
		})
	}
}

// TestMatchesORT is the parity test: the Model's scores equal ONNX Runtime's own outputs
// on the same inputs, through every entry point and with batching on and off.
func TestMatchesORT(t *testing.T) {
	for _, tc := range []testCase{mlpCase(), embCase()} {
		features, rows, nrows := loadInputs(t, tc.name)
		want := score(tc, reference(t, tc, features, rows, nrows), nrows)
		rows32 := make([]float32, len(rows))
		for i, v := range rows {
			rows32[i] = float32(v)
		}
		for _, batching := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batching=%v", tc.name, batching), func(t *testing.T) {
				m := loadModel(t, tc, features, func(c *Config) {
					if batching {
						c.Batching = &BatchingConfig{MaxBatch: 16}
					}
				})
				if m.NumFeatures() != len(features) || m.NumOutputs(false) != len(want)/nrows {
					t.Fatalf("NumFeatures %d NumOutputs %d", m.NumFeatures(), m.NumOutputs(false))
				}
				out := make([]float64, len(want))
				if err := m.PredictF64(rows, nrows, out, false); err != nil {
					t.Fatal(err)
				}
				checkClose(t, "PredictF64", out, want, tolerance())
				clear(out)
				if err := m.PredictF32(rows32, nrows, out, true); err != nil {
					t.Fatal(err)
				}
				checkClose(t, "PredictF32", out, want, tolerance())
				// Row by row, as a service sending one candidate would.
				w := len(want) / nrows
				f := len(features)
				for r := range nrows {
					one := make([]float64, w)
					if err := m.PredictF32(rows32[r*f:(r+1)*f], 1, one, false); err != nil {
						t.Fatal(err)
					}
					checkClose(t, fmt.Sprintf("row %d", r), one, want[r*w:(r+1)*w], tolerance())
				}
			})
		}
	}
}

// TestDefaultMapping: with no onnx.inputs, a single-input model takes every feature in the
// sidecar's order (the zero-copy path); without output.index all columns come back.
func TestDefaultMapping(t *testing.T) {
	tc := mlpCase()
	features := tc.cfg.Inputs[0].Features
	_, allRows, nrows := loadInputs(t, "mlp")
	allFeatures, _, _ := loadInputs(t, "mlp")
	// Reorder the test rows into the model's own order.
	rows := make([]float32, nrows*len(features))
	for r := range nrows {
		for j, f := range features {
			for c, g := range allFeatures {
				if g == f {
					rows[r*len(features)+j] = float32(allRows[r*len(allFeatures)+c])
				}
			}
		}
	}
	rows64 := make([]float64, len(rows))
	for i, v := range rows {
		rows64[i] = float64(v)
	}
	want := score(tc, reference(t, tc, features, rows64, nrows), nrows)
	m := loadModel(t, testCase{name: "mlp", cfg: Config{Output: OutputConfig{Name: "score"}}}, features, nil)
	if !m.zeroCopy || !m.InputFloat32() {
		t.Fatal("a float32 single-input model fed every feature in order should take float32 rows without copying")
	}
	// Both paths: this batch is below pinMinValues (copied); lowered, it is lent.
	for _, pinMin := range []int{pinMinValues, 0} {
		m.pinMinValues = pinMin
		out := make([]float64, nrows)
		if err := m.PredictF32(rows, nrows, out, false); err != nil {
			t.Fatal(err)
		}
		checkClose(t, fmt.Sprintf("pinMinValues=%d", pinMin), out, want, tolerance())
	}

	// All columns of a multi-column output: probs has 2 per row, summing to 1.
	etc := embCase()
	efeat, erows, en := loadInputs(t, "emb")
	em := loadModel(t, testCase{name: "emb", cfg: Config{Inputs: etc.cfg.Inputs}}, efeat, nil)
	if em.NumOutputs(false) != 2 {
		t.Fatalf("NumOutputs = %d, want 2", em.NumOutputs(false))
	}
	eout := make([]float64, 2*en)
	if err := em.PredictF64(erows, en, eout, false); err != nil {
		t.Fatal(err)
	}
	ref := reference(t, etc, efeat, erows, en)["probs"]
	for i := range eout {
		if math.Abs(eout[i]-float64(ref[i])) > tolerance() {
			t.Fatalf("probs[%d] = %v, want %v", i, eout[i], ref[i])
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(modelPath("mlp"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := write("truncated.onnx", good[:len(good)/2])
	garbage := write("garbage.onnx", []byte("this is not a protobuf \x00\x01\x02"))
	empty := write("empty.onnx", nil)

	mlpFeat := mlpCase().cfg.Inputs[0].Features
	embFeat, _, _ := loadInputs(t, "emb")
	f := func(path string, cfg Config, features []string, want ...string) {
		t.Helper()
		m, err := Load(path, cfg, features)
		if err == nil {
			m.Close()
			t.Fatalf("Load(%s, %+v) succeeded; want an error with %q", path, cfg, want)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("Load(%s): error %q does not mention %q", path, err, w)
			}
		}
	}
	mlp := mlpCase().cfg
	emb := embCase().cfg
	// Corrupt and missing files.
	f(truncated, mlp, mlpFeat, "truncated.onnx", "not a loadable ONNX model")
	f(garbage, mlp, mlpFeat, "garbage.onnx", "not a loadable ONNX model")
	f(empty, mlp, mlpFeat, "empty.onnx", "is empty")
	f(filepath.Join(dir, "nope.onnx"), mlp, mlpFeat, "nope.onnx", "no such file")
	// Missing inputs.
	f(modelPath("emb"), Config{Inputs: emb.Inputs[:1], Output: emb.Output}, embFeat, "ids", "not mapped in onnx.inputs")
	f(modelPath("emb"), Config{Output: emb.Output}, embFeat, "2 inputs", "dense float32 [-1 4], ids int64 [-1 2]", "map each in onnx.inputs")
	f(modelPath("mlp"), Config{Inputs: []InputConfig{{Name: "y", Features: mlpFeat}}, Output: mlp.Output}, mlpFeat, `"y"`, "inputs are x")
	// Wrong shapes: 7 features for an [N,8] input, an index past the output's columns.
	f(modelPath("mlp"), Config{Inputs: []InputConfig{{Name: "x", Features: mlpFeat[:7]}}, Output: mlp.Output}, mlpFeat, "[-1 8]", "maps 7 features")
	f(modelPath("emb"), Config{Inputs: emb.Inputs, Output: OutputConfig{Name: "probs", Index: intp(2)}}, embFeat, "output.index 2", "2 values per row")
	// Types and names.
	f(modelPath("emb"), Config{Inputs: []InputConfig{emb.Inputs[0], {Name: "ids", DType: "float32", Features: []string{"user_id", "item_id"}}}, Output: emb.Output}, embFeat, "dtype float32", "model's input is int64")
	f(modelPath("mlp"), Config{Inputs: mlp.Inputs, Output: OutputConfig{Name: "prob"}}, mlpFeat, `"prob"`, "logit, score")
	f(modelPath("mlp"), Config{Inputs: mlp.Inputs}, mlpFeat, "2 outputs", "onnx.output.name")
	f(modelPath("mlp"), mlp, append(mlpFeat[:7:7], "other"), `feature "m7"`, "not one of")
	f(modelPath("mlp"), mlp, append(mlpFeat[:8:8], "m0"), `"m0" appears twice`)
	f(modelPath("mlp"), Config{Inputs: mlp.Inputs, Output: mlp.Output, Device: "tpu"}, mlpFeat, `device "tpu"`)
}

func TestPredictErrors(t *testing.T) {
	for _, batching := range []bool{false, true} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			tc := embCase()
			features, rows, nrows := loadInputs(t, "emb")
			m := loadModel(t, tc, features, func(c *Config) {
				if batching {
					c.Batching = &BatchingConfig{}
				}
			})
			out := make([]float64, nrows)
			f := len(features)
			if err := m.PredictF64(rows[:len(rows)-1], nrows, out, false); !errors.Is(err, engine.ErrFeatureCount) {
				t.Fatalf("short rows: %v", err)
			}
			if err := m.PredictF64(rows, nrows, out[:nrows-1], false); !errors.Is(err, engine.ErrShortOutput) {
				t.Fatalf("short out: %v", err)
			}
			if err := m.PredictF64(rows, -1, out, false); !errors.Is(err, engine.ErrFeatureCount) {
				t.Fatalf("negative rows: %v", err)
			}
			if err := m.PredictF64(nil, 0, nil, false); err != nil {
				t.Fatalf("zero rows: %v", err)
			}
			bad := append([]float64(nil), rows[:2*f]...)
			for _, v := range []float64{1.5, math.NaN(), math.Inf(1), 1e300} {
				bad[f+3] = v // row 1, user_id
				err := m.PredictF64(bad, 2, out, false)
				if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), `row 1, feature "user_id"`) {
					t.Fatalf("id %v: %v", v, err)
				}
			}
			// An id past the end of the embedding table: ONNX Runtime's Gather refuses it.
			bad[f+3] = 1000
			if err := m.PredictF64(bad, 2, out, false); err == nil || !strings.Contains(err.Error(), "emb.onnx") {
				t.Fatalf("id 1000: %v", err)
			}
			// The model still serves after bad input.
			if err := m.PredictF64(rows, nrows, out, false); err != nil {
				t.Fatal(err)
			}
			m.Close()
			if err := m.PredictF64(rows, nrows, out, false); !errors.Is(err, engine.ErrClosed) {
				t.Fatalf("after Close: %v", err)
			}
		})
	}
}

// hasGPU reports whether this host has an NVIDIA GPU device node.
func hasGPU() bool {
	_, err := os.Stat("/dev/nvidia0")
	return err == nil
}

// TestCUDAFallback: a cuda model on a host without a usable GPU serves on CPU and says why.
func TestCUDAFallback(t *testing.T) {
	if hasGPU() {
		t.Skip("this host has a GPU; TestCUDA covers it")
	}
	tc := mlpCase()
	features, rows, nrows := loadInputs(t, tc.name)
	cfg := tc.cfg
	cfg.Device = "cuda:0"
	m, err := Load(modelPath(tc.name), cfg, features)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.HasPrefix(m.Device(), "cpu (cuda:0 requested: ") {
		t.Fatalf("Device() = %q", m.Device())
	}
	t.Log(m.Device())
	out := make([]float64, nrows)
	if err := m.PredictF64(rows, nrows, out, false); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "fallback", out, score(tc, reference(t, tc, features, rows, nrows), nrows), 1e-5)
}

// TestCUDA: on a GPU host, a cuda model runs on the GPU and agrees with ONNX Runtime on CPU
// within 1e-3.
func TestCUDA(t *testing.T) {
	if !hasGPU() {
		t.Skip("no NVIDIA GPU on this host")
	}
	for _, tc := range []testCase{mlpCase(), embCase()} {
		features, rows, nrows := loadInputs(t, tc.name)
		cfg := tc.cfg
		cfg.Device = "cuda"
		m, err := Load(modelPath(tc.name), cfg, features)
		if err != nil {
			t.Fatal(err)
		}
		if m.Device() != "cuda:0" {
			t.Fatalf("Device() = %q, want cuda:0", m.Device())
		}
		out := make([]float64, nrows)
		if err := m.PredictF64(rows, nrows, out, false); err != nil {
			t.Fatal(err)
		}
		checkClose(t, tc.name, out, score(tc, reference(t, tc, features, rows, nrows), nrows), 1e-3)
		m.Close()
	}
}

// TestLargeBatchParallelCopy: a batch big enough to be copied into the arena on several
// goroutines scores like ONNX Runtime, and a bad id deep in it is reported at its row.
func TestLargeBatchParallelCopy(t *testing.T) {
	tc := embCase()
	features, _, _ := loadInputs(t, "emb")
	const n = 3 * parallelFillValues / 6 // three chunks' worth of rows
	rows := randomEmbRows(n, 5)
	want := score(tc, reference(t, tc, features, rows, n), n)
	m := loadModel(t, tc, features, nil)
	if m.InputFloat32() {
		t.Fatal("a model with int64 ids must ask for float64 rows")
	}
	out := make([]float64, n)
	if err := m.PredictF64(rows, n, out, false); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "large batch", out, want, tolerance())
	rows[(n-5)*6+3] = 0.5
	err := m.PredictF64(rows, n, out, false)
	if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), fmt.Sprintf("row %d,", n-5)) {
		t.Fatalf("bad id at row %d: %v", n-5, err)
	}
}
