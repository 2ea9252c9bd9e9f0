package sidecar

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Request-path errors beyond decoding; errorStatus maps them to HTTP codes.
var (
	errUnknownFeature    = errors.New("unknown feature")
	errFeatureCount      = errors.New("wrong number of values per row")
	errTooManyCandidates = errors.New("too many candidates")
	errDeadline          = errors.New("deadline exceeded")
)

// scoreBlockRows is how many rows one Predict call scores before the deadline is checked
// again: large enough that the check costs nothing, small enough that an expired request
// stops within a few milliseconds on a big model.
const scoreBlockRows = 2048

// matrix returns r's row-major float64 matrix for v: the dense rows as sent, or one row
// per candidate with every value missing (NaN). The feature store then fills its columns
// and apply writes the request's features over them.
func (r *request) matrix(v *version) ([]float64, error) {
	nf, nrows := v.nfeat, r.numRows()
	if r.dense {
		if nrows > 0 && r.width != nf {
			return nil, fmt.Errorf("%w: rows have %d values but model %s version %s takes %d features (GET /v1/models/%s lists them in order)",
				errFeatureCount, r.width, v.model, v.version, nf, v.model)
		}
		return r.rows, nil
	}
	r.m64 = growF64(r.m64[:0], nrows*nf)
	nan := math.NaN()
	for i := range r.m64 {
		r.m64[i] = nan
	}
	return r.m64, nil
}

// apply writes the context features into every row, then each candidate's features
// into its row. Every name is checked before anything is written.
func (r *request) apply(v *version, m64 []float64) error {
	nf, nrows := v.nfeat, r.numRows()
	for _, f := range r.context {
		if _, ok := v.cols[string(f.name)]; !ok {
			return unknownFeature(v, f.name)
		}
	}
	for _, f := range r.feats {
		if _, ok := v.cols[string(f.name)]; !ok {
			return unknownFeature(v, f.name)
		}
	}
	for _, f := range r.context {
		col := v.cols[string(f.name)]
		for i := 0; i < nrows; i++ {
			m64[i*nf+col] = f.value
		}
	}
	for i, c := range r.cands {
		row := m64[i*nf : (i+1)*nf]
		for _, f := range r.feats[c.f0:c.f1] {
			row[v.cols[string(f.name)]] = f.value
		}
	}
	return nil
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

// score runs the model over the matrix in blocks of scoreBlockRows, checking the
// deadline before each block. It returns the outputs, width per row.
func (r *request) score(v *version, m64 []float64, m32 []float32, raw bool, deadline time.Time) ([]float64, int, error) {
	nrows, nf := r.numRows(), v.nfeat
	width := v.pred.NumOutputs(raw)
	// The scorer writes every raw output before a transform narrows them (argmax), so
	// the buffer holds the wider of the two.
	need := nrows * max(width, v.pred.NumOutputs(true))
	if cap(r.out) < need {
		r.out = make([]float64, need)
	}
	out := r.out[:need]
	for lo := 0; lo < nrows; lo += scoreBlockRows {
		if !deadline.IsZero() && time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("%w after scoring %d of %d rows (raise X-Deadline-Ms or --default-deadline)", errDeadline, lo, nrows)
		}
		hi := min(lo+scoreBlockRows, nrows)
		var err error
		if m32 != nil {
			err = v.pred.PredictF32(m32[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
		} else {
			err = v.pred.PredictF64(m64[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("model %s version %s: %w", v.model, v.version, err)
		}
	}
	return out[:nrows*width], width, nil
}
