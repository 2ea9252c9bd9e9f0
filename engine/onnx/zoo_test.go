package onnx

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The zoo (testdata/zoo, written by scripts/gen_onnx_zoo.py) holds tiny models shaped like
// what common exporters write, with the outputs numpy computes for them from their weights.
// Every model that can be served must reproduce those outputs; the others must fail to load
// with a message that says what to do.

type zooFile struct {
	Features []string    `json:"features"`
	Rows     [][]float64 `json:"rows"`
	Models   map[string]struct {
		Outputs map[string][]float64 `json:"outputs"`
	} `json:"models"`
}

func loadZoo(t testing.TB) (zooFile, []float64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "zoo", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var z zooFile
	if err := json.Unmarshal(data, &z); err != nil {
		t.Fatal(err)
	}
	var rows []float64
	for _, r := range z.Rows {
		rows = append(rows, r...)
	}
	return z, rows
}

func zooPath(name string) string { return filepath.Join("testdata", "zoo", name+".onnx") }

func in1(name string, features ...string) []InputConfig {
	return []InputConfig{{Name: name, Features: features}}
}

var xyz = []string{"f0", "f1", "f2"}

// zooCase is one model served with one config: scored (wantErr empty) or refused.
type zooCase struct {
	name    string // subtest name
	model   string
	cfg     Config
	wantErr string // substring of Load's error; empty: the model must load
	// predictErr: the model loads, and Predict fails with this (a check that needs a run).
	predictErr string
	tol        float64 // relative tolerance against numpy; default 1e-5
	f64Only    bool    // the model must ask for float64 rows (InputFloat32 false)
}

func zooCases() []zooCase {
	out := func(name string) OutputConfig { return OutputConfig{Name: name} }
	outIdx := func(name string, i int) OutputConfig { return OutputConfig{Name: name, Index: intp(i)} }
	return []zooCase{
		// Fixed batch sizes (torch.onnx.export without dynamic_axes): run in chunks.
		{name: "batch1", model: "batch1", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "batch16", model: "batch16", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "batch16/batching-too-big", model: "batch16", cfg: Config{Inputs: in1("x", xyz...), Batching: &BatchingConfig{MaxBatch: 32}},
			wantErr: "batching.max_batch 32, but the model has a fixed batch size of 16; set max_batch to at most 16"},
		{name: "batch16/batching", model: "batch16", cfg: Config{Inputs: in1("x", xyz...), Batching: &BatchingConfig{}}},
		{name: "batch1/batching", model: "batch1", cfg: Config{Inputs: in1("x", xyz...), Batching: &BatchingConfig{}}},
		// Opsets and IR versions: opset 13 / IR 7, opset 17 (the newest onnx 1.12 writes) / IR 8.
		{name: "opset13", model: "opset13", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "out_rank1", model: "out_rank1", cfg: Config{Inputs: in1("x", xyz...)}},
		// Input element types.
		{name: "double", model: "double", cfg: Config{Inputs: in1("x", xyz...)}, tol: 1e-12, f64Only: true},
		{name: "double/dtype", model: "double", cfg: Config{Inputs: []InputConfig{{Name: "x", DType: "float64", Features: xyz}}}, tol: 1e-12, f64Only: true},
		{name: "double/onnx-name", model: "double", cfg: Config{Inputs: []InputConfig{{Name: "x", DType: "double", Features: xyz}}}, tol: 1e-12, f64Only: true},
		{name: "double/wrong-dtype", model: "double", cfg: Config{Inputs: []InputConfig{{Name: "x", DType: "float32", Features: xyz}}},
			wantErr: `onnx.inputs "x" has dtype float32, but the model's input is float64`},
		{name: "float16", model: "float16", cfg: Config{Inputs: in1("x", xyz...)}},
		// A float16 output [N,2,1]: both values per row, or one.
		{name: "float16_out/all", model: "float16_out", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "float16_out/1", model: "float16_out", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("y", 1)}},
		{name: "int32", model: "int32", cfg: Config{Inputs: in1("x", "i0", "i1")}, f64Only: true},
		{name: "int64", model: "int64", cfg: Config{Inputs: in1("x", "i0", "i1")}, f64Only: true},
		{name: "bool", model: "bool", cfg: Config{Inputs: in1("x", "b0", "b1")}},
		// One input per feature, named like the features: mapped by name without onnx.inputs.
		{name: "per_feature/by-name", model: "per_feature", f64Only: true},
		{name: "per_feature/explicit", model: "per_feature", f64Only: true, cfg: Config{Inputs: []InputConfig{
			{Name: "b0", Features: []string{"b0"}}, {Name: "i0", Features: []string{"i0"}},
			{Name: "f1", DType: "float64", Features: []string{"f1"}}, {Name: "f0", Features: []string{"f0"}}}}},
		{name: "per_feature/two-features-for-[N]", model: "per_feature", cfg: Config{Inputs: []InputConfig{
			{Name: "b0", Features: []string{"b0", "b1"}}, {Name: "i0", Features: []string{"i0"}},
			{Name: "f1", Features: []string{"f1"}}, {Name: "f0", Features: []string{"f0"}}}},
			wantErr: `input "b0" has shape [-1] (one value per row), but onnx.inputs maps 2 features to it`},
		// Classifiers: label int64 [N] and probabilities float [N,K].
		{name: "linear_clf_softmax/p1", model: "linear_clf_softmax", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("probabilities", 1)}},
		{name: "linear_clf_softmax/all", model: "linear_clf_softmax", cfg: Config{Inputs: in1("x", xyz...), Output: out("probabilities")}},
		{name: "linear_clf_softmax/label", model: "linear_clf_softmax", cfg: Config{Inputs: in1("x", xyz...), Output: out("label")}},
		{name: "linear_clf_softmax/no-output", model: "linear_clf_softmax", cfg: Config{Inputs: in1("x", xyz...)},
			wantErr: "the model has 2 outputs (label int64 [-1], probabilities float32 [-1 3]); choose the score with onnx.output.name"},
		{name: "linear_clf_logistic", model: "linear_clf_logistic", cfg: Config{Inputs: in1("x", xyz...), Output: out("probabilities")}},
		{name: "linear_clf_none", model: "linear_clf_none", cfg: Config{Inputs: in1("x", xyz...), Output: out("probabilities")}},
		{name: "linear_reg", model: "linear_reg", cfg: Config{Inputs: in1("x", xyz...)}},
		// skl2onnx's ZipMap: one class's probability by its position among the classes.
		{name: "zipmap/p2", model: "zipmap", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("output_probability", 2)}},
		{name: "zipmap/no-index", model: "zipmap", cfg: Config{Inputs: in1("x", xyz...), Output: out("output_probability")},
			wantErr: "zipmap=False"},
		{name: "zipmap/label", model: "zipmap", cfg: Config{Inputs: in1("x", xyz...), Output: out("label")}},
		// ZipMap over string labels: the position among the sorted labels (a, b, c).
		{name: "zipmap_str/p0", model: "zipmap_str", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("output_probability", 0)}},
		{name: "zipmap_str/p2", model: "zipmap_str", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("output_probability", 2)}},
		{name: "zipmap/index-past-classes", model: "zipmap", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("output_probability", 3)},
			predictErr: "onnx.output.index 3, but the map of row 0 has 3 classes"},
		// A width declared open that ONNX Runtime's shape inference fixes: served whole.
		{name: "open_width/all", model: "open_width", cfg: Config{Inputs: in1("x", xyz...), Output: out("probabilities")}},
		// A width nothing fixes before the run: one column by index, checked at run time.
		{name: "if_width/p1", model: "if_width", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("scores", 1)}},
		{name: "if_width/all", model: "if_width", cfg: Config{Inputs: in1("x", xyz...)},
			wantErr: "its values per row are not fixed in the graph; set onnx.output.index"},
		{name: "if_width/index-past-width", model: "if_width", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("scores", 5)},
			predictErr: "onnx.output.index 5, but the output has 3 values per row"},
		// String labels: refused with the numeric outputs named; the probabilities serve.
		{name: "string_label/label", model: "string_label", cfg: Config{Inputs: in1("x", xyz...), Output: out("label")},
			wantErr: `output "label" holds strings; pick a numeric output: probabilities`},
		{name: "string_label/probabilities", model: "string_label", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("probabilities", 0)}},
		// Tree ensembles as onnxmltools writes them (ai.onnx.ml opsets 1 and 3).
		{name: "tree_reg", model: "tree_reg", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "tree_reg_ml1", model: "tree_reg_ml1", cfg: Config{Inputs: in1("x", xyz...)}},
		{name: "tree_binary/p1", model: "tree_binary", cfg: Config{Inputs: in1("x", xyz...), Output: outIdx("probabilities", 1)}},
		{name: "tree_binary/label", model: "tree_binary", cfg: Config{Inputs: in1("x", xyz...), Output: out("label")}},
		{name: "tree_multi", model: "tree_multi", cfg: Config{Inputs: in1("x", xyz...), Output: out("probabilities")}},
		// Broken files.
		{name: "truncated", model: "truncated", cfg: Config{Inputs: in1("x", xyz...)}, wantErr: "is not a loadable ONNX model"},
		{name: "external_data", model: "external_data", cfg: Config{Inputs: in1("x", xyz...)},
			wantErr: `keeps tensor w in an external data file (weights.bin), which predictd does not read`},
	}
}

// want returns the numpy outputs for c, narrowed to the configured column.
func (c zooCase) want(t *testing.T, z zooFile) []float64 {
	t.Helper()
	outs := z.Models[c.model].Outputs
	name := c.cfg.Output.Name
	if name == "" {
		if len(outs) != 1 {
			t.Fatalf("%s: expected.json has %d outputs; name one", c.model, len(outs))
		}
		for k := range outs {
			name = k
		}
	}
	all, ok := outs[name]
	if !ok {
		t.Fatalf("%s: no expected values for output %q", c.model, name)
	}
	if c.cfg.Output.Index == nil {
		return all
	}
	w := len(all) / len(z.Rows)
	var col []float64
	for r := range z.Rows {
		col = append(col, all[r*w+*c.cfg.Output.Index])
	}
	return col
}

func TestZoo(t *testing.T) {
	z, rows := loadZoo(t)
	nrows, f := len(z.Rows), len(z.Features)
	rows32 := make([]float32, len(rows))
	for i, v := range rows {
		rows32[i] = float32(v)
	}
	for _, c := range zooCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Device = testDevice
			m, err := Load(zooPath(c.model), cfg, z.Features)
			if c.wantErr != "" {
				if err == nil {
					m.Close()
					t.Fatalf("Load succeeded; want an error containing %q", c.wantErr)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Load error %q; want it to contain %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.InputFloat32() == c.f64Only {
				t.Fatalf("InputFloat32 = %v, want %v", m.InputFloat32(), !c.f64Only)
			}
			if c.predictErr != "" {
				err := m.PredictF64(rows, nrows, make([]float64, nrows*m.NumOutputs(false)), false)
				if err == nil || !strings.Contains(err.Error(), c.predictErr) {
					t.Fatalf("Predict error %v; want one containing %q", err, c.predictErr)
				}
				return
			}
			want := c.want(t, z)
			tol := c.tol
			if tol == 0 || testDevice != "" && testDevice != "cpu" {
				tol = max(tol, tolerance())
			}
			w := len(want) / nrows
			if m.NumOutputs(false) != w {
				t.Fatalf("NumOutputs = %d, want %d", m.NumOutputs(false), w)
			}
			out := make([]float64, len(want))
			if err := m.PredictF64(rows, nrows, out, false); err != nil {
				t.Fatal(err)
			}
			checkClose(t, "PredictF64", out, want, tol)
			if !c.f64Only {
				clear(out)
				if err := m.PredictF32(rows32, nrows, out, false); err != nil {
					t.Fatal(err)
				}
				checkClose(t, "PredictF32", out, want, tol)
			}
			// Calls of other sizes: one row, and a few.
			for _, n := range []int{1, 5} {
				got := make([]float64, n*w)
				if err := m.PredictF64(rows[f:(1+n)*f], n, got, false); err != nil {
					t.Fatal(err)
				}
				checkClose(t, fmt.Sprintf("%d rows", n), got, want[w:(1+n)*w], tol)
			}
		})
	}
}

// TestZooBadValues: values a typed input cannot take are ErrInvalidInput, naming the row
// and the feature; a valid call afterwards still scores.
func TestZooBadValues(t *testing.T) {
	z, rows := loadZoo(t)
	f := len(z.Features)
	for _, c := range []struct {
		model, feature string
		inputs         []InputConfig
		bad            float64
		msg            string
	}{
		{"bool", "b0", in1("x", "b0", "b1"), 0.5, "takes 0 or 1"},
		{"bool", "b1", in1("x", "b0", "b1"), 2, "takes 0 or 1"},
		{"int32", "i1", in1("x", "i0", "i1"), 1.5, "is not an integer"},
		{"int32", "i0", in1("x", "i0", "i1"), 1 << 40, "out of the int32 range"},
		{"int64", "i0", in1("x", "i0", "i1"), math.NaN(), "is not an integer"},
		{"batch16", "f0", in1("x", xyz...), 0, ""}, // sanity: the same path succeeds
	} {
		t.Run(c.model+"/"+c.feature, func(t *testing.T) {
			m, err := Load(zooPath(c.model), Config{Inputs: c.inputs, Device: testDevice}, z.Features)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			bad := append([]float64(nil), rows[:3*f]...)
			col := -1
			for i, name := range z.Features {
				if name == c.feature {
					col = i
				}
			}
			bad[2*f+col] = c.bad
			out := make([]float64, 3*m.NumOutputs(false))
			err = m.PredictF64(bad, 3, out, false)
			if c.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "row 2") ||
				!strings.Contains(err.Error(), fmt.Sprintf("%q", c.feature)) {
				t.Fatalf("error %v; want ErrInvalidInput for row 2, feature %q: %s", err, c.feature, c.msg)
			}
			if err := m.PredictF64(rows[:3*f], 3, out, false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestZooBatching: with dynamic batching, concurrent calls on models with typed inputs, a
// ZipMap output and an output read after the run get their own rows' scores.
func TestZooBatching(t *testing.T) {
	z, rows := loadZoo(t)
	nrows, f := len(z.Rows), len(z.Features)
	byName := map[string]zooCase{}
	for _, c := range zooCases() {
		byName[c.name] = c
	}
	for _, name := range []string{"batch16/batching", "zipmap/p2", "zipmap_str/p0", "if_width/p1", "per_feature/by-name", "float16", "bool", "tree_multi"} {
		c := byName[name]
		t.Run(name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Device = testDevice
			cfg.Batching = &BatchingConfig{MaxBatch: 8, MaxQueueDelayUs: 200} // below batch16's fixed 16
			m, err := Load(zooPath(c.model), cfg, z.Features)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			want := c.want(t, z)
			w := len(want) / nrows
			errs := make(chan error, nrows)
			for lo := 0; lo < nrows; lo += 3 {
				n := min(3, nrows-lo)
				go func() {
					got := make([]float64, n*w)
					if err := m.PredictF64(rows[lo*f:(lo+n)*f], n, got, false); err != nil {
						errs <- err
						return
					}
					for i := range got {
						if d := math.Abs(got[i] - want[lo*w+i]); !(d <= tolerance()*math.Max(1, math.Abs(want[lo*w+i]))) {
							errs <- fmt.Errorf("rows %d+%d value %d = %v, want %v", lo, n, i, got[i], want[lo*w+i])
							return
						}
					}
					errs <- nil
				}()
			}
			for lo := 0; lo < nrows; lo += 3 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if st := m.BatchStats(); st.Requests == 0 {
				t.Fatalf("no call went through the batcher: %+v", st)
			}
		})
	}
}
