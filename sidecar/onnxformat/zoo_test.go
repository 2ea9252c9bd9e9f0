package onnxformat

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestZooOverHTTP serves exporter-shaped models of engine/onnx/testdata/zoo (written by
// scripts/gen_onnx_zoo.py) through /v1/predict over real HTTP: a fixed batch size of 1
// (scored in chunks), a float64 input (float64 rows), one input per feature of mixed
// types mapped by name, a LightGBM-style tree classifier's probability column and a
// ZipMap class probability. Scores must equal the numpy outputs in zoo/expected.json.
func TestZooOverHTTP(t *testing.T) {
	var zoo struct {
		Features []string    `json:"features"`
		Rows     [][]float64 `json:"rows"`
		Models   map[string]struct {
			Outputs map[string][]float64 `json:"outputs"`
		} `json:"models"`
	}
	b, err := os.ReadFile(filepath.Join(testdata, "zoo", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &zoo); err != nil {
		t.Fatal(err)
	}
	dev, _, _ := testDevice()
	cases := []struct {
		model, onnx, output string
		index               int // -1: the output has one value per row
	}{
		{"batch1", "inputs: [{name: x, features: [f0, f1, f2]}]", "y", -1},
		{"double", "inputs: [{name: x, dtype: float64, features: [f0, f1, f2]}]", "y", -1},
		{"per_feature", "{}", "y", -1},
		{"tree_binary", "inputs: [{name: x, features: [f0, f1, f2]}]\n  output: {name: probabilities, index: 1}", "probabilities", 1},
		{"zipmap", "inputs: [{name: x, features: [f0, f1, f2]}]\n  output: {name: output_probability, index: 2}", "output_probability", 2},
	}
	root := t.TempDir()
	for _, c := range cases {
		dir := filepath.Join(root, c.model, "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(testdata, "zoo", c.model+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		manifest := fmt.Sprintf("format: onnx\nfile: model.onnx\nfeatures: [%s]\nonnx:\n  device: %s\n  %s\n",
			strings.Join(zoo.Features, ", "), dev, c.onnx)
		if c.onnx == "{}" {
			manifest = fmt.Sprintf("format: onnx\nfile: model.onnx\nfeatures: [%s]\nonnx: {device: %s}\n", strings.Join(zoo.Features, ", "), dev)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := serve(t, root)
	_, _, tol := testDevice()
	tol = max(tol, 1e-5)
	for _, c := range cases {
		all := zoo.Models[c.model].Outputs[c.output]
		w := len(all) / len(zoo.Rows)
		status, body := post(t, url, rowsBody(c.model, zoo.Rows))
		if status != 200 {
			t.Fatalf("%s: %d %s", c.model, status, body)
		}
		var r struct {
			Predictions []struct {
				Score float64 `json:"score"`
			} `json:"predictions"`
		}
		if err := json.Unmarshal(body, &r); err != nil || len(r.Predictions) != len(zoo.Rows) {
			t.Fatalf("%s: %v %s", c.model, err, body)
		}
		for i, p := range r.Predictions {
			want := all[i*w+max(c.index, 0)]
			if math.Abs(p.Score-want) > tol*max(1, math.Abs(want)) {
				t.Fatalf("%s row %d: %v, numpy says %v", c.model, i, p.Score, want)
			}
		}
	}
	// A bool input given 0.5 is the client's error.
	rows := [][]float64{append([]float64(nil), zoo.Rows[0]...)}
	rows[0][5] = 0.5 // b0
	if status, body := post(t, url, rowsBody("per_feature", rows)); status != 400 || !strings.Contains(string(body), `"bad_input"`) {
		t.Errorf("b0 = 0.5: %d %s", status, body)
	}
}
