package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Category names: a LightGBM model trained from a pandas DataFrame with category
// columns saves each column's categories after its trees,
//
//	pandas_categorical:[["R11", "R21", ...], ["Diesel", "Regular"]]
//
// and LightGBM's Python predict() maps a DataFrame's labels to their codes with it (the
// label's place in the list; a label not in it becomes NaN, missing). The lists are in
// the order of the DataFrame's category columns, which the parameters section records
// as categorical_feature (column indices). Ensemble.CategoryNames holds the lists by
// feature so that a request may send "Region": "R24" where the trees test code 4.

// lgbCategoryNames reads the sections after "end of trees" (parameters and
// pandas_categorical) and sets e.CategoryNames, or e.CategoryNote when lists are present
// but cannot be placed. A malformed pandas_categorical line is an error: the file is
// not what LightGBM wrote.
func (e *Ensemble) lgbCategoryNames(trailer []byte) error {
	var catParam string
	var haveParam bool
	var lists []byte
	for len(trailer) > 0 {
		line := trailer
		if i := bytes.IndexByte(trailer, '\n'); i >= 0 {
			line, trailer = trailer[:i], trailer[i+1:]
		} else {
			trailer = nil
		}
		line = bytes.TrimSpace(line)
		if v, ok := bytes.CutPrefix(line, []byte("[categorical_feature:")); ok {
			catParam, haveParam = strings.TrimSpace(strings.TrimSuffix(string(v), "]")), true
		} else if v, ok := bytes.CutPrefix(line, []byte("pandas_categorical:")); ok {
			lists = v
		}
	}
	names, err := parsePandasCategorical(lists)
	if err != nil || len(names) == 0 {
		return err
	}
	return e.placeCategoryNames(names, catParam, haveParam)
}

// parsePandasCategorical decodes pandas_categorical's JSON: null, or a list of lists of
// labels. A label is kept as it would be sent in a request: a string as is, a number
// or boolean as its JSON text ("7", "2.5", "true").
func parsePandasCategorical(raw []byte) ([][]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var lists [][]any
	if err := dec.Decode(&lists); err != nil {
		return nil, fmt.Errorf("lightgbm: pandas_categorical: %s: want a list of lists of labels", ClipText(err.Error()))
	}
	out := make([][]string, len(lists))
	for i, l := range lists {
		out[i] = make([]string, len(l))
		for j, x := range l {
			switch v := x.(type) {
			case string:
				out[i][j] = v
			case json.Number:
				out[i][j] = v.String()
			case bool:
				out[i][j] = strconv.FormatBool(v)
			default:
				return nil, fmt.Errorf("lightgbm: pandas_categorical: list %d, label %d: want a string, number or boolean", i, j)
			}
		}
	}
	return out, nil
}

// placeCategoryNames gives list i to the i-th categorical feature, in column order:
// those categorical_feature names (indices, or "name:a,b"), else those the trees split
// on by category. When the counts disagree the names are not applied and CategoryNote
// says why (the model still loads: its codes work as before).
func (e *Ensemble) placeCategoryNames(names [][]string, param string, haveParam bool) error {
	var feats []int
	source := "categorical_feature"
	if haveParam && param != "" {
		if rest, ok := strings.CutPrefix(param, "name:"); ok {
			for _, n := range strings.Split(rest, ",") {
				i := slices.Index(e.FeatureNames, strings.TrimSpace(n))
				if i < 0 {
					e.CategoryNote = fmt.Sprintf("category names not applied: categorical_feature names %q, which is not a feature", ClipText(n))
					return nil
				}
				feats = append(feats, i)
			}
		} else {
			for _, s := range strings.Split(param, ",") {
				i, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || i < 0 || i >= e.NumFeatures {
					e.CategoryNote = fmt.Sprintf("category names not applied: categorical_feature %q is not a list of feature indices", ClipText(param))
					return nil
				}
				feats = append(feats, i)
			}
		}
	} else {
		source = "the features with categorical splits"
		seen := make([]bool, e.NumFeatures)
		for n, f := range e.Feature {
			if e.Flags[n]&FlagCategorical != 0 && !seen[f] {
				seen[f] = true
				feats = append(feats, int(f))
			}
		}
	}
	slices.Sort(feats)
	feats = slices.Compact(feats)
	if len(feats) != len(names) {
		e.CategoryNote = fmt.Sprintf("category names not applied: pandas_categorical has %d lists for %d features (%s)",
			len(names), len(feats), source)
		return nil
	}
	e.CategoryNames = make([][]string, e.NumFeatures)
	for i, f := range feats {
		e.CategoryNames[f] = names[i]
	}
	return nil
}

// CategoryCodes maps each of a feature's labels to its code (its place in labels); a
// repeated label keeps its first place, as pandas' get_indexer does.
func CategoryCodes(labels []string) map[string]float64 {
	m := make(map[string]float64, len(labels))
	for i, l := range labels {
		if _, dup := m[l]; !dup {
			m[l] = float64(i)
		}
	}
	return m
}
