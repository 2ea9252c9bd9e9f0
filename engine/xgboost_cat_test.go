package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Tests of XGBoost's categorical splits and of the UBJSON model format, on the models in
// testdata/xgboost (see testdata/README.md): each saved by XGBoost as JSON and as UBJSON, with
// 200 rows of inputs and the library's outputs.

// sharedFixture reads rel from the full fixture set named by $PREDICTD_FIXTURES: extra
// coverage beyond the copies in testdata, which the other tests read. Without the
// variable the test is skipped; with it, a missing file fails.
func sharedFixture(tb testing.TB, rel string) []byte {
	tb.Helper()
	d := os.Getenv("PREDICTD_FIXTURES")
	if d == "" {
		tb.Skip("PREDICTD_FIXTURES unset: the testdata copies are checked by TestXGBoostUBJSONMatchesJSON")
	}
	data, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(rel)))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

var formatFixtures = []string{"gen_categorical", "gen_deep_d12"}

// TestXGBoostUBJSONMatchesJSON: the UBJSON and the JSON file of the same model parse to
// identical ensembles, and both are detected as XGBoost.
func TestXGBoostUBJSONMatchesJSON(t *testing.T) {
	for _, d := range formatFixtures {
		t.Run(d, func(t *testing.T) {
			js := readFixture(t, "xgboost/"+d+"/model.json")
			ub := readFixture(t, "xgboost/"+d+"/model.ubj")
			compareJSONUBJ(t, js, ub)
		})
	}
}

// TestXGBoostUBJSONSharedFixtures does the same for every model.ubj of the shared fixture
// set, when it is present.
func TestXGBoostUBJSONSharedFixtures(t *testing.T) {
	for _, d := range []string{"gen_binary_logistic", "gen_multiclass_softprob", "gen_categorical", "gen_deep_d12"} {
		t.Run(d, func(t *testing.T) {
			ub := sharedFixture(t, "xgboost/"+d+"/model.ubj")
			js := sharedFixture(t, "xgboost/"+d+"/model.json")
			compareJSONUBJ(t, js, ub)
		})
	}
}

func compareJSONUBJ(t *testing.T, js, ub []byte) {
	t.Helper()
	if !IsUBJSON(ub) || IsUBJSON(js) {
		t.Fatalf("IsUBJSON: ubj %v, json %v", IsUBJSON(ub), IsUBJSON(js))
	}
	for _, name := range []string{"model.ubj", "model.json"} {
		data := map[string][]byte{"model.ubj": ub, "model.json": js}[name]
		if f := DetectFormat(name, data); f != FormatXGBoost {
			t.Fatalf("DetectFormat(%s) = %s", name, f)
		}
	}
	ej, err := Parse(FormatXGBoost, js)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	eu, err := Parse(FormatXGBoost, ub)
	if err != nil {
		t.Fatalf("ubjson: %v", err)
	}
	if eu2, err := ParseXGBoostUBJSON(ub); err != nil || !reflect.DeepEqual(eu, eu2) {
		t.Fatalf("ParseXGBoostUBJSON differs from Parse: %v", err)
	}
	if !reflect.DeepEqual(ej, eu) {
		v1, v2 := reflect.ValueOf(*ej), reflect.ValueOf(*eu)
		for i := 0; i < v1.NumField(); i++ {
			if !reflect.DeepEqual(v1.Field(i).Interface(), v2.Field(i).Interface()) {
				t.Errorf("field %s differs", v1.Type().Field(i).Name)
			}
		}
		t.Fatal("the JSON and UBJSON models parse to different ensembles")
	}
	if ej.NumTrees() == 0 || len(ej.Feature) == 0 {
		t.Fatal("empty ensemble")
	}
}

// TestXGBoostFormatsFixtures scores the rows of each model (the first 300 and the 200
// boundary rows of the fixture set), read from JSON and from
// UBJSON, on every backend, float64 and float32 rows: margins bit-identical in float32,
// probabilities within 1e-6 (the fixture set's tolerances).
func TestXGBoostFormatsFixtures(t *testing.T) {
	for _, d := range formatFixtures {
		for _, file := range []string{"model.json", "model.ubj"} {
			t.Run(d+"/"+file, func(t *testing.T) {
				ens, err := Parse(FormatXGBoost, readFixture(t, "xgboost/"+d+"/"+file))
				if err != nil {
					t.Fatal(err)
				}
				if d == "gen_categorical" {
					ncat := 0
					for _, fl := range ens.Flags {
						if fl&FlagCategorical != 0 {
							ncat++
						}
					}
					if ncat != 3344 { // the fixture set's README
						t.Fatalf("%d categorical nodes, want 3344", ncat)
					}
				}
				rows := flatten(parseTable(t, readFixture(t, "xgboost/"+d+"/input.csv"), false), ens.NumFeatures, t)
				nrows := len(rows) / ens.NumFeatures
				rows32 := make([]float32, len(rows))
				for i, v := range rows {
					rows32[i] = float32(v)
				}
				wantRaw := parseTable(t, readFixture(t, "xgboost/"+d+"/expected_raw.csv"), false)
				wantTr := parseTable(t, readFixture(t, "xgboost/"+d+"/expected_transformed.csv"), false)
				if nrows < 200 || len(wantRaw) != nrows || len(wantTr) != nrows {
					t.Fatalf("%d rows, %d raw, %d transformed", nrows, len(wantRaw), len(wantTr))
				}
				for _, b := range testBackends() {
					for _, th := range []int{1, 3} {
						m, err := NewModel(ens, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
						if err != nil {
							t.Fatal(err)
						}
						out := make([]float64, nrows)
						for _, raw := range []bool{true, false} {
							want, tol := wantTr, xgbProb
							if raw {
								want, tol = wantRaw, xgbMargin
							}
							what := fmt.Sprintf("%s/threads=%d/raw=%v", m.BackendName(), th, raw)
							if err := m.PredictF64(rows, nrows, out, raw); err != nil {
								t.Fatal(err)
							}
							checkOutputs(t, what+"/f64", out, want, 1, tol)
							clear(out)
							if err := m.PredictF32(rows32, nrows, out, raw); err != nil {
								t.Fatal(err)
							}
							checkOutputs(t, what+"/f32", out, want, 1, tol)
						}
						m.Close()
					}
				}
			})
		}
	}
}

// xgbCatModel is a one-split model: feature 0 categorical with the categories cats going
// right to leaf 2 (value 2), everything else left to leaf 1 (value 1); NaN goes left when
// defaultLeft.
func xgbCatModel(cats string, defaultLeft bool) string {
	dl := "0"
	if defaultLeft {
		dl = "1"
	}
	n := len(strings.Split(cats, ","))
	return `{"learner":{"feature_names":[],"feature_types":["c","q"],"gradient_booster":{"name":"gbtree","model":{` +
		`"gbtree_model_param":{"num_trees":"1"},"tree_info":[0],"trees":[{"id":0,"tree_param":{"num_nodes":"3","size_leaf_vector":"0"},` +
		`"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[NaN,1,2],` +
		`"default_left":[` + dl + `,0,0],"split_type":[1,0,0],` +
		`"categories":[` + cats + `],"categories_nodes":[0],"categories_segments":[0],"categories_sizes":[` + fmt.Sprint(n) + `]}]}},` +
		`"learner_model_param":{"base_score":"0","num_class":"0","num_feature":"2"},"objective":{"name":"reg:squarederror"}},"version":[1,7,4]}`
}

// TestXGBoostCategoricalRule checks XGBoost's categorical decision (common::Decision in
// XGBoost's src/common/categorical.h, and the predictor's missing-value test before it)
// value by value: in the set → right; not in the set, negative, ≥ 2^24 or ±Inf → left;
// a fractional value is truncated; NaN takes default_left.
func TestXGBoostCategoricalRule(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		x     float64
		right bool
	}{
		{0, true}, {math.Copysign(0, -1), true}, {3, true}, {3.9, true}, {40, true}, {33, true},
		{1, false}, {2.9, false}, {4, false}, {39, false}, {41, false}, {63, false}, {64, false}, {1e6, false},
		{-0.5, false}, {-1, false}, {-3, false}, {-40, false},
		{1 << 24, false}, {1<<24 + 3, false}, {1e30, false}, {inf, false}, {-inf, false},
	}
	for _, dl := range []bool{true, false} {
		ens, err := Parse(FormatXGBoost, []byte(xgbCatModel("40,0,3,33", dl)))
		if err != nil {
			t.Fatal(err)
		}
		all := append(cases, struct {
			x     float64
			right bool
		}{math.NaN(), !dl})
		for _, b := range testBackends() {
			m, err := NewModel(ens, Options{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range all {
				want := 1.0
				if c.right {
					want = 2
				}
				out := make([]float64, 1)
				if err := m.PredictF64([]float64{c.x, 0}, 1, out, true); err != nil {
					t.Fatal(err)
				}
				if out[0] != want {
					t.Errorf("%s default_left=%v x=%v: leaf %v, want %v", m.BackendName(), dl, c.x, out[0], want)
				}
				if err := m.PredictF32([]float32{float32(c.x), 0}, 1, out, true); err != nil {
					t.Fatal(err)
				}
				if out[0] != want {
					t.Errorf("%s f32 default_left=%v x=%v: leaf %v, want %v", m.BackendName(), dl, c.x, out[0], want)
				}
			}
			m.Close()
		}
	}
}

// TestXGBoostCategoricalBadInput: malformed categorical arrays are refused with a message
// naming the field.
func TestXGBoostCategoricalBadInput(t *testing.T) {
	base := xgbCatModel("40,0,3,33", true)
	if _, err := Parse(FormatXGBoost, []byte(base)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"negative category", `"categories":[40,0,3,33]`, `"categories":[40,-1,3,33]`, "category -1: want 0..16777215"},
		{"huge category", `"categories":[40,0,3,33]`, `"categories":[40,16777216,3,33]`, "category 16777216"},
		{"segment out of range", `"categories_segments":[0]`, `"categories_segments":[2]`, "categories_segments=2 categories_sizes=4"},
		{"empty set", `"categories_sizes":[4]`, `"categories_sizes":[0]`, "categories_sizes=0"},
		{"lengths", `"categories_sizes":[4]`, `"categories_sizes":[4,1]`, "categories_nodes has 1 entries, categories_segments 1, categories_sizes 2"},
		{"node not categorical", `"split_type":[1,0,0]`, `"split_type":[0,0,0]`, "categories_nodes[0]=0 is not a categorical split"},
		{"categorical node unlisted", `"categories_nodes":[0]`, `"categories_nodes":[]`, "categories_nodes has 0 entries, categories_segments 1"},
		{"unlisted", `"categories_nodes":[0],"categories_segments":[0],"categories_sizes":[4]`, `"categories_nodes":[],"categories_segments":[],"categories_sizes":[]`, "node 0: split_type=1 (categorical) but categories_nodes does not list it"},
		{"leaf listed", `"categories_nodes":[0]`, `"categories_nodes":[2]`, "categories_nodes[0]=2 is not a categorical split"},
		{"split_type 2", `"split_type":[1,0,0]`, `"split_type":[2,0,0]`, "split_type=2"},
		{"NaN on a numerical node", `"split_type":[1,0,0],"categories":[40,0,3,33],"categories_nodes":[0],"categories_segments":[0],"categories_sizes":[4]`, `"split_type":[0,0,0]`, "node 0: split_conditions is NaN"},
	} {
		if !strings.Contains(base, c.old) {
			t.Fatalf("%s: %q not in the model", c.name, c.old)
		}
		_, err := Parse(FormatXGBoost, []byte(strings.Replace(base, c.old, c.new, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}
