package engine

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseXGBoostBadInput(t *testing.T) {
	base := string(readFixture(t, "xgboost/leaves_agaricus/model.json"))
	f := func(name, old, new, wantErr string) {
		t.Helper()
		src := new
		if old != "" {
			if !strings.Contains(base, old) {
				t.Fatalf("%s: %q not in the model", name, old)
			}
			src = strings.Replace(base, old, new, 1)
		}
		_, err := Parse(FormatXGBoost, []byte(src))
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s: error %q does not mention %q", name, err, wantErr)
		}
	}
	f("empty", "", "", "line 1, column 1: unexpected end of input, want an object")
	f("not json", "", "tree\nversion=v3\n", `line 1, column 1: unexpected 't', want an object`)
	f("truncated", "", base[:strings.LastIndex(base[:len(base)/2], ",")+1], "unexpected end of input")
	f("truncated in a string", "", base[:strings.Index(base, `"split_conditions"`)+5], "unterminated string")
	f("trailing data", "", base+"{}", "unexpected data after the model")
	f("bad literal", `"num_parallel_tree":"1"`, `"num_parallel_tree":tru`, `"tru" is not a JSON value`)
	f("deep nesting", `"attributes":{}`, `"attributes":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000), "nested deeper than 4096 levels")
	f("bad escape", `"name":"binary:logistic"`, `"name":"binary:\q"`, "bad string")
	f("NaN threshold", `"split_conditions":[-9.536743E-7,`, `"split_conditions":[NaN,`, "trees[0]: node 0: split_conditions is NaN")
	f("no learner", "", `{"version":[1,7,4]}`, `no "learner" object`)
	f("wrong type", `"num_class":"0","num_feature":"127"`, `"num_class":"0","num_feature":[127]`, "line 1, column")
	f("huge num_feature", `"num_class":"0","num_feature":"127"`, `"num_class":"0","num_feature":"99999999999"`, "num_feature=99999999999")
	f("zero num_feature", `"num_class":"0","num_feature":"127"`, `"num_class":"0","num_feature":"0"`, "num_feature=0")
	f("bad num_feature", `"num_class":"0","num_feature":"127"`, `"num_class":"0","num_feature":"lots"`, `num_feature="lots": want an integer`)
	f("huge num_class", `"num_class":"0"`, `"num_class":"100000000"`, "num_class=100000000")
	f("unknown objective", `"name":"binary:logistic"`, `"name":"binary:astrology"`, `learner.objective.name "binary:astrology": unsupported model feature: objective predictd does not know`)
	f("expectile", `"name":"binary:logistic"`, `"name":"reg:expectileerror"`, `"reg:expectileerror": unsupported model feature`)
	f("bad base_score", `"base_score":"5E-1"`, `"base_score":"half"`, `base_score "half": not a number`)
	f("base_score 0 for logistic", `"base_score":"5E-1"`, `"base_score":"0"`, "gives base margin")
	f("unknown booster", `"name":"gbtree"`, `"name":"gbforest"`, `gradient_booster.name "gbforest"`)
	f("tree_info short", `"tree_info":[0,0,0]`, `"tree_info":[0,0]`, "tree_info has 2 entries for 3 trees")
	f("tree_info out of range", `"tree_info":[0,0,0]`, `"tree_info":[0,5,0]`, "tree_info[1]=5 out of range")
	f("child out of range", `"left_children":[1,3,5,-1,-1,-1,-1]`, `"left_children":[1,3,50,-1,-1,-1,-1]`, "trees[0]: node 2: child 50 out of range (7 nodes)")
	f("cycle", `"left_children":[1,3,5,-1,-1,-1,-1]`, `"left_children":[1,0,5,-1,-1,-1,-1]`, "trees[0]: node 0 is reached twice")
	f("shared child", `"left_children":[1,3,5,-1,-1,-1,-1]`, `"left_children":[1,3,4,-1,-1,-1,-1]`, "node 4 is reached twice")
	f("lengths", `"right_children":[2,4,6,-1,-1,-1,-1]`, `"right_children":[2,4,6,-1,-1,-1]`, "right_children has 6 entries, left_children has 7")
	f("feature out of range", `"split_indices":[29,56,109,0,0,0,0]`, `"split_indices":[29,56,1090,0,0,0,0]`, "node 2: split_indices=1090 out of range (num_feature=127)")
	f("negative feature", `"split_indices":[29,56,109,0,0,0,0]`, `"split_indices":[-29,56,109,0,0,0,0]`, "node 0: split_indices=-29 out of range")
	f("categorical", `"split_type":[0,0,0,0,0,0,0]`, `"split_type":[0,1,0,0,0,0,0]`, "node 1: split_type=1 (categorical) but categories_nodes does not list it")
	f("vector leaf", `"size_leaf_vector":"0"}},{`, `"size_leaf_vector":"3"}},{`, "size_leaf_vector=3: unsupported model feature")
	f("default_left junk", `"default_left":[1,1,1,0,0,0,0]`, `"default_left":[1,1,1,0,0,0,7]`, `"7": want 0, 1, true or false`)
	f("num_nodes", `"num_nodes":"7"`, `"num_nodes":"9"`, "num_nodes=9 but left_children has 7 entries")
	f("no trees nodes", `"left_children":[1,3,5,-1,-1,-1,-1]`, `"left_children":[]`, "trees[0]: no nodes")
	f("feature names", `"feature_names":[]`, `"feature_names":["a","b"]`, "feature_names has 2 names, num_feature is 127")
	f("feature types count", `"feature_types":[]`, `"feature_types":["c"]`, "feature_types has 1 entries, num_feature is 127")
	f("leaf with right child", `"right_children":[2,4,6,-1,-1,-1,-1]`, `"right_children":[2,4,6,-1,3,-1,-1]`, "node 4: left child -1 but right child 3")
	f("huge float leaf", `"split_conditions":[-9.536743E-7,-9.536743E-7,-9.536743E-7,1.7121772E0`, `"split_conditions":[-9.536743E-7,-9.536743E-7,-9.536743E-7,1E300`, `"1E300" is not a float32`)

	lin := string(readFixture(t, "xgboost/leaves_gblinear_agaricus/model.json"))
	if _, err := Parse(FormatXGBoost, []byte(strings.Replace(lin, `"weights":[`, `"weights":[1,`, 1))); err == nil || !strings.Contains(err.Error(), "gblinear weights has 129 entries, want (num_feature+1)×outputs = 128") {
		t.Fatalf("gblinear length: %v", err)
	}
}

// TestXGBoostDart scores a dart model (the agaricus trees with weight_drop added) against
// an independent walk of the JSON node arrays: margin = base + Σ float32(leaf × weight).
func TestXGBoostDart(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(readFixture(t, "xgboost/leaves_agaricus/model.json"), &doc); err != nil {
		t.Fatal(err)
	}
	learner := doc["learner"].(map[string]any)
	gb := learner["gradient_booster"].(map[string]any)
	weights := []float32{0.5, 1.25, 0.3}
	learner["gradient_booster"] = map[string]any{"name": "dart", "gbtree": gb, "weight_drop": weights}
	data, _ := json.Marshal(doc)
	ens, err := Parse(FormatXGBoost, data)
	if err != nil {
		t.Fatal(err)
	}
	var m xgbModel
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	trees := m.Learner.Booster.GBTree.Model.Trees
	rows := parseLibSVM(t, readFixture(t, "xgboost/leaves_agaricus/input.libsvm"), ens.NumFeatures)
	for _, b := range testBackends() {
		for _, th := range testThreads {
			mod, err := NewModel(ens, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float64, len(rows))
			if err := mod.PredictF64(flatten(rows, ens.NumFeatures, t), len(rows), out, true); err != nil {
				t.Fatal(err)
			}
			for r, row := range rows {
				want := float32(0) // base_score 0.5 → logit 0
				for i := range trees {
					want += float32(xgbRefLeaf(&trees[i], row) * weights[i])
				}
				if float32(out[r]) != want {
					t.Fatalf("%s threads=%d row %d: got %v, want %v", b, th, r, out[r], want)
				}
			}
		}
	}
}

// xgbRefLeaf walks XGBoost's own node arrays (ids as in the file) for one row.
func xgbRefLeaf(tr *xgbTree, row []float64) float32 {
	n := 0
	for tr.Left[n] != -1 {
		x := float32(row[tr.SplitIndex[n]])
		switch {
		case math.IsNaN(float64(x)):
			if tr.DefaultLeft[n] {
				n = int(tr.Left[n])
			} else {
				n = int(tr.Right[n])
			}
		case x < tr.SplitCond[n]:
			n = int(tr.Left[n])
		default:
			n = int(tr.Right[n])
		}
	}
	return tr.SplitCond[n]
}

// TestXGBoostRenumbering checks the node renumbering of every tree of a real model
// against a walk of the file's own node ids, on random rows with NaN.
func TestXGBoostRenumbering(t *testing.T) {
	data := readFixture(t, "xgboost/gen_multiclass_softprob/model.json")
	ens, err := Parse(FormatXGBoost, data)
	if err != nil {
		t.Fatal(err)
	}
	var m xgbModel
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	sc, _ := newGoScorer(ens)
	gs := sc.(*goScorer)
	rows := randomRows(rand.New(rand.NewPCG(3, 4)), ens, 200)
	nf := ens.NumFeatures
	for r := 0; r < 200; r++ {
		row := rows[r*nf : (r+1)*nf]
		for i := range m.Learner.Booster.Model.Trees {
			got := ens.LeafValue[ens.LeafStart[i]+gs.leafIndex(row, i, ens.LeafStart[i])]
			want := xgbRefLeaf(&m.Learner.Booster.Model.Trees[i], row)
			if float32(got) != want {
				t.Fatalf("row %d tree %d: leaf value %v, want %v", r, i, got, want)
			}
		}
	}
}

func TestXGBoostBaseScore(t *testing.T) {
	f := func(s string, nout int, want []float32, wantErr string) {
		t.Helper()
		got, err := xgbBaseScore(s, nout)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%q: error %v, want %q", s, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%q: got %v, want %v", s, got, want)
			}
		}
	}
	f("5E-1", 1, []float32{0.5}, "")
	f("3.0405E-1", 1, []float32{0.30405}, "")
	f("[3.0405E-1]", 2, []float32{0.30405, 0.30405}, "")
	f("[1E-1,2E-1]", 2, []float32{0.1, 0.2}, "")
	f("[1E-1,2E-1]", 3, nil, "has 2 values for 3 outputs")
	f("", 1, nil, "missing")
	// binary:logistic base margin: -log(1/p - 1) in float32.
	if got := xgbLogit(0.5); got != 0 {
		t.Fatalf("logit(0.5) = %v", got)
	}
}

func TestParseXGBoostObjectives(t *testing.T) {
	base := string(readFixture(t, "xgboost/leaves_agaricus/model.json"))
	for _, tc := range []struct {
		obj       string
		transform TransformKind
		baseScore float64
	}{
		{"binary:logistic", TransformSigmoid, 0},
		{"reg:logistic", TransformSigmoid, 0},
		{"binary:logitraw", TransformIdentity, 0.5}, // its ProbToMargin is the identity
		{"binary:hinge", TransformHinge, 0.5},
		{"rank:map", TransformIdentity, 0.5},
		{"reg:quantileerror", TransformIdentity, 0.5},
		{"survival:cox", TransformExp, float64(float32(math.Log(0.5)))},
		{"survival:aft", TransformExp, float64(float32(math.Log(0.5)))},
		{"reg:squarederror", TransformIdentity, 0.5},
		{"reg:linear", TransformIdentity, 0.5},
		{"rank:pairwise", TransformIdentity, 0.5},
		{"rank:ndcg", TransformIdentity, 0.5},
		{"reg:pseudohubererror", TransformIdentity, 0.5},
		{"reg:absoluteerror", TransformIdentity, 0.5},
		{"count:poisson", TransformExp, float64(float32(math.Log(0.5)))},
		{"reg:gamma", TransformExp, float64(float32(math.Log(0.5)))},
		{"reg:tweedie", TransformExp, float64(float32(math.Log(0.5)))},
	} {
		ens, err := Parse(FormatXGBoost, []byte(strings.Replace(base, `"name":"binary:logistic"`, `"name":"`+tc.obj+`"`, 1)))
		if err != nil {
			t.Fatalf("%s: %v", tc.obj, err)
		}
		if ens.Objective.Transform != tc.transform || ens.BaseScore[0] != tc.baseScore {
			t.Fatalf("%s: transform %d base %v, want %d %v", tc.obj, ens.Objective.Transform, ens.BaseScore[0], tc.transform, tc.baseScore)
		}
	}
}

func TestParseXGBoostBoolDefaultLeft(t *testing.T) {
	// XGBoost 2.x may write default_left as booleans.
	base := string(readFixture(t, "xgboost/leaves_agaricus/model.json"))
	a, err := Parse(FormatXGBoost, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(FormatXGBoost, []byte(strings.Replace(base, `"default_left":[1,1,1,0,0,0,0]`, `"default_left":[true,true,true,false,false,false,false]`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Flags {
		if a.Flags[i] != b.Flags[i] {
			t.Fatalf("node %d: flags %#x vs %#x", i, a.Flags[i], b.Flags[i])
		}
	}
	if errors.Is(err, ErrUnsupported) {
		t.Fatal("unexpected")
	}
}
