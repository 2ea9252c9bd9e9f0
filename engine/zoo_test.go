package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The XGBoost zoo (testdata/zoo, made by testdata/zoo/generate.py with XGBoost 1.7.4): a
// small model for every objective, booster and model option the library ships, each saved
// as JSON and as UBJSON, with XGBoost's own margins and predictions. Every model must
// load through LoadFile and reproduce both, bit for bit in float32, on every backend; a
// model predictd cannot score must be refused with ErrUnsupported and a message naming
// what it does not support (zooRefused).

// zooRefused maps a zoo model predictd refuses to a phrase its load error must contain.
var zooRefused = map[string]string{}

func zooDirs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("testdata", "zoo"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join("testdata", "zoo", e.Name(), "model.json")); err == nil {
				dirs = append(dirs, e.Name())
			}
		}
	}
	if len(dirs) < 30 {
		t.Fatalf("testdata/zoo holds %d models, want the whole zoo", len(dirs))
	}
	return dirs
}

func TestXGBoostZoo(t *testing.T) {
	for _, name := range zooDirs(t) {
		for _, file := range []string{"model.json", "model.ubj"} {
			t.Run(name+"/"+file, func(t *testing.T) {
				dir := filepath.Join("testdata", "zoo", name)
				checkZooModel(t, dir, file, zooRefused[name])
			})
		}
	}
}

// checkZooModel loads dir/file with every backend and compares its raw and transformed
// outputs for dir/input.csv with the expected files, or, when refused is not empty,
// checks that loading fails with ErrUnsupported and a message containing refused.
func checkZooModel(t *testing.T, dir, file, refused string) {
	t.Helper()
	path := filepath.Join(dir, file)
	rel := strings.TrimPrefix(filepath.ToSlash(dir), "testdata/") + "/"
	for _, b := range testBackends() {
		m, err := LoadFile(path, "", Options{Backend: b})
		if refused != "" {
			if err == nil {
				m.Close()
				t.Fatalf("%s loaded; want it refused (%q)", path, refused)
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), refused) {
				t.Fatalf("%s: error %q: want ErrUnsupported naming %q", path, err, refused)
			}
			continue
		}
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		if m.Semantics() != SemanticsXGBoost {
			t.Fatalf("%s loaded with %s semantics", path, m.Semantics())
		}
		// The names the model was trained with (params.json's DMatrix feature_names),
		// else XGBoost's f0, f1, ...
		var params struct {
			DMatrix struct {
				FeatureNames []string `json:"feature_names"`
			} `json:"dmatrix"`
		}
		if data, err := os.ReadFile(filepath.Join(dir, "params.json")); err == nil {
			if err := json.Unmarshal(data, &params); err != nil {
				t.Fatal(err)
			}
		}
		wantNames := params.DMatrix.FeatureNames
		if wantNames == nil {
			for i := 0; i < m.NumFeatures(); i++ {
				wantNames = append(wantNames, fmt.Sprintf("f%d", i))
			}
		}
		if !slices.Equal(m.FeatureNames(), wantNames) {
			t.Errorf("feature names %q, want %q", m.FeatureNames(), wantNames)
		}
		table := parseTable(t, readFixture(t, rel+"input.csv"), false)
		nrows := len(table)
		rows := flatten(table, m.NumFeatures(), t)
		rows32 := make([]float32, len(rows))
		for i, v := range rows {
			rows32[i] = float32(v)
		}
		for _, raw := range []bool{true, false} {
			exp := map[bool]string{true: "expected_raw.csv", false: "expected_transformed.csv"}[raw]
			want := parseTable(t, readFixture(t, rel+exp), false)
			if len(want) != nrows {
				t.Fatalf("%s has %d rows, input.csv %d", exp, len(want), nrows)
			}
			out := make([]float64, nrows*m.NumOutputs(true))
			what := fmt.Sprintf("%s/%s/%s", file, m.BackendName(), exp)
			if err := m.PredictF32(rows32, nrows, out, raw); err != nil {
				t.Fatalf("%s: PredictF32: %v", what, err)
			}
			checkOutputs(t, what+"/f32", out, want, m.NumOutputs(raw), xgbMargin)
			clear(out)
			if err := m.PredictF64(rows, nrows, out, raw); err != nil {
				t.Fatalf("%s: PredictF64: %v", what, err)
			}
			checkOutputs(t, what+"/f64", out, want, m.NumOutputs(raw), xgbMargin)
		}
		m.Close()
	}
}

// TestXGBoostZooFormats: XGBoost 2.x/3.x forms of the zoo's models, hand-edited by
// testdata/zoo/formats/make.py (testdata/README.md says why each is there): per-output
// base_score lists score as XGBoost scores the same margins; vector-leaf trees and
// objectives predictd does not implement are refused by name.
func TestXGBoostZooFormats(t *testing.T) {
	for name, refused := range map[string]string{
		"v31_base_score_list":       "",
		"v31_base_score_per_class":  "",
		"v31_base_score_per_target": "",
		"v20_quantile":              "",
		"v20_vector_leaf":           "tree_param.size_leaf_vector=3: unsupported model feature: vector-leaf trees",
		"v32_expectile":             `learner.objective.name "reg:expectileerror": unsupported model feature`,
		"v17_binary":                "unsupported model feature: XGBoost's binary model format",
	} {
		t.Run(name, func(t *testing.T) {
			file := "model.json"
			if name == "v17_binary" {
				file = "model.bin"
			}
			checkZooModel(t, filepath.Join("testdata", "zoo", "formats", name), file, refused)
		})
	}
}
