package features

import (
	"fmt"
	"math"
)

// Plan is a resolved feature list of one group: which fields to read and where each
// feature's values go in a Fetch's columns. Build one per (model, group) at load time with
// Store.Plan and reuse it for every request; a Plan is immutable and safe for concurrent use.
type Plan struct {
	g        *Group
	store    *Store
	id       uint32 // distinguishes plans in cache keys
	feats    []*Feature
	col      []int     // first column of each feature
	width    int       // total columns
	defaults []float64 // per feature: its default, or NaN
	fields   []string  // Redis hash fields: the timestamp, then each feature's id
	// defaultEntry holds every feature's default and no presence: the answer for an
	// entity the backend could not be asked about.
	defaultEntry *entry
}

// Group returns the plan's group.
func (p *Plan) Group() *Group { return p.g }

// Width returns the number of float64 columns one entity fills: the sum of the features'
// widths (1 per scalar, Len per list, Dim per embedding).
func (p *Plan) Width() int { return p.width }

// NumFeatures returns the number of features in the plan (the presence columns).
func (p *Plan) NumFeatures() int { return len(p.feats) }

// Column returns the first column of the plan's i-th feature.
func (p *Plan) Column(i int) int { return p.col[i] }

// newPlan resolves names (each a feature of g) with per-plan default overrides (e.g. from a
// model.yaml `default:`) that replace the group's declared defaults.
func newPlan(g *Group, names []string, overrides map[string]float64) (*Plan, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("feature group %q: empty feature list", g.Name)
	}
	p := &Plan{g: g, fields: []string{string(fieldKey(nil, timestampField))}}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		f, err := g.Feature(name)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("feature group %q: feature %q listed twice", g.Name, name)
		}
		seen[name] = true
		if f.Width() == 0 {
			return nil, fmt.Errorf("feature group %q: feature %q is a %s, not numeric; a model cannot take it", g.Name, name, f.Type)
		}
		def := math.NaN()
		if f.Default != nil {
			def = *f.Default
		}
		if v, ok := overrides[name]; ok {
			if f.Width() != 1 {
				return nil, fmt.Errorf("feature group %q: feature %q is a %s; only scalars take a default", g.Name, name, f.Type)
			}
			def = v
		}
		p.feats = append(p.feats, f)
		p.col = append(p.col, p.width)
		p.defaults = append(p.defaults, def)
		p.width += f.Width()
		p.fields = append(p.fields, string(fieldKey(nil, f.id)))
	}
	p.defaultEntry = &entry{vals: make([]float64, p.width), present: make([]bool, len(p.feats)), absent: true}
	for j, f := range p.feats {
		for w := range f.Width() {
			p.defaultEntry.vals[p.col[j]+w] = p.defaults[j]
		}
	}
	for name := range overrides {
		if !seen[name] {
			return nil, fmt.Errorf("feature group %q: default given for %q, which is not in the feature list", g.Name, name)
		}
	}
	return p, nil
}
