package engine

import (
	"slices"
	"strings"
	"testing"
)

// TestCategoryNames reads pandas_categorical and places its lists on the categorical
// features: by the categorical_feature parameter (indices or "name:"), else by the
// features the trees split on by category; counts that disagree leave the names off
// with a note, and a malformed line refuses the file.
func TestCategoryNames(t *testing.T) {
	// tinyLGB's tree 0 splits feature 1, then 2; make the first split categorical.
	catTree := strings.Replace(strings.Replace(tinyLGB, "num_cat=0\nsplit_feature=1 2 2", "num_cat=1\nsplit_feature=1 2 2", 1),
		"threshold=0.73144941452196321 0.90708366268745222 0.85551601478390116\ndecision_type=2 2 2",
		"threshold=0 0.90708366268745222 0.85551601478390116\ndecision_type=1 2 2\ncat_boundaries=0 1\ncat_threshold=5", 1)
	with := func(src, trailer string) string {
		return strings.Replace(src, "pandas_categorical:null\n", trailer, 1)
	}
	for _, c := range []struct {
		name, src string
		want      map[int][]string // feature → labels; nil: no names
		note      string
	}{
		{"null", tinyLGB, nil, ""},
		{"empty", with(tinyLGB, "pandas_categorical:[]\n"), nil, ""},
		{"by parameter", with(tinyLGB, "parameters:\n[categorical_feature: 2,0]\nend of parameters\n\npandas_categorical:[[\"x\", \"y\"], [\"lo\", \"hi\", \"top\"]]\n"),
			map[int][]string{0: {"x", "y"}, 2: {"lo", "hi", "top"}}, ""},
		{"by name", with(tinyLGB, "parameters:\n[categorical_feature: name:c]\nend of parameters\n\npandas_categorical:[[\"u\"]]\n"),
			map[int][]string{2: {"u"}}, ""},
		{"numbers and booleans", with(tinyLGB, "parameters:\n[categorical_feature: 1]\nend of parameters\npandas_categorical:[[3, 2.5, -1, true]]\n"),
			map[int][]string{1: {"3", "2.5", "-1", "true"}}, ""},
		{"by splits", with(catTree, "pandas_categorical:[[\"a\", \"b\"]]\n"), map[int][]string{1: {"a", "b"}}, ""},
		{"too many lists", with(catTree, "pandas_categorical:[[\"a\"], [\"b\"]]\n"), nil,
			"pandas_categorical has 2 lists for 1 features (the features with categorical splits)"},
		{"parameter disagrees", with(tinyLGB, "parameters:\n[categorical_feature: 0,1,2]\nend of parameters\npandas_categorical:[[\"a\"]]\n"), nil,
			"pandas_categorical has 1 lists for 3 features (categorical_feature)"},
		{"unknown name", with(tinyLGB, "parameters:\n[categorical_feature: name:zz]\nend of parameters\npandas_categorical:[[\"a\"]]\n"), nil,
			`categorical_feature names "zz"`},
		{"index out of range", with(tinyLGB, "parameters:\n[categorical_feature: 7]\nend of parameters\npandas_categorical:[[\"a\"]]\n"), nil,
			`categorical_feature "7" is not a list of feature indices`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ens, err := Parse(FormatLightGBM, []byte(c.src))
			if err != nil {
				t.Fatal(err)
			}
			if c.note == "" && ens.CategoryNote != "" || !strings.Contains(ens.CategoryNote, c.note) {
				t.Errorf("note %q, want %q", ens.CategoryNote, c.note)
			}
			if c.want == nil {
				if ens.CategoryNames != nil {
					t.Errorf("names %q, want none", ens.CategoryNames)
				}
				return
			}
			if len(ens.CategoryNames) != ens.NumFeatures {
				t.Fatalf("names for %d features, model has %d", len(ens.CategoryNames), ens.NumFeatures)
			}
			for f, got := range ens.CategoryNames {
				if !slices.Equal(got, c.want[f]) {
					t.Errorf("feature %d: %q, want %q", f, got, c.want[f])
				}
			}
		})
	}
	// dump_model() JSON: no parameters, so the features with categorical splits.
	dump := string(readFixture(t, "lightgbm/leaves_json_1tree/model_dump.json"))
	withJSON := strings.Replace(dump, `"tree_info"`, `"pandas_categorical": [["p", "q\"r"]], "tree_info"`, 1)
	ens, err := Parse(FormatLightGBM, []byte(withJSON))
	if err != nil {
		t.Fatal(err)
	}
	catFeat := -1
	for n, f := range ens.Feature {
		if ens.Flags[n]&FlagCategorical != 0 {
			catFeat = int(f)
		}
	}
	if catFeat < 0 || len(ens.CategoryNames) != ens.NumFeatures || !slices.Equal(ens.CategoryNames[catFeat], []string{"p", `q"r`}) {
		t.Errorf("dump_model JSON: names %q on feature %d", ens.CategoryNames, catFeat)
	}
	if _, err := Parse(FormatLightGBM, []byte(strings.Replace(dump, `"tree_info"`, `"pandas_categorical": [[{}]], "tree_info"`, 1))); err == nil {
		t.Error("dump_model JSON with a malformed pandas_categorical: accepted")
	}
	for _, bad := range []string{"pandas_categorical:[[\"a\"]\n", "pandas_categorical:{\"a\":1}\n", "pandas_categorical:[[{}]]\n", "pandas_categorical:[[null]]\n"} {
		if _, err := Parse(FormatLightGBM, []byte(with(tinyLGB, bad))); err == nil || !strings.Contains(err.Error(), "pandas_categorical") {
			t.Errorf("%q: %v, want a pandas_categorical error", bad, err)
		}
	}
}
