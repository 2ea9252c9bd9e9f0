package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Format is a model file format.
type Format string

const (
	FormatLightGBM Format = "lightgbm" // LightGBM text model (model.txt)
	FormatXGBoost  Format = "xgboost"  // XGBoost JSON model (save_model("*.json"))
)

// Sentinel errors, wrapped with context by the functions that return them.
var (
	ErrFeatureCount = errors.New("wrong number of features")
	ErrShortOutput  = errors.New("output buffer too short")
	ErrClosed       = errors.New("model is closed")
	ErrUnsupported  = errors.New("unsupported model feature")
)

// Backend names a scoring implementation.
type Backend string

const (
	BackendAuto Backend = ""   // the C++ core when built with cgo, else pure Go
	BackendC    Backend = "c"  // the C++ core through cgo
	BackendGo   Backend = "go" // the pure-Go scorer
)

// scorer computes raw margins; implementations are the C++ core (cgo) and pure Go. A scorer
// is safe for concurrent use; out has len >= nrows*NumOutputs and the caller has checked
// the shapes.
type scorer interface {
	predictF64(rows []float64, nrows int, out []float64) error
	predictF32(rows []float32, nrows int, out []float64) error
	close()
	name() string
}

// bgScorer is a scorer that can also score on the C++ core's lowest-priority background
// threads (the cgo scorer); wait > 0 bounds how long a batch may wait for a thread to
// start it. They return the thread CPU time the batch took.
type bgScorer interface {
	predictF64Background(rows []float64, nrows int, out []float64, wait time.Duration) (time.Duration, error)
	predictF32Background(rows []float32, nrows int, out []float64, wait time.Duration) (time.Duration, error)
}

// ErrBackgroundTimeout is returned (wrapped) by PredictF64Background and
// PredictF32Background when no background thread started the batch within the wait:
// normal-priority work kept every core busy.
var ErrBackgroundTimeout = errors.New("background scoring did not start in time")

// ErrNoBackground is returned by the Background methods of a Model without background
// threads (the pure-Go scorer).
var ErrNoBackground = errors.New("background scoring needs the C++ core")

// StartBackground starts the C++ core's background scoring threads, if they are not
// running, with the given number of threads (the first start in a process chooses it), and
// returns the CPU priority they run at: "nice 19, 0.1 ms slice" (Linux 6.12+), "nice 19",
// else "SCHED_IDLE" (Linux), else
// "normal (REASON)". ok is false without the C++ core (CGO_ENABLED=0).
//
// Background threads get little CPU time while normal-priority threads want it (15/1039 of
// a contended core against a nice-0 thread), and a normal thread that wakes preempts them:
// long batches scored there hardly delay short requests (or the application beside the
// sidecar, when both share the CPU without cgroup limits between them), and still use
// every idle cycle.
func StartBackground(threads int) (priority string, ok bool) { return startBackground(threads) }

// Options configure a Model. The zero value is usable.
type Options struct {
	// Backend selects the scorer; default BackendAuto.
	Backend Backend
	// Threads is how many goroutines split a large batch; default 1. Results are identical
	// for every value.
	Threads int
	// MinRowsPerThread is the smallest slice of a batch worth a goroutine; default 256.
	MinRowsPerThread int
}

// Model is a loaded, immutable model ready to score. Predict methods are safe for
// concurrent use; Close must not race with them.
type Model struct {
	ens     *Ensemble
	sc      scorer
	threads int
	minRows int
	closeMu sync.Once
}

// LoadFile reads and parses a model file. An empty format is inferred from the file
// (DetectFormat).
func LoadFile(path string, format Format, opts Options) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if format == "" {
		format = DetectFormat(path, data)
	}
	ens, err := Parse(format, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return NewModel(ens, opts)
}

// DetectFormat guesses a model file's format from its name and first bytes: ".json", a
// leading '{' (JSON or UBJSON) or XGBoost's binary header is XGBoost (whose parser names
// the binary format as unsupported), anything else LightGBM text.
func DetectFormat(path string, data []byte) Format {
	if strings.EqualFold(filepath.Ext(path), ".json") || IsXGBoostBinary(data) {
		return FormatXGBoost
	}
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return FormatXGBoost
		}
		break
	}
	return FormatLightGBM
}

// Parse parses model bytes of the given format into a validated Ensemble.
func Parse(format Format, data []byte) (*Ensemble, error) {
	var (
		ens *Ensemble
		err error
	)
	switch format {
	case FormatLightGBM:
		ens, err = ParseLightGBM(data)
	case FormatXGBoost:
		ens, err = ParseXGBoostJSON(data)
	default:
		return nil, fmt.Errorf("unknown model format %q (want lightgbm or xgboost)", format)
	}
	if err != nil {
		return nil, err
	}
	if err := ens.Validate(); err != nil {
		return nil, err
	}
	return ens, nil
}

// NewModel builds the scoring backend for a validated ensemble.
func NewModel(ens *Ensemble, opts Options) (*Model, error) {
	var (
		sc  scorer
		err error
	)
	switch opts.Backend {
	case BackendAuto:
		if cgoAvailable {
			sc, err = newCScorer(ens)
		} else {
			sc, err = newGoScorer(ens)
		}
	case BackendC:
		if !cgoAvailable {
			return nil, fmt.Errorf("backend %q: predictd was built without cgo", opts.Backend)
		}
		sc, err = newCScorer(ens)
	case BackendGo:
		sc, err = newGoScorer(ens)
	default:
		return nil, fmt.Errorf("unknown backend %q (want c or go)", opts.Backend)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{ens: ens, sc: sc, threads: opts.Threads, minRows: opts.MinRowsPerThread}
	if m.threads < 1 {
		m.threads = 1
	}
	if m.minRows < 1 {
		m.minRows = 256
	}
	return m, nil
}

// Ensemble returns the model's internal form. It must not be modified.
func (m *Model) Ensemble() *Ensemble { return m.ens }

// NumFeatures returns the number of input columns a row must have.
func (m *Model) NumFeatures() int { return m.ens.NumFeatures }

// NumOutputs returns how many values Predict writes per row (see Ensemble.OutputWidth).
func (m *Model) NumOutputs(raw bool) int { return m.ens.OutputWidth(raw) }

// FeatureNames returns the model's feature names in input order.
func (m *Model) FeatureNames() []string { return m.ens.FeatureNames }

// BackendName returns the scorer in use ("c/avx2", "go", ...).
func (m *Model) BackendName() string { return m.sc.name() }

// Traversal returns how the C++ core scores this model: "leaf tables" (trees of at most
// 32 leaves), "heap walk" (complete trees up to depth 10), "walk", or "generic (REASON)"
// when the model is outside the fast kernels' limits (20-100x slower; REASON says why).
// Empty for the pure-Go scorer.
func (m *Model) Traversal() string {
	if t, ok := m.sc.(interface{ traversal() string }); ok {
		return t.traversal()
	}
	return ""
}

// Info describes the model for the sidecar (see Info): float32 rows for XGBoost
// semantics, NaN as missing, background scoring with the C++ core.
func (m *Model) Info() Info {
	return Info{Backend: m.BackendName(), Traversal: m.Traversal(),
		Float32Input: m.ens.Semantics == SemanticsXGBoost, MissingNaN: true, Background: m.CanBackground(),
		CategoryNames: m.ens.CategoryNames, CategoryNote: m.ens.CategoryNote}
}

// Semantics returns the numeric rules of the model's training library. LightGBM models
// need float64 rows (PredictF64) for exact parity; XGBoost models lose nothing with float32.
func (m *Model) Semantics() Semantics { return m.ens.Semantics }

// PredictF64 scores nrows row-major rows of NumFeatures values (NaN = missing) into out,
// which must hold nrows*NumOutputs(raw) values. raw selects margins over transformed
// predictions. It allocates nothing; it is safe for concurrent use.
func (m *Model) PredictF64(rows []float64, nrows int, out []float64, raw bool) error {
	return predict(m, rows, nrows, out, raw, scorer.predictF64)
}

// PredictF32 is PredictF64 for float32 rows. With LightGBM semantics each value is widened
// to float64 exactly; values that were rounded to float32 before the call may fall on the
// other side of a threshold than the original float64 would.
func (m *Model) PredictF32(rows []float32, nrows int, out []float64, raw bool) error {
	return predict(m, rows, nrows, out, raw, scorer.predictF32)
}

// predict checks the shapes, scores [0, nrows) in m.parts(nrows) slices on their own
// goroutines, and applies the transform unless raw.
func predict[T float32 | float64](m *Model, rows []T, nrows int, out []float64, raw bool,
	call func(scorer, []T, int, []float64) error) error {
	if err := m.checkShape(len(rows), nrows, len(out), raw); err != nil {
		return err
	}
	var err error
	if parts := m.parts(nrows); parts <= 1 {
		// The common case builds no closure, so a call allocates nothing.
		err = call(m.sc, rows, nrows, out)
	} else {
		sc, f, k := m.sc, m.ens.NumFeatures, m.ens.NumOutputs
		err = split(nrows, parts, func(lo, hi int) error {
			return call(sc, rows[lo*f:hi*f], hi-lo, out[lo*k:hi*k])
		})
	}
	if err != nil {
		return err
	}
	if !raw {
		m.ens.transform(out, nrows)
	}
	return nil
}

// CanBackground reports whether the Background methods can score m (the C++ core).
func (m *Model) CanBackground() bool {
	_, ok := m.sc.(bgScorer)
	return ok
}

// PredictF64Background is PredictF64 computed on the C++ core's background threads (see
// StartBackground; the first call starts them with one thread per CPU). The caller
// blocks until the batch is done. wait > 0 bounds how long the batch may wait for a
// thread to start it (ErrBackgroundTimeout); a started batch runs to its end. It returns
// the thread CPU time the batch took; the results are bit-identical to PredictF64's.
func (m *Model) PredictF64Background(rows []float64, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error) {
	return predictBackground(m, rows, nrows, out, raw, wait, bgScorer.predictF64Background)
}

// PredictF32Background is PredictF64Background for float32 rows (see PredictF32).
func (m *Model) PredictF32Background(rows []float32, nrows int, out []float64, raw bool, wait time.Duration) (time.Duration, error) {
	return predictBackground(m, rows, nrows, out, raw, wait, bgScorer.predictF32Background)
}

// predictBackground checks the shapes, scores [0, nrows) in m.parts(nrows) slices, each
// its own background batch (so the pool's threads share a large one), sums their CPU
// time, and applies the transform unless raw.
func predictBackground[T float32 | float64](m *Model, rows []T, nrows int, out []float64, raw bool, wait time.Duration,
	call func(bgScorer, []T, int, []float64, time.Duration) (time.Duration, error)) (time.Duration, error) {
	if err := m.checkShape(len(rows), nrows, len(out), raw); err != nil {
		return 0, err
	}
	bs, ok := m.sc.(bgScorer)
	if !ok {
		return 0, ErrNoBackground
	}
	f, k := m.ens.NumFeatures, m.ens.NumOutputs
	var (
		cpu time.Duration
		err error
	)
	if parts := m.parts(nrows); parts <= 1 {
		cpu, err = call(bs, rows, nrows, out, wait)
	} else {
		var sum atomic.Int64
		err = split(nrows, parts, func(lo, hi int) error {
			c, err := call(bs, rows[lo*f:hi*f], hi-lo, out[lo*k:hi*k], wait)
			sum.Add(int64(c))
			return err
		})
		cpu = time.Duration(sum.Load())
	}
	if err == nil && !raw {
		m.ens.transform(out, nrows)
	}
	return cpu, err
}

func (m *Model) checkShape(nvals, nrows, nout int, raw bool) error {
	if m.sc == nil {
		return ErrClosed
	}
	if nrows < 0 || nvals != nrows*m.ens.NumFeatures {
		return fmt.Errorf("%w: %d values for %d rows; the model takes %d features per row",
			ErrFeatureCount, nvals, nrows, m.ens.NumFeatures)
	}
	// Raw margins are computed for every output even when the transform narrows them
	// (argmax), so the buffer must hold NumOutputs per row.
	if need := nrows * m.ens.NumOutputs; nout < need {
		return fmt.Errorf("%w: %d values for %d rows × %d outputs", ErrShortOutput, nout, nrows, m.ens.NumOutputs)
	}
	return nil
}

// parts returns how many slices a batch of nrows is split into: at most m.threads, and
// none smaller than m.minRows.
func (m *Model) parts(nrows int) int {
	return max(1, min(m.threads, nrows/m.minRows))
}

// split scores [0, nrows) in parts slices on their own goroutines and waits for all.
func split(nrows, parts int, fn func(lo, hi int) error) error {
	var (
		wg   sync.WaitGroup
		errs = make([]error, parts)
	)
	chunk := (nrows + parts - 1) / parts
	for p := 0; p < parts; p++ {
		lo, hi := p*chunk, min((p+1)*chunk, nrows)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func(p, lo, hi int) {
			defer wg.Done()
			errs[p] = fn(lo, hi)
		}(p, lo, hi)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close releases the backend's memory. Predict after Close returns ErrClosed; Close must
// not run concurrently with Predict (the registry retires a model only after its last
// request has finished).
func (m *Model) Close() error {
	m.closeMu.Do(func() {
		if m.sc != nil {
			m.sc.close()
			m.sc = nil
		}
	})
	return nil
}

// Info describes how a Predictor scores: what the sidecar needs to choose the row type
// and the threads it scores on, and what it shows in GET /v1/models and traces. It is
// fixed for the predictor's life.
type Info struct {
	// Backend names the scorer: "c/avx2", "go", "onnx/cpu", "onnx/cuda:0", ...
	Backend string
	// Device is where the model runs, for a predictor that can run elsewhere than the CPU
	// (ONNX: "cpu", "cuda:0", "cpu (cuda:0 requested: REASON)"); empty otherwise.
	Device string
	// Traversal is how the C++ core scores a tree model (Model.Traversal); empty otherwise.
	Traversal string
	// Float32Input: float32 rows lose nothing, so the sidecar assembles float32 rows and
	// calls PredictF32 (XGBoost semantics, most ONNX graphs); otherwise float64 rows and
	// PredictF64 (LightGBM needs them for exact parity, ONNX id inputs for exact ids).
	Float32Input bool
	// MissingNaN: NaN is a valid value in every column (a tree model takes its default
	// branch). The sidecar warms a new version on NaN rows then, else on zeros (an id
	// input rejects NaN).
	MissingNaN bool
	// Background: PredictF64Background and PredictF32Background can score the model on
	// the C++ core's lowest-priority threads (a Model with the C++ core). The sidecar
	// honours it only on a *Model itself: a wrapper that embeds a Model to change how
	// rows are scored inherits the field and the methods, and would be bypassed by them.
	Background bool
	// CategoryNames, per feature, are the labels of its category codes when the model
	// names them (Ensemble.CategoryNames): a request may send a label where the code
	// goes. Nil for a model without names. CategoryNote says why names in the file were
	// not applied; empty otherwise.
	CategoryNames [][]string
	CategoryNote  string
}

// Predictor is what the sidecar serves: a tree Model here, an ONNX model in engine/onnx.
// Implementations are safe for concurrent Predict calls and allocate nothing per row.
type Predictor interface {
	NumFeatures() int
	NumOutputs(raw bool) int
	FeatureNames() []string
	// Info describes the predictor; the sidecar reads it once, at load.
	Info() Info
	PredictF64(rows []float64, nrows int, out []float64, raw bool) error
	PredictF32(rows []float32, nrows int, out []float64, raw bool) error
	Close() error
}

var _ Predictor = (*Model)(nil)
