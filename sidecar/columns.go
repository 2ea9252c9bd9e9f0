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
