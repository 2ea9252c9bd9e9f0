package sidecar

import (
	"context"
	"errors"
)

// ErrNoFeatureStore fails the load of a model whose manifest names store-backed
// features when the sidecar runs without a feature store.
var ErrNoFeatureStore = errors.New("feature store not configured")

// FeatureStore supplies store-backed feature values (manifest entries with group and
// key). The feature-store package implements it; Config.FeatureStore wires it in.
type FeatureStore interface {
	// Bind prepares one model version's store-backed columns at load time, so a manifest
	// that names an unknown group fails the load rather than a request. The binding is
	// closed when the version retires.
	Bind(model, version string, cols []StoreColumn) (FeatureBinding, error)
	// Width is how many model columns the store feature fills: 1 for a scalar, the
	// length of a list or embedding (whose values then fill consecutive columns named
	// NAME[0], NAME[1], ...). An unknown group or feature is an error.
	Width(group, name string) (int, error)
	// ReloadGroups re-reads the store's group declarations at the start of every model
	// reload. It returns each group's generation, which changes whenever its declaration
	// did: a version is re-bound when a group it binds changed, so groups and the versions
	// that bind them change together. On error the previous declarations stay (and their
	// generations are returned); the error is reported with the reload's failures.
	ReloadGroups() (generations map[string]string, err error)
}

// StoreColumn is a store-backed feature and the matrix columns it fills: Width
// consecutive columns from Column (1 for a scalar; a vector's length otherwise).
type StoreColumn struct {
	Column int
	Width  int
	Spec   FeatureSpec
}

// FeatureBinding fills the store-backed columns of one request's matrix. It is safe for
// concurrent use.
type FeatureBinding interface {
	// Fill writes the bound columns of q's matrix before the request's own features are
	// applied (a value the request sends wins). It must honour ctx's deadline, and report
	// groups served from defaults or a stale cache with q.SetDegraded.
	Fill(ctx context.Context, q *StoreQuery) error
	// Source names where the values come from, for traces ("redis", "snapshot").
	Source() string
	Close() error
}

// StoreQuery is one request's view for a FeatureBinding. It is valid only during Fill.
type StoreQuery struct {
	req *request
	// F64 is the NRows × NCols row-major matrix (float64 for every model; it is narrowed
	// to float32 after Fill for float32 models). In the dense rows form the store's
	// columns overwrite what the request sent in them.
	NRows, NCols int
	F64          []float64
}

// Key returns the value of entity key name for row: the candidate's own key, else the
// request's context key; nil when neither is present. A name repeated in one keys
// object takes its last value (docs/api.md). The bytes must not be kept after Fill
// returns. Key is not safe for concurrent use: call it from one goroutine per query.
func (q *StoreQuery) Key(row int, name string) []byte {
	r := q.req
	if row < len(r.cands) {
		c := r.cands[row]
		ks := r.candKeys[c.k0:c.k1]
		for i := len(ks) - 1; i >= 0; i-- {
			if string(r.bytes(ks[i].name)) == name {
				return r.bytes(ks[i].value)
			}
		}
	}
	return r.contextKey(name)
}

// resolvedKey is a request-level key looked up once per request.
type resolvedKey struct {
	name  string
	value []byte // nil: the request has no such key
}

// contextKey returns the request-level key name. The request's keys are scanned once
// per distinct name (one per store group), not once per row: a request with many keys
// and many rows costs keys + rows, not keys × rows.
func (r *request) contextKey(name string) []byte {
	for _, k := range r.ctxKeyOf {
		if k.name == name {
			return k.value
		}
	}
	var v []byte
	for i := len(r.ctxKeys) - 1; i >= 0; i-- {
		if string(r.bytes(r.ctxKeys[i].name)) == name {
			v = r.bytes(r.ctxKeys[i].value)
			break
		}
	}
	r.ctxKeyOf = append(r.ctxKeyOf, resolvedKey{name: name, value: v})
	return v
}

// SetDegraded marks the response degraded because group's values came from defaults or
// a stale cache.
func (q *StoreQuery) SetDegraded(group string) {
	for _, g := range q.req.degraded {
		if g == group {
			return
		}
	}
	q.req.degraded = append(q.req.degraded, group)
}
