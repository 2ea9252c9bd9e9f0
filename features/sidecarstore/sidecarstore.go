// Package sidecarstore serves a features.Store to the sidecar: it implements
// sidecar.FeatureStore, so the sidecar itself knows nothing of the store's layout and
// the store nothing of HTTP. cmd/predictd wires it in with Config.FeatureStore.
package sidecarstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"sync"
	"unsafe"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"gopkg.in/yaml.v3"
)

// New adapts a features.Store to sidecar.FeatureStore: at
// model load each (group, key) of the manifest's store-backed features gets a Plan;
// per request each plan is one batch FetchRows of the rows' entity ids. source names
// the backend in traces ("redis" or "snapshot"). The Store stays the caller's: closing
// a binding does not close it.
func New(st *features.Store, source string) sidecar.FeatureStore {
	return &featureStore{st: st, source: source}
}

// NewReloading is New for a store whose groups were read from dir's *.group.yaml files:
// every model reload reads them again, and a changed group set is swapped into the store
// (features.Store.SetGroups) before the versions that bind a changed group are re-bound.
// A file that does not parse keeps the previous groups, and the reload reports why.
func NewReloading(st *features.Store, source, dir string) sidecar.FeatureStore {
	fs := &featureStore{st: st, source: source, dir: dir}
	if groups, err := features.LoadGroups(dir); err == nil {
		fs.gens = generations(groups)
	}
	return fs
}

type featureStore struct {
	st     *features.Store
	source string
	dir    string // where the groups are reread from; "" = never

	mu   sync.Mutex
	gens map[string]string // per group: digest of the declaration the store holds
}

// ReloadGroups rereads the group files and swaps them into the store when any changed.
func (s *featureStore) ReloadGroups() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return s.gens, nil
	}
	groups, err := features.LoadGroups(s.dir)
	if err != nil {
		return s.gens, err
	}
	gens := generations(groups)
	if maps.Equal(gens, s.gens) {
		return s.gens, nil
	}
	s.st.SetGroups(groups)
	s.gens = gens
	return gens, nil
}

// generations digests each group's declaration (its YAML form: deterministic, and
// blind to formatting and comments).
func generations(groups map[string]*features.Group) map[string]string {
	gens := make(map[string]string, len(groups))
	for name, g := range groups {
		data, err := yaml.Marshal(g)
		if err != nil {
			panic("BUG: a parsed group does not marshal: " + err.Error())
		}
		sum := sha256.Sum256(data)
		gens[name] = hex.EncodeToString(sum[:8])
	}
	return gens
}

// groupBinding is one (group, entity key) of a model version: its plan and where each
// plan feature goes in the model's row.
type groupBinding struct {
	plan     *features.Plan
	group    string
	key      string    // the request key holding the entity id
	cols     []int     // first model column of plan feature j
	widths   []int     // columns of plan feature j (1, or a vector's length)
	planCol  []int     // first plan column of feature j
	defaults []float64 // value for rows without an entity key (every column of feature j)
}

type storeBinding struct {
	groups []groupBinding
	source string
	st     *features.Store
	pool   sync.Pool // *fillBuf
}

// fillBuf is one Fill's scratch, pooled per binding so a warm request allocates
// nothing per row.
type fillBuf struct {
	ids     []string
	rows    []int
	out     []float64
	present []bool
}

// Width is the number of model columns a feature of group fills: 1 for a scalar, the
// length of a list or embedding. A string feature has width 0 (it is no model input).
func (s *featureStore) Width(group, name string) (int, error) {
	g, ok := s.st.Group(group)
	if !ok {
		return 0, fmt.Errorf("%w %q", features.ErrUnknownGroup, group)
	}
	f, err := g.Feature(name)
	if err != nil {
		return 0, err
	}
	return f.Width(), nil
}

// Bind resolves cols into one plan per (group, key). A scalar fills one model column, a
// list or embedding c.Width consecutive columns (the values in order; a list shorter
// than its declared length is padded with NaN, i.e. missing).
func (s *featureStore) Bind(model, version string, cols []sidecar.StoreColumn) (sidecar.FeatureBinding, error) {
	b := &storeBinding{source: s.source, st: s.st}
	b.pool.New = func() any { return new(fillBuf) }
	idx := map[[2]string]int{}
	var names [][]string
	var overrides []map[string]float64
	for _, c := range cols {
		k := [2]string{c.Spec.Group, c.Spec.Key}
		i, ok := idx[k]
		if !ok {
			i = len(b.groups)
			idx[k] = i
			b.groups = append(b.groups, groupBinding{group: c.Spec.Group, key: c.Spec.Key})
			names = append(names, nil)
			overrides = append(overrides, map[string]float64{})
		}
		names[i] = append(names[i], c.Spec.Name)
		b.groups[i].cols = append(b.groups[i].cols, c.Column)
		b.groups[i].widths = append(b.groups[i].widths, max(c.Width, 1))
		if c.Spec.Default != nil {
			overrides[i][c.Spec.Name] = *c.Spec.Default
		}
	}
	for i := range b.groups {
		g := &b.groups[i]
		p, err := s.st.Plan(g.group, names[i], overrides[i])
		if err != nil {
			return nil, fmt.Errorf("model %s version %s: %w", model, version, err)
		}
		g.plan = p
		grp := p.Group()
		for j, name := range names[i] {
			f, err := grp.Feature(name)
			if err != nil {
				return nil, err
			}
			if w := f.Width(); w != g.widths[j] {
				return nil, fmt.Errorf("feature %q of group %q fills %d columns, but the model binds %d (the group file changed?)",
					name, g.group, w, g.widths[j])
			}
			g.planCol = append(g.planCol, p.Column(j))
			def := math.NaN()
			if d, ok := overrides[i][name]; ok {
				def = d
			} else if f.Default != nil {
				def = *f.Default
			}
			g.defaults = append(g.defaults, def)
		}
	}
	return b, nil
}

// Source names the backend for traces.
func (b *storeBinding) Source() string { return b.source }

// Close releases nothing: plans belong to the shared Store.
func (b *storeBinding) Close() error { return nil }

// Fill reads every group's entities in one batch each and writes the bound columns.
// A row without the entity key gets the features' defaults (not degraded: the request
// chose not to name the entity); a group answered from stale cache or defaults because
// the backend failed marks the response degraded.
func (b *storeBinding) Fill(ctx context.Context, q *sidecar.StoreQuery) error {
	buf := b.pool.Get().(*fillBuf)
	defer b.pool.Put(buf)
	for gi := range b.groups {
		g := &b.groups[gi]
		buf.ids, buf.rows = buf.ids[:0], buf.rows[:0]
		for row := 0; row < q.NRows; row++ {
			if row%checkRows == 0 && ctx.Err() != nil {
				return fmt.Errorf("group %s: after %d of %d rows: %w", g.group, row, q.NRows, ctx.Err())
			}
			k := q.Key(row, g.key)
			if k == nil {
				for j, col := range g.cols {
					dst := q.F64[row*q.NCols+col : row*q.NCols+col+g.widths[j]]
					for k := range dst {
						dst[k] = g.defaults[j]
					}
				}
				continue
			}
			// The id is a view of the request body: Fetch does not keep it, and the body
			// outlives Fill.
			buf.ids = append(buf.ids, unsafe.String(unsafe.SliceData(k), len(k)))
			buf.rows = append(buf.rows, row)
		}
		if len(buf.ids) == 0 {
			continue
		}
		w, nf := g.plan.Width(), g.plan.NumFeatures()
		buf.out = growF64(buf.out[:0], len(buf.ids)*w)
		if cap(buf.present) < len(buf.ids)*nf {
			buf.present = make([]bool, len(buf.ids)*nf)
		}
		buf.present = buf.present[:len(buf.ids)*nf]
		res, err := b.st.FetchRows(ctx, g.plan, buf.ids, buf.out, buf.present)
		clear(buf.ids) // drop the views of the body before the buffer returns to the pool
		if err != nil {
			return fmt.Errorf("group %s: %w", g.group, err)
		}
		if res.Degraded {
			q.SetDegraded(g.group)
		}
		for i, row := range buf.rows {
			src := buf.out[i*w : (i+1)*w]
			dst := q.F64[row*q.NCols : (row+1)*q.NCols]
			for j, col := range g.cols {
				if w := g.widths[j]; w == 1 {
					dst[col] = src[g.planCol[j]]
				} else {
					copy(dst[col:col+w], src[g.planCol[j]:g.planCol[j]+w])
				}
			}
		}
	}
	return nil
}

// checkRows is how many rows Fill walks between checks of the request's deadline (as
// the sidecar does when it applies the request's own features).
const checkRows = 4096

// growF64 returns s resized to n, reusing its array when it is large enough.
func growF64(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}
