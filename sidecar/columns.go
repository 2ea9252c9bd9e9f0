package sidecar

import (
	"fmt"
	"strconv"
)

// column is one model input column as the manifest declares it: a request feature, a
// store-backed scalar, or element elem of a store-backed vector of width values.
type column struct {
	name  string // the column's name in requests: NAME, or NAME[elem] for a vector
	spec  FeatureSpec
	elem  int
	width int
}

// expandFeatures lists the model's columns from man.Features: each store-backed list or
// embedding of width w becomes w consecutive columns named NAME[0]..NAME[w-1], which the
// store fills from one stored value and a request may set one by one. Without a store
// every store-backed entry counts as one column (binding fails later, saying the store is
// missing). It returns nil when the manifest lists no features.
func expandFeatures(man *Manifest, store FeatureStore) ([]column, error) {
	var cols []column
	for _, f := range man.Features {
		w := 1
		if f.Stored() && store != nil {
			var err error
			if w, err = store.Width(f.Group, f.Name); err != nil {
				return nil, fmt.Errorf("feature %q: %w", f.Name, err)
			}
			if w < 1 {
				return nil, fmt.Errorf("feature %q of group %q has no numeric values (a string feature cannot be a model input)", f.Name, f.Group)
			}
		}
		if w == 1 {
			cols = append(cols, column{name: f.Name, spec: f, width: 1})
			continue
		}
		for k := range w {
			cols = append(cols, column{name: f.Name + "[" + strconv.Itoa(k) + "]", spec: f, elem: k, width: w})
		}
	}
	return cols, nil
}

func columnNames(cols []column) []string {
	if cols == nil {
		return nil
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return names
}

// describeColumns says how many columns the manifest's features make, for errors.
func describeColumns(man *Manifest, cols []column) string {
	if len(cols) == len(man.Features) {
		return fmt.Sprintf("%d features", len(cols))
	}
	return fmt.Sprintf("%d features (%d columns with the store's vectors expanded)", len(man.Features), len(cols))
}

// writeFeatures writes each candidate's features into its row of m64 (nf columns per
// row), each name resolved to its column, or returns the unknown-feature error for the
// first name the model lacks. expired is called every applyCheckRows rows.
//
// Rankers list the features of every candidate of a request in the same order, so the
// first candidate's names are learned as a layout and each next candidate's names are
// compared with it byte for byte: equal names take the layout's column at the cost of
// a memory compare, where the map would hash the name first. A name that differs (a
// feature left out, another order) is looked up in v.cols, and the comparison carries
// on from that name's place in the layout, so one omission costs one lookup. plain
// looks every name up (the reference the tests compare with).
func (r *request) writeFeatures(v *version, m64 []float64, plain bool, expired func(done int) error) error {
	if len(r.cands) == 0 {
		return nil
	}
	nf := v.nfeat
	// The layout: the first candidate's features, their columns in lcols, and per
	// column 1 + its place in the layout in layoutAt (0: not in it).
	first := r.cands[0]
	learned := r.feats[first.f0:first.f1]
	r.lcols = growI32(r.lcols[:0], len(learned))
	r.layoutAt = growI32(r.layoutAt[:0], nf)
	clear(r.layoutAt)
	for k, f := range learned {
		col, ok := v.cols[string(r.bytes(f.name))]
		if !ok {
			return unknownFeature(v, r.bytes(f.name))
		}
		r.lcols[k] = int32(col)
		if r.layoutAt[col] == 0 {
			r.layoutAt[col] = int32(k + 1)
		}
	}
	lcols, layoutAt := r.lcols, r.layoutAt
	for i, c := range r.cands {
		if i%applyCheckRows == 0 {
			if err := expired(i); err != nil {
				return err
			}
		}
		row := m64[i*nf : (i+1)*nf : (i+1)*nf]
		p := 0 // the layout place the next name is expected at
		for _, f := range r.feats[c.f0:c.f1] {
			if p < len(learned) && f.name.n == learned[p].name.n && !plain &&
				string(r.body[f.name.off:f.name.off+f.name.n]) == string(r.body[learned[p].name.off:learned[p].name.off+f.name.n]) {
				row[lcols[p]] = f.value
				p++
				continue
			}
			name := r.bytes(f.name)
			col, ok := v.cols[string(name)]
			if !ok {
				return unknownFeature(v, name)
			}
			row[col] = f.value
			if at := layoutAt[col]; at > 0 {
				p = int(at)
			}
		}
	}
	return nil
}

// growI32 extends s by n elements, reusing capacity.
func growI32(s []int32, n int) []int32 {
	if len(s)+n > cap(s) {
		t := make([]int32, len(s), max(2*cap(s), len(s)+n))
		copy(t, s)
		s = t
	}
	return s[:len(s)+n]
}
