package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A model loads only when it is whole: a file cut short or with trees added or removed is
// refused with a message naming what disagrees, and every real fixture still loads.

// lgbWholeBase is a 100-tree LightGBM model with tree_sizes.
const lgbWholeBase = "lightgbm/lleaves_boston_housing/model.txt"

// lgbTruncations returns the LightGBM cases: name, model text, and the error they must
// give ("" for a model that must load).
func lgbTruncations(t testing.TB) []struct{ name, src, want string } {
	base := string(readFixture(t, lgbWholeBase))
	tree50 := strings.Index(base, "Tree=50\n")
	tree51 := strings.Index(base, "Tree=51\n")
	end := strings.Index(base, "end of trees\n")
	if tree50 < 0 || tree51 < 0 || end < 0 {
		t.Fatal("fixture layout changed")
	}
	noSizes := regexp.MustCompile(`(?m)^tree_sizes=.*\n`).ReplaceAllString(base, "")
	sizes := regexp.MustCompile(`(?m)^tree_sizes=.*$`).FindString(base)
	return []struct{ name, src, want string }{
		{"whole", base, ""},
		{"whole without tree_sizes", noSizes, ""},
		{"cut at a tree boundary", base[:tree50], `the file ends in tree 49 without the "end of trees" line: it is cut short (tree_sizes lists 100 trees)`},
		{"cut at a tree boundary, no tree_sizes", noSizes[:strings.Index(noSizes, "Tree=50\n")], `the file ends in tree 49 without the "end of trees" line: it is cut short`},
		{"cut mid-tree", base[:tree50+200], `the file ends in tree 50 without the "end of trees" line: it is cut short (tree_sizes lists 100 trees)`},
		{"cut mid-line", base[:tree51-30], `the file ends in tree 50 without the "end of trees" line`},
		{"cut after the last tree", base[:end], `the file ends in tree 99 without the "end of trees" line`},
		{"end of trees missing", base[:end] + base[end+len("end of trees\n"):], `want key=value, Tree= or "end of trees", got "feature_importances:"`},
		{"cut, end of trees added", base[:tree50] + "end of trees\n", `tree_sizes lists 100 trees but the file has 50 before "end of trees"`},
		{"tree_sizes short", strings.Replace(base, sizes, sizes[:strings.LastIndex(sizes, " ")], 1), `tree_sizes lists 99 trees but the file has 100 before "end of trees"`},
		{"tree_sizes long", strings.Replace(base, sizes, sizes+" 1000", 1), `tree_sizes lists 101 trees but the file has 100`},
		{"a tree removed", base[:tree50] + base[tree51:], `"Tree=51": want Tree=50`},
	}
}

func TestLightGBMWhole(t *testing.T) {
	for _, c := range lgbTruncations(t) {
		_, err := Parse(FormatLightGBM, []byte(c.src))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

// xgbTruncations returns XGBoost JSON cases built from a 3-tree model.
func xgbTruncations(t testing.TB) []struct{ name, src, want string } {
	var doc map[string]any
	if err := json.Unmarshal(readFixture(t, "xgboost/leaves_agaricus/model.json"), &doc); err != nil {
		t.Fatal(err)
	}
	model := func(d map[string]any) map[string]any {
		return d["learner"].(map[string]any)["gradient_booster"].(map[string]any)["model"].(map[string]any)
	}
	edit := func(f func(m map[string]any)) string {
		raw, _ := json.Marshal(doc)
		var d map[string]any
		_ = json.Unmarshal(raw, &d)
		f(model(d))
		out, _ := json.Marshal(d)
		return string(out)
	}
	dropTree := func(m map[string]any) { m["trees"] = m["trees"].([]any)[:2] }
	return []struct{ name, src, want string }{
		{"whole", edit(func(map[string]any) {}), ""},
		{"a tree removed", edit(dropTree), "gbtree_model_param.num_trees=3 but the trees array has 2 trees"},
		{"a tree removed, num_trees edited", edit(func(m map[string]any) {
			dropTree(m)
			m["gbtree_model_param"].(map[string]any)["num_trees"] = "2"
		}), "tree_info has 3 entries for 2 trees"},
		{"the middle tree removed, counts edited", edit(func(m map[string]any) {
			tr := m["trees"].([]any)
			m["trees"] = []any{tr[0], tr[2]}
			m["gbtree_model_param"].(map[string]any)["num_trees"] = "2"
			m["tree_info"] = []any{0, 0}
		}), "trees[1]: id=2: want 1"},
		{"node arrays cut", edit(func(m map[string]any) {
			tr := m["trees"].([]any)[1].(map[string]any)
			tr["split_conditions"] = tr["split_conditions"].([]any)[:3]
		}), "trees[1]: split_conditions has 3 entries, left_children has"},
		{"num_nodes disagrees", edit(func(m map[string]any) {
			tr := m["trees"].([]any)[1].(map[string]any)
			for _, k := range []string{"left_children", "right_children", "split_indices", "split_conditions", "default_left"} {
				a := tr[k].([]any)
				tr[k] = a[:len(a)-2]
			}
		}), "tree_param.num_nodes="},
	}
}

func TestXGBoostWhole(t *testing.T) {
	for _, c := range xgbTruncations(t) {
		for _, form := range []string{"json", "ubjson"} {
			src := []byte(c.src)
			if form == "ubjson" {
				src = jsonToUBJSON(t, src)
			}
			_, err := Parse(FormatXGBoost, src)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s (%s): %v", c.name, form, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s (%s): error %v, want it to mention %q", c.name, form, err, c.want)
			}
		}
	}
}

// TestLightGBMWholeFixtures: lleaves_mtpl2_small, whose tree_sizes lists 1,000 trees for
// the 200 it holds, is refused; every other model of the testdata and of the shared
// fixture set (when present) loads.
func TestLightGBMWholeFixtures(t *testing.T) {
	_, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/lleaves_mtpl2_small/model.txt"))
	if err == nil || !strings.Contains(err.Error(), "tree_sizes lists 1000 trees but the file has 200") {
		t.Errorf("lleaves_mtpl2_small: %v", err)
	}
	var files []string
	for _, pat := range []string{"testdata/lightgbm/*/model.txt*", "testdata/lightgbm-oracle/*/model.txt*", "testdata/xgboost/*/model.json*", "testdata/xgboost/*/model.ubj*"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	if d := sharedFixturesDir(); d != "" {
		for _, pat := range []string{"lightgbm/*/model.txt", "xgboost/*/model.json", "xgboost/*/model.ubj"} {
			m, _ := filepath.Glob(filepath.Join(d, pat))
			files = append(files, m...)
		}
	}
	if len(files) < 20 {
		t.Fatalf("only %d model files found", len(files))
	}
	for _, f := range files {
		if strings.Contains(f, "lleaves_mtpl2_small") {
			continue
		}
		var data []byte
		if strings.HasPrefix(f, "testdata") {
			rel := strings.TrimPrefix(filepath.ToSlash(f), "testdata/")
			data = readFixture(t, strings.TrimSuffix(strings.TrimSuffix(rel, ".gz"), ".zst"))
		} else if data, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimSuffix(f, ".gz"), ".zst")
		if _, err := Parse(DetectFormat(name, data), data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// sharedFixturesDir returns the shared fixture set's directory, or "".
func sharedFixturesDir() string {
	for _, d := range []string{os.Getenv("PREDICTD_FIXTURES")} {
		if d == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(d, "xgboost")); err == nil && st.IsDir() {
			return d
		}
	}
	return ""
}
