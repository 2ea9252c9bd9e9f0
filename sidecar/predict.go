package sidecar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/predictd/predictd/engine"
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
// into its row. Every name is checked before anything is written. A context name sent
// more than once counts once, the last value winning (docs/api.md), so context costs
// one write per distinct column per row however many entries the request repeats. The
// deadline is checked every applyCheckRows rows.
func (r *request) apply(v *version, m64 []float64, deadline time.Time) error {
	nf, nrows := v.nfeat, r.numRows()
	r.ctxCols = r.ctxCols[:0]
	for _, f := range r.context {
		col, ok := v.cols[string(f.name)]
		if !ok {
			return unknownFeature(v, f.name)
		}
		r.ctxCols = append(r.ctxCols, colValue{col: col, value: f.value})
	}
	for _, f := range r.feats {
		if _, ok := v.cols[string(f.name)]; !ok {
			return unknownFeature(v, f.name)
		}
	}
	// Fold to one value per column: a stable sort keeps request order within a column,
	// then each run keeps its last entry.
	slices.SortStableFunc(r.ctxCols, func(a, b colValue) int { return a.col - b.col })
	folded := r.ctxCols[:0]
	for i, c := range r.ctxCols {
		if i+1 < len(r.ctxCols) && r.ctxCols[i+1].col == c.col {
			continue
		}
		folded = append(folded, c)
	}
	r.ctxCols = folded
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
	for i, c := range r.cands {
		if i%applyCheckRows == 0 {
			if err := expired(i); err != nil {
				return err
			}
		}
		row := m64[i*nf : (i+1)*nf]
		for _, f := range r.feats[c.f0:c.f1] {
			row[v.cols[string(f.name)]] = f.value
		}
	}
	return nil
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

// ContextPredictor is an optional interface of an engine.Predictor whose calls can wait
// (a batching queue, a remote scorer): the sidecar then scores through it with a
// context that ends at the request's deadline, so a call still queued when the deadline
// passes returns (504) instead of holding the request. ctx.Err(), wrapped or not, is
// mapped to 504 deadline_exceeded.
type ContextPredictor interface {
	PredictF32Context(ctx context.Context, rows []float32, nrows int, out []float64, raw bool) error
	PredictF64Context(ctx context.Context, rows []float64, nrows int, out []float64, raw bool) error
}

// backgroundPredictor is a Predictor that can also score on the C++ core's lowest-priority
// background threads (engine.Model with the C++ core).
type backgroundPredictor interface {
	CanBackground() bool
	PredictF64Background(rows []float64, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error)
	PredictF32Background(rows []float32, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error)
}

// observe folds one scoring's time per row into v's estimate, an exponentially weighted
// mean (weight 1/8) in which one sample counts for at most twice the estimate: a request
// on its own thread is timed by the wall clock, and one that the kernel preempted for a
// few milliseconds must not make a 20 µs model look like a 1 ms one (its next requests
// would go to the lowest-priority threads and wait there). A model that really got slower
// still gets there, by up to 1/8 a request. Batches of under 16 rows are left out: the
// call's fixed cost dominates them. Concurrent updates may lose one another, which an
// estimate can afford.
func (v *version) observe(d time.Duration, rows int) {
	if rows < 16 || d <= 0 {
		return
	}
	ps := int64(d) * 1000 / int64(rows)
	if old := v.psPerRow.Load(); old != 0 {
		ps = old + (min(ps, 2*old)-old)/8
	}
	v.psPerRow.Store(ps)
}

// expected is the scoring time v's recent requests predict for rows rows; 0 before the
// first measured request.
func (v *version) expected(rows int) time.Duration {
	return time.Duration(v.psPerRow.Load() * int64(rows) / 1000)
}

// score runs the model over the matrix in blocks of scoreBlockRows, checking the
// deadline before each block; a ContextPredictor also gets it as a context. It returns
// the outputs, width per row, and the background threads' CPU time when the request was
// scored there (-1 when it was not).
//
// A request whose expected scoring time is at least bgAfter (> 0) goes to the C++ core's
// lowest-priority background threads (Config.BackgroundAfter); each block waits there for a
// thread at most until the deadline, and 504s when none started it by then.
func (r *request) score(v *version, m64 []float64, m32 []float32, raw bool, deadline time.Time, bgAfter time.Duration) ([]float64, int, time.Duration, error) {
	nrows, nf := r.numRows(), v.nfeat
	width := v.pred.NumOutputs(raw)
	// The scorer writes every raw output before a transform narrows them (argmax), so
	// the buffer holds the wider of the two.
	need := nrows * max(width, v.pred.NumOutputs(true))
	if cap(r.out) < need {
		r.out = make([]float64, need)
	}
	out := r.out[:need]
	cp, _ := v.pred.(ContextPredictor)
	ctx := context.Context(bg)
	if cp != nil && !deadline.IsZero() {
		// Only for context predictors: the other scorers' path stays allocation-free.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(bg, deadline)
		defer cancel()
	}
	// Only a version that can score in the background keeps a cost estimate: the others
	// (ONNX, the pure-Go scorer, --background-after 0) time nothing.
	measure := v.bg != nil && bgAfter > 0
	background := measure && v.expected(nrows) >= bgAfter
	cpu := time.Duration(-1)
	if background {
		cpu = 0
	}
	for lo := 0; lo < nrows; lo += scoreBlockRows {
		if !deadline.IsZero() && time.Now().After(deadline) {
			return nil, 0, cpu, fmt.Errorf("%w after scoring %d of %d rows (raise X-Deadline-Ms or --default-deadline)", errDeadline, lo, nrows)
		}
		hi := min(lo+scoreBlockRows, nrows)
		var err error
		if background {
			var wait, c time.Duration // 0: no deadline, wait as long as it takes
			if !deadline.IsZero() {
				wait = max(time.Until(deadline), time.Nanosecond)
			}
			if m32 != nil {
				c, err = v.bg.PredictF32Background(m32[lo*nf:hi*nf], hi-lo, out[lo*width:], raw, wait)
			} else {
				c, err = v.bg.PredictF64Background(m64[lo*nf:hi*nf], hi-lo, out[lo*width:], raw, wait)
			}
			cpu += c
			v.observe(c, hi-lo)
			if errors.Is(err, engine.ErrBackgroundTimeout) {
				return nil, 0, cpu, fmt.Errorf("%w after scoring %d of %d rows: %w (raise X-Deadline-Ms or --default-deadline, or lower the load)", errDeadline, lo, nrows, err)
			}
		} else {
			var t0 time.Time
			if measure {
				t0 = time.Now()
			}
			switch {
			case cp != nil && m32 != nil:
				err = cp.PredictF32Context(ctx, m32[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
			case cp != nil:
				err = cp.PredictF64Context(ctx, m64[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
			case m32 != nil:
				err = v.pred.PredictF32(m32[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
			default:
				err = v.pred.PredictF64(m64[lo*nf:hi*nf], hi-lo, out[lo*width:], raw)
			}
			if measure {
				v.observe(time.Since(t0), hi-lo)
			}
		}
		if err != nil {
			return nil, 0, cpu, fmt.Errorf("model %s version %s: %w", v.model, v.version, err)
		}
	}
	return out[:nrows*width], width, cpu, nil
}
