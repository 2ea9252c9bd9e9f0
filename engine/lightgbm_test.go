package engine

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// tinyLGB is lleaves_tiniest_single_tree with one more tree, trimmed to what the parser
// reads; the bad-input table mutates it one field at a time.
const tinyLGB = `tree
version=v3
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=2
objective=regression
feature_names=a b c
tree_sizes=479 100

Tree=0
num_leaves=4
num_cat=0
split_feature=1 2 2
threshold=0.73144941452196321 0.90708366268745222 0.85551601478390116
decision_type=2 2 2
left_child=1 -1 -2
right_child=2 -3 -4
leaf_value=0.49510661266514339 0.50645382200299838 0.50688948369558862 0.49040602357823876
is_linear=0
shrinkage=1

Tree=1
num_leaves=1
num_cat=0
leaf_value=0.25
is_linear=0
shrinkage=1


end of trees

pandas_categorical:null
`

func TestParseLightGBMTiny(t *testing.T) {
	ens, err := Parse(FormatLightGBM, []byte(tinyLGB))
	if err != nil {
		t.Fatal(err)
	}
	if ens.NumFeatures != 3 || ens.NumTrees() != 2 || ens.NumOutputs != 1 {
		t.Fatalf("features %d trees %d outputs %d", ens.NumFeatures, ens.NumTrees(), ens.NumOutputs)
	}
	if got := strings.Join(ens.FeatureNames, ","); got != "a,b,c" {
		t.Fatalf("feature names %q", got)
	}
	m, err := NewModel(ens, Options{Backend: BackendGo})
	if err != nil {
		t.Fatal(err)
	}
	// Walk by hand: feature 1 <= 0.7314 → node 1; feature 2 <= 0.9070 → leaf 0.
	f := func(row []float64, want float64) {
		t.Helper()
		out := make([]float64, 1)
		if err := m.PredictF64(row, 1, out, true); err != nil {
			t.Fatal(err)
		}
		if out[0] != want {
			t.Fatalf("row %v: got %.17g, want %.17g", row, out[0], want)
		}
	}
	f([]float64{0, 0.5, 0.5}, add(0.49510661266514339, 0.25))
	f([]float64{0, 0.5, 0.95}, add(0.50688948369558862, 0.25))
	f([]float64{0, 0.73144941452196321, 0.90708366268745222}, add(0.49510661266514339, 0.25)) // <= on the threshold goes left
	f([]float64{0, 0.9, 0.85551601478390116}, add(0.50645382200299838, 0.25))
	f([]float64{0, 0.9, 0.86}, add(0.49040602357823876, 0.25))
	f([]float64{0, math.NaN(), math.NaN()}, add(0.49510661266514339, 0.25)) // missing type None: NaN → 0.0
}

func TestParseLightGBMBadInput(t *testing.T) {
	f := func(name, old, new, wantErr string) {
		t.Helper()
		src := tinyLGB
		if old != "" {
			if !strings.Contains(src, old) {
				t.Fatalf("%s: %q not in the model", name, old)
			}
			src = strings.Replace(src, old, new, 1)
		} else {
			src = new
		}
		_, err := Parse(FormatLightGBM, []byte(src))
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s: error %q does not mention %q", name, err, wantErr)
		}
	}
	f("empty", "", "", "empty model file")
	f("not a model", "", "hello\nworld\n", `line 1: want "tree"`)
	f("truncated header", "", "tree\nversion=v3\n", "header has no max_feature_idx")
	f("truncated mid-tree", "", tinyLGB[:strings.Index(tinyLGB, "left_child")], "tree 0: missing leaf_value")
	f("truncated list", "leaf_value=0.49510661266514339 0.50645382200299838 0.50688948369558862 0.49040602357823876",
		"leaf_value=0.49510661266514339 0.50645382200299838", "line 19: tree 0: leaf_value has 2 values, want 4")
	f("bad version", "version=v3", "version=v9", "line 2: version=v9")
	f("huge max_feature_idx", "max_feature_idx=2", "max_feature_idx=99999999999", "max_feature_idx=99999999999")
	f("negative max_feature_idx", "max_feature_idx=2", "max_feature_idx=-5", "max_feature_idx=-5")
	f("feature names count", "feature_names=a b c", "feature_names=a b", "feature_names has 2 names")
	f("huge num_class", "num_class=1", "num_class=1000000000", "num_class=1000000000")
	f("huge num_leaves", "num_leaves=4", "num_leaves=2000000000", "leaf_value has 4 values, want 2000000000")
	f("zero num_leaves", "num_leaves=4", "num_leaves=0", "num_leaves=0")
	f("unknown objective", "objective=regression", "objective=astrology", `objective "astrology": unsupported model feature`)
	f("linear tree", "is_linear=0\nshrinkage=1\n\nTree=1", "is_linear=1\nshrinkage=1\n\nTree=1", "line 20: tree 0: is_linear=1: unsupported model feature")
	f("left child out of range", "left_child=1 -1 -2", "left_child=1 -1 99", "line 17: tree 0: left_child[2]=99 out of range (num_leaves=4)")
	f("leaf child out of range", "right_child=2 -3 -4", "right_child=2 -3 -9", "right_child[2]=-9 out of range (num_leaves=4)")
	f("cycle", "left_child=1 -1 -2", "left_child=1 0 -2", "reached twice")
	f("shared leaf", "right_child=2 -3 -4", "right_child=2 -3 -3", "reached twice")
	f("self loop", "left_child=1 -1 -2", "left_child=0 -1 -2", "reached twice")
	f("feature out of range", "split_feature=1 2 2", "split_feature=1 2 7", "split_feature[2]=7 out of range (max_feature_idx=2)")
	f("NaN threshold", "threshold=0.73144941452196321", "threshold=nan", "threshold[0] is NaN")
	f("bad number", "threshold=0.73144941452196321", "threshold=0.7x", `threshold[0]="0.7x": not a number`)
	f("bad decision type", "decision_type=2 2 2", "decision_type=2 2 64", "decision_type[2]=64")
	f("missing type 3", "decision_type=2 2 2", "decision_type=2 2 12", "decision_type[2]=12")
	f("categorical without sets", "decision_type=2 2 2", "decision_type=2 2 1", "categorical split but num_cat=0")
	f("trees out of order", "Tree=1", "Tree=5", `"Tree=5": want Tree=1`)
	f("a Tree= line lost", "Tree=1\n", "", `tree 0: key "num_leaves" again (first at line 12): is a Tree= line missing?`)
	f("a key twice", "shrinkage=1\n\nTree=1", "shrinkage=1\nleaf_value=1 2 3 4\n\nTree=1", `tree 0: key "leaf_value" again`)
	f("infinite leaf", "leaf_value=0.25", "leaf_value=inf", "leaf 0 value +Inf is not finite")
	f("no trees", "", tinyLGB[:strings.Index(tinyLGB, "Tree=0")]+"end of trees\n", "the model has no trees")
	f("trees vs classes", "num_class=1\nnum_tree_per_iteration=1", "num_class=3\nnum_tree_per_iteration=3", "not a multiple of num_tree_per_iteration=3")
	f("huge num_cat", "num_cat=0\nsplit_feature=1 2 2", "num_cat=4000000000\nsplit_feature=1 2 2", "num_cat=4000000000")
	const body = "num_cat=0\nsplit_feature=1 2 2\nthreshold=0.73144941452196321 0.90708366268745222 0.85551601478390116\ndecision_type=2 2 2"
	cat := func(numCat, thr, extra string) string {
		return "num_cat=" + numCat + "\nsplit_feature=1 2 2\nthreshold=0.73144941452196321 0.90708366268745222 " + thr + "\ndecision_type=2 2 1\n" + extra
	}
	f("cat boundaries", body, cat("1", "0", "cat_boundaries=0 9\ncat_threshold=1"), "cat_boundaries ends at 9 but cat_threshold has 1 words")
	f("cat set index", body, cat("1", "3", "cat_boundaries=0 1\ncat_threshold=1"), "threshold[2]=3: categorical split needs a set index in 0..0")
	f("cat fractional index", body, cat("1", "0.5", "cat_boundaries=0 1\ncat_threshold=1"), "threshold[2]=0.5: categorical split")
	f("cat word", body, cat("1", "0", "cat_boundaries=0 1\ncat_threshold=-1"), "cat_threshold[0]=-1: not a 32-bit word")
	f("cat decreasing", body, cat("1", "0", "cat_boundaries=0 -1\ncat_threshold="), "cat_boundaries[1]=-1 is less than")
	f("cat missing words", body, cat("1", "0", "cat_boundaries=0 1"), "missing cat_threshold")
}

func TestParseLightGBMCategorical(t *testing.T) {
	// leaves_model_simple: tree 0 sends category 100 left (bit 100 = word 3, bit 4).
	ens, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/leaves_model_simple/model.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := newGoScorer(ens)
	gs := sc.(*goScorer)
	f := func(x float64, wantLeft bool) {
		t.Helper()
		if got := gs.catLeft(ens.CatSet[0], x); got != wantLeft {
			t.Fatalf("category %v: left=%v, want %v", x, got, wantLeft)
		}
	}
	f(100, true)
	f(100.9, true) // truncated toward zero, as static_cast<int>
	f(101, false)
	f(99.99, false)
	f(0, false)
	f(-0.5, false) // truncates to 0, which is not in the set
	f(math.NaN(), false)
	f(-100, false)
	f(math.Inf(1), false)
	f(4294967396, false) // 2^32+100: not representable as a C int
	f(1e300, false)
}

func TestLightGBMZeroThreshold(t *testing.T) {
	// LightGBM scores |x| <= kZeroThreshold (float32(1e-35)) as 0.0: with a split at
	// -kZeroThreshold, the value -kZeroThreshold itself goes right (0 > t).
	src := strings.Replace(tinyLGB, "threshold=0.73144941452196321", "threshold=-1.0000000180025095e-35", 1)
	ens, err := Parse(FormatLightGBM, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewModel(ens, Options{Backend: BackendGo})
	out := make([]float64, 1)
	for _, tc := range []struct {
		x    float64
		left bool
	}{{-1.0000000180025095e-35, false}, {-1e-35, false}, {math.Nextafter(-1.0000000180025095e-35, -1), true}, {0, false}, {-1, true}} {
		if err := m.PredictF64([]float64{0, tc.x, 0.5}, 1, out, true); err != nil {
			t.Fatal(err)
		}
		left := out[0] == add(0.49510661266514339, 0.25)
		if left != tc.left {
			t.Errorf("x=%g: left=%v, want %v", tc.x, left, tc.left)
		}
	}
}

func TestModelShapeErrors(t *testing.T) {
	ens, err := Parse(FormatLightGBM, []byte(tinyLGB))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range testBackends() {
		m, err := NewModel(ens, Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, 2)
		if err := m.PredictF64(make([]float64, 5), 2, out, true); !errors.Is(err, ErrFeatureCount) {
			t.Errorf("%s: 5 values for 2 rows of 3: got %v, want ErrFeatureCount", b, err)
		}
		if err := m.PredictF32(make([]float32, 6), 2, out[:1], true); !errors.Is(err, ErrShortOutput) {
			t.Errorf("%s: 1 output for 2 rows: got %v, want ErrShortOutput", b, err)
		}
		if err := m.PredictF64(make([]float64, 6), 2, out, false); err != nil {
			t.Errorf("%s: good call: %v", b, err)
		}
		m.Close()
		if err := m.PredictF64(make([]float64, 6), 2, out, false); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: after Close: got %v, want ErrClosed", b, err)
		}
	}
}

// add sums in float64 at run time (constant expressions are exact, not float64).
func add(a, b float64) float64 { return a + b }

func TestParseLightGBMJSONBadInput(t *testing.T) {
	base := string(readFixture(t, "lightgbm/leaves_json_1tree/model_dump.json"))
	f := func(name, old, new, wantErr string) {
		t.Helper()
		src := new
		if old != "" {
			if !strings.Contains(base, old) {
				t.Fatalf("%s: %q not in the model", name, old)
			}
			src = strings.Replace(base, old, new, 1)
		}
		for _, format := range []Format{FormatLightGBM, FormatXGBoost} {
			_, err := Parse(format, []byte(src))
			if err == nil {
				t.Fatalf("%s (%s): no error", name, format)
			}
			if !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%s (%s): error %q does not mention %q", name, format, err, wantErr)
			}
		}
	}
	f("not a dump", `"name": "tree"`, `"name": "forest"`, `want a LightGBM dump_model() document`)
	f("feature range", `"split_feature": 1,`, `"split_feature": 7,`, "tree 0: split_feature 7 out of range (max_feature_idx=1)")
	f("categories", `"1||10||100"`, `"1||x"`, `categorical threshold "1||x"`)
	f("negative category", `"1||10||100"`, `"1||-10"`, `categorical threshold "1||-10"`)
	f("huge category", `"1||10||100"`, `"2147483646"`, "categorical sets need more than 16777216 words")
	f("decision type", `"decision_type": "<="`, `"decision_type": "<"`, `decision_type "<": want <= or ==`)
	f("missing type", `"missing_type": "None",`, `"missing_type": "Nil",`, `missing_type "Nil"`)
	f("no children", `"right_child": {
      "leaf_index": 3,`, `"other": {
      "leaf_index": 3,`, "split node without left_child and right_child")
	f("empty node", `"leaf_value": 1.1111,`, `"leafvalue": 1.1111,`, "node has neither leaf_value nor split_feature")
	f("truncated", "", base[:strings.LastIndex(base[:len(base)/2], ",")+1], "unexpected end of input")
	f("NaN leaf", `"leaf_value": 1.1111`, `"leaf_value": NaN`, "leaf 2 value NaN is not finite")
	f("deep", "", `{"name":"tree","max_feature_idx":0,"tree_info":[{"tree_structure":`+strings.Repeat(`{"split_feature":0,"threshold":1,"right_child":{"leaf_value":1},"left_child":`, 5000)+`{"leaf_value":1}`+strings.Repeat("}", 5000)+`}]}`, "deeper than 4096 levels")
}
