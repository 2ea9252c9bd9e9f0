package sidecar

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Step 4 of the request path (docs/architecture.md): the matrix a version scores.

// matrix returns r's row-major float64 matrix for v: the dense rows as sent, the one
// the direct path decoded the candidates into (decode_direct.go), or one row per
// candidate with every value missing (NaN). The feature store then fills its columns
// and apply writes the request's features over them. The matrix and the outputs must
// fit in maxCells values each, checked before anything is allocated.
func (r *request) matrix(v *version, maxCells int) ([]float64, error) {
	nf, nrows := v.nfeat, r.numRows()
	outs := max(v.pred.NumOutputs(true), v.pred.NumOutputs(false))
	// nrows ≤ MaxCandidates and nf, outs are a loaded model's: the products fit an int.
	if cells := nrows * max(nf, outs); cells > maxCells {
		return nil, fmt.Errorf("%w: %d rows × %d values for model %s version %s is %d, the limit is %d (--max-cells)",
			errTooManyCells, nrows, max(nf, outs), v.model, v.version, cells, maxCells)
	}
	if r.dense {
		if nrows > 0 && r.width != nf {
			return nil, fmt.Errorf("%w: rows have %d values but model %s version %s takes %d features (GET /v1/models/%s lists them in order)",
				errFeatureCount, r.width, v.model, v.version, nf, v.model)
		}
		return r.rows, nil
	}
	if r.dir.on() { // decoded into the matrix (decode_direct.go)
		if r.dir.v != v || r.dir.overflow || len(r.m64) != nrows*nf {
			return nil, fmt.Errorf("BUG: the matrix decoded for model %s version %s does not fit the request", v.model, v.version)
		}
		return r.m64, nil
	}
	r.m64 = growF64(r.m64[:0], nrows*nf)
	nan := math.NaN()
	for i := range r.m64 {
		r.m64[i] = nan
	}
	return r.m64, nil
}

// applyCheckRows is how many rows apply (and a FeatureBinding's Fill) writes between
// deadline checks: a few hundred microseconds of work on a wide model.
const applyCheckRows = 4096

// apply writes the context features into every row, then each candidate's features
// into its row (writeFeatures), then the vectors sent whole (r.vecs): a context vector
// counts as its elements sent after the context's scalars, a candidate's vector is
// written after the candidate's scalars, so it wins over NAME[k] sent beside it. A name the model lacks fails the request; rows written
// before it are never scored. A context name sent
// more than once counts once, the last value winning (docs/api.md), so context costs
// one write per distinct column per row however many entries the request repeats. The
// deadline is checked every applyCheckRows rows.
func (r *request) apply(v *version, m64 []float64, deadline time.Time) error {
	nf, nrows := v.nfeat, r.numRows()
	// One entry per column as the context is read (ctxAt: 1 + a column's entry, 0 for
	// none), the later value over the earlier: a context that names one feature
	// millions of times costs one entry, not millions.
	r.ctxCols = r.ctxCols[:0]
	if len(r.context) > 0 || len(r.vecs) > 0 {
		r.ctxAt = slices.Grow(r.ctxAt[:0], nf)[:nf]
		clear(r.ctxAt)
	}
	put := func(col int, x float64) {
		if at := r.ctxAt[col]; at > 0 {
			r.ctxCols[at-1].value = x
			return
		}
		r.ctxCols = append(r.ctxCols, colValue{col: col, value: x})
		r.ctxAt[col] = int32(len(r.ctxCols))
	}
	for _, f := range r.context {
		col, ok := v.cols[string(r.bytes(f.name))]
		if !ok {
			return unknownFeature(v, r.bytes(f.name))
		}
		put(col, f.value)
	}
	for _, vec := range r.vecs {
		if vec.row >= 0 {
			continue
		}
		col, err := r.vectorColumn(v, vec)
		if err != nil {
			return err
		}
		for k, x := range r.vecVals[vec.v0:vec.v1] {
			put(col+k, x)
		}
	}
	// In column order, for the rows' writes.
	slices.SortFunc(r.ctxCols, func(a, b colValue) int { return a.col - b.col })
	expired := func(done int) error {
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("%w after assembling %d of %d rows (raise X-Deadline-Ms or --default-deadline)", errDeadline, done, nrows)
		}
		return nil
	}
	if len(r.ctxCols) > 0 {
		for i := 0; i < nrows; i++ {
			if i%applyCheckRows == 0 {
				if err := expired(i); err != nil {
					return err
				}
			}
			row := m64[i*nf : (i+1)*nf]
			for _, c := range r.ctxCols {
				row[c.col] = c.value
			}
		}
	}
	if err := r.dir.unknownFeature(r, v); err != nil {
		return err
	}
	if err := r.writeFeatures(v, m64, false, expired); err != nil {
		return err
	}
	for _, vec := range r.vecs {
		if vec.row < 0 {
			continue
		}
		col, err := r.vectorColumn(v, vec)
		if err != nil {
			return err
		}
		i := int(vec.row)
		copy(m64[i*nf+col:(i+1)*nf], r.vecVals[vec.v0:vec.v1])
	}
	return nil
}

// vectorColumn returns the first column of the store-backed vector an inline vector
// names, or a clear error: an unknown name, a scalar feature, or the wrong length.
func (r *request) vectorColumn(v *version, vec vector) (int, error) {
	name := r.bytes(vec.name)
	n := int(vec.v1 - vec.v0)
	for _, s := range v.stored {
		if s.Width > 1 && s.Spec.Name == string(name) {
			if n != s.Width {
				return 0, badRequest("feature %q: model %s version %s takes a vector of %d values, the request sent %d",
					name, v.model, v.version, s.Width, n)
			}
			return s.Column, nil
		}
	}
	if _, ok := v.cols[string(name)]; ok {
		return 0, badRequest("feature %q of model %s version %s is a scalar: send a number, not an array", name, v.model, v.version)
	}
	return 0, unknownFeature(v, name)
}

// colValue is a context feature resolved to its matrix column.
type colValue struct {
	col   int
	value float64
}

// narrow converts the matrix to float32 for models whose arithmetic is float32
// (v.f32); it returns nil for the others.
func (r *request) narrow(v *version, m64 []float64) []float32 {
	if !v.f32 {
		return nil
	}
	if cap(r.m32) < len(m64) {
		r.m32 = make([]float32, len(m64))
	}
	m32 := r.m32[:len(m64)]
	for i, x := range m64 {
		m32[i] = float32(x)
	}
	return m32
}

func unknownFeature(v *version, name []byte) error {
	return fmt.Errorf("%w %q: model %s version %s has no such feature (GET /v1/models/%s lists them)",
		errUnknownFeature, name, v.model, v.version, v.model)
}
