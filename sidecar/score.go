package sidecar

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/predictd/predictd/engine"
)

// Step 5 of the request path (docs/architecture.md): scoring the matrix.

// scoreBlockRows is how many rows one Predict call scores before the deadline is checked
// again: large enough that the check costs nothing, small enough that an expired request
// stops within a few milliseconds on a big model.
const scoreBlockRows = 2048

// ContextPredictor is the one optional interface beyond engine.Predictor, for a
// predictor whose calls can wait (a batching queue, a remote scorer): the sidecar then
// scores through it with a context that ends at the request's deadline, so a call still
// queued when the deadline passes returns (504) instead of holding the request.
// ctx.Err(), wrapped or not, is mapped to 504 deadline_exceeded. The registry looks for
// it once, at load.
type ContextPredictor interface {
	PredictF32Context(ctx context.Context, rows []float32, nrows int, out []float64, raw bool) error
	PredictF64Context(ctx context.Context, rows []float64, nrows int, out []float64, raw bool) error
}

// backgroundPredictor is a Predictor that can also score on the C++ core's lowest-priority
// background threads: an engine.Model whose Info says Background (registry.go, bind).
type backgroundPredictor interface {
	PredictF64Background(rows []float64, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error)
	PredictF32Background(rows []float32, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error)
}

// rowCalls are the scoring calls for one row type, as method expressions: a method
// value bound to the version's predictor would be built (and allocated) per request.
type rowCalls[T float32 | float64] struct {
	predict    func(engine.Predictor, []T, int, []float64, bool) error
	context    func(ContextPredictor, context.Context, []T, int, []float64, bool) error
	background func(backgroundPredictor, []T, int, []float64, bool, time.Duration) (time.Duration, error)
}

var (
	calls32 = rowCalls[float32]{engine.Predictor.PredictF32, ContextPredictor.PredictF32Context,
		backgroundPredictor.PredictF32Background}
	calls64 = rowCalls[float64]{engine.Predictor.PredictF64, ContextPredictor.PredictF64Context,
		backgroundPredictor.PredictF64Background}
)

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

// score runs the model over the matrix (m32 when the version takes float32 rows, else
// m64) in blocks of scoreBlockRows, checking the deadline before each block; a
// ContextPredictor also gets it as a context. It returns the outputs, width per row, and
// the background threads' CPU time when the request was scored there (-1 when it was
// not).
//
// A request whose expected scoring time is at least bgAfter (> 0) goes to the C++ core's
// lowest-priority background threads (Config.BackgroundAfter); each block waits there for a
// thread at most until the deadline, and 504s when none started it by then.
func (r *request) score(v *version, m64 []float64, m32 []float32, raw bool, deadline time.Time, bgAfter time.Duration) ([]float64, int, time.Duration, error) {
	if m32 != nil {
		return scoreRows(r, v, m32, &calls32, raw, deadline, bgAfter)
	}
	return scoreRows(r, v, m64, &calls64, raw, deadline, bgAfter)
}

// scoreRows is score for one row type.
func scoreRows[T float32 | float64](r *request, v *version, rows []T, calls *rowCalls[T], raw bool, deadline time.Time,
	bgAfter time.Duration) ([]float64, int, time.Duration, error) {
	nrows, nf := r.numRows(), v.nfeat
	width := v.pred.NumOutputs(raw)
	// The scorer writes every raw output before a transform narrows them (argmax), so
	// the buffer holds the wider of the two.
	need := nrows * max(width, v.pred.NumOutputs(true))
	if cap(r.out) < need {
		r.out = make([]float64, need)
	}
	out := r.out[:need]
	cp := v.ctxPred
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
		block, bout := rows[lo*nf:hi*nf], out[lo*width:]
		var err error
		if background {
			var wait, c time.Duration // 0: no deadline, wait as long as it takes
			if !deadline.IsZero() {
				wait = max(time.Until(deadline), time.Nanosecond)
			}
			c, err = calls.background(v.bg, block, hi-lo, bout, raw, wait)
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
			if cp != nil {
				err = calls.context(cp, ctx, block, hi-lo, bout, raw)
			} else {
				err = calls.predict(v.pred, block, hi-lo, bout, raw)
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
