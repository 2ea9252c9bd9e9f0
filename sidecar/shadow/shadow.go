// Package shadow mirrors a primary model's requests to shadow models off the latency
// path and measures how well each shadow agrees with its primary.
//
// After the primary's answer has been sent, the sidecar hands the scored rows and the
// primary's scores to Mirror.Submit. Submit samples, copies what it needs into a pooled
// job and queues it for a fixed pool of workers; when the queue is full the job is
// dropped and counted, so shadows can never hold up or starve primaries. Workers score
// the rows with each sampled shadow, update its agreement statistics and, when the
// shadow has a prediction log, log its scores. Shadow scores are never returned.
//
// # Agreement statistics
//
// For each shadow, over all mirrored requests it scored:
//
//   - Requests, Rows: how many it scored.
//   - MeanAbsDiff: the mean of |shadow − primary| over every compared value (each row,
//     each output); MaxAbsDiff the largest.
//   - TopK rank correlation: for each request, take the primary's top k rows by the first
//     output (k = min(TopK, rows), ties broken by row order). Rank those k rows by the
//     primary's score and, separately, by the shadow's score (rank 1 = highest; tied
//     scores share the mean of their ranks) and compute Spearman's ρ between the two
//     rankings (the Pearson correlation of the ranks). RankCorr is the mean ρ over the
//     requests where it is defined: k ≥ 2 and neither side scores all k rows the same.
//     RankCorrRequests counts those requests. ρ = 1: the shadow orders the primary's top k
//     the same way; −1: reversed.
//   - TopKOverlap: the mean over requests of |primary's top k ∩ shadow's top k| / k,
//     where the shadow's top k is taken over all rows of the request. It shows whether
//     the shadow would have shown the same items, which ρ (over the primary's k) cannot.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/predlog"
)

// Config configures a Mirror. Field comments give the defaults.
type Config struct {
	// Workers is the most shadow scoring jobs that run at once: the shadow budget;
	// default 1. Keep it below the cores left over by primaries.
	Workers int
	// Queue is how many jobs may wait for a worker; default 4×Workers. A job that does
	// not fit is dropped and counted.
	Queue int
	// Meter records metrics for every shadow of the Mirror; nil means no metrics.
	Meter metric.Meter
}

// Mirror runs shadow models on a bounded worker pool. Its methods are safe for
// concurrent use.
type Mirror struct {
	jobs chan *job
	wg   sync.WaitGroup
	pool sync.Pool

	closeMu sync.RWMutex
	closed  bool

	mu      sync.Mutex
	shadows map[*Shadow]struct{}
	reg     metric.Registration
}

// New starts a Mirror's workers.
func New(cfg Config) (*Mirror, error) {
	if cfg.Workers < 0 || cfg.Queue < 0 {
		return nil, errors.New("shadow: Workers and Queue must not be negative")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4 * cfg.Workers
	}
	m := &Mirror{jobs: make(chan *job, cfg.Queue), shadows: make(map[*Shadow]struct{})}
	m.pool.New = func() any { return new(job) }
	if err := m.registerMetrics(cfg.Meter); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Workers; i++ {
		m.wg.Add(1)
		go m.work()
	}
	return m, nil
}

// ShadowConfig describes one shadow model of a primary.
type ShadowConfig struct {
	// Name and Version identify the shadow model (in stats and logs).
	Name, Version string
	// Primary and PrimaryVersion identify the primary it shadows.
	Primary, PrimaryVersion string
	// PrimaryPredictor is the primary model. Its feature names are the columns of the
	// rows Submit gets; the shadow's columns are mapped from them by name, and a shadow
	// feature the primary lacks is scored as missing (NaN) and counted in
	// Stats.MissingFeatures. Only its names and output counts are read.
	PrimaryPredictor engine.Predictor
	// Predictor scores the shadow. It must produce as many outputs per row as the
	// primary. The caller must not close it before Shadow.Retire returns.
	Predictor engine.Predictor
	// Rate is the fraction of the primary's requests mirrored, in (0, 1]; default 1.
	Rate float64
	// TopK is k for the rank statistics; default 10.
	TopK int
	// Log, if not nil, receives the shadow's scores (sampled by the Logger's own rate).
	Log *predlog.Logger
	// Score, if not nil, scores the shadow's rows in place of Predictor.PredictF64 (same
	// contract); the sidecar passes the C++ core's lowest-priority background threads, so
	// shadow scoring takes only CPU time the primaries leave.
	Score func(rows []float64, nrows int, out []float64, raw bool) error
}

// Shadow is one shadow model attached to a Mirror.
type Shadow struct {
	cfg      ShadowConfig
	m        *Mirror
	colMap   []int // shadow column j = primary column colMap[j], or -1; nil when identical
	missing  int
	shadowOf string

	retireMu sync.RWMutex
	retired  bool
	inflight sync.WaitGroup

	dropped atomic.Uint64

	mu sync.Mutex // guards the statistics below
	st stats
}

type stats struct {
	requests, rows, errors uint64
	lastErr                string
	absSum                 float64
	absN                   uint64
	absMax                 float64
	rhoSum                 float64
	rhoN                   uint64
	overlapSum             float64
	overlapN               uint64
	nonfinite              uint64 // compared values skipped: a NaN or infinite score or difference
}

// Add attaches a shadow to the Mirror.
func (m *Mirror) Add(cfg ShadowConfig) (*Shadow, error) {
	if cfg.Predictor == nil || cfg.PrimaryPredictor == nil {
		return nil, fmt.Errorf("shadow %s: Predictor and PrimaryPredictor must be set", cfg.Name)
	}
	if cfg.Rate == 0 {
		cfg.Rate = 1
	}
	if !(cfg.Rate > 0 && cfg.Rate <= 1) {
		return nil, fmt.Errorf("shadow %s: rate %v is outside (0, 1]", cfg.Name, cfg.Rate)
	}
	if cfg.TopK == 0 {
		cfg.TopK = 10
	}
	if cfg.TopK < 0 {
		return nil, fmt.Errorf("shadow %s: top_k %d is negative", cfg.Name, cfg.TopK)
	}
	for _, raw := range []bool{false, true} {
		if got, want := cfg.Predictor.NumOutputs(raw), cfg.PrimaryPredictor.NumOutputs(raw); got != want {
			return nil, fmt.Errorf("shadow %s: %d outputs per row (raw=%v), its primary %s has %d; a shadow must predict the same outputs",
				cfg.Name, got, raw, cfg.Primary, want)
		}
	}
	s := &Shadow{cfg: cfg, m: m, shadowOf: cfg.Primary + "@" + cfg.PrimaryVersion}
	names := cfg.Predictor.FeatureNames()
	if len(names) != cfg.Predictor.NumFeatures() {
		return nil, fmt.Errorf("shadow %s: %d feature names for %d features", cfg.Name, len(names), cfg.Predictor.NumFeatures())
	}
	if primary := cfg.PrimaryPredictor.FeatureNames(); !slices.Equal(names, primary) {
		pos := make(map[string]int, len(primary))
		for i, n := range primary {
			pos[n] = i
		}
		s.colMap = make([]int, len(names))
		for j, n := range names {
			i, ok := pos[n]
			if !ok {
				i = -1
				s.missing++
			}
			s.colMap[j] = i
		}
	}
	m.mu.Lock()
	m.shadows[s] = struct{}{}
	m.mu.Unlock()
	return s, nil
}

// Retire stops mirroring to s and waits until its queued and running jobs are done;
// after it returns the caller may close the shadow's predictor.
func (s *Shadow) Retire() {
	s.retireMu.Lock()
	s.retired = true
	s.retireMu.Unlock()
	s.inflight.Wait()
	s.m.mu.Lock()
	delete(s.m.shadows, s)
	s.m.mu.Unlock()
}

// Request is a primary's answered request. Submit copies what it needs; the caller may
// reuse every buffer as soon as Submit returns.
type Request struct {
	RequestID string
	// Rows are the assembled rows the primary scored: NumRows × NumFeatures, row-major,
	// in the primary's feature order. Set RowsF32 instead when the primary scored
	// float32 rows; they are widened exactly.
	Rows                 []float64
	RowsF32              []float32
	NumRows, NumFeatures int
	// Scores are the primary's outputs: NumRows × Outputs.
	Scores  []float64
	Outputs int
	// Raw tells whether Scores are raw margins; shadows are scored the same way.
	Raw bool
}

type job struct {
	req     Request
	reqID   []byte
	rows    []float64
	scores  []float64
	shadows []*Shadow
}

// Submit mirrors one answered request to the sampled shadows among shadows. It never
// blocks and never fails: it returns how many shadows the request was queued for, and a
// request that finds the queue full is dropped and counted on each sampled shadow.
func (m *Mirror) Submit(shadows []*Shadow, req Request) int {
	if len(shadows) == 0 || req.NumRows == 0 {
		return 0
	}
	if nvals := len(req.Rows) + len(req.RowsF32); nvals != req.NumRows*req.NumFeatures || len(req.Scores) != req.NumRows*req.Outputs {
		panic(fmt.Sprintf("BUG: shadow.Submit: %d values for %d×%d rows, %d scores for %d×%d",
			nvals, req.NumRows, req.NumFeatures, len(req.Scores), req.NumRows, req.Outputs))
	}
	var j *job
	for _, s := range shadows {
		if s.cfg.Rate < 1 && rand.Float64() >= s.cfg.Rate {
			continue
		}
		s.retireMu.RLock()
		if s.retired {
			s.retireMu.RUnlock()
			continue
		}
		s.inflight.Add(1)
		s.retireMu.RUnlock()
		if j == nil {
			j = m.pool.Get().(*job)
		}
		j.shadows = append(j.shadows, s)
	}
	if j == nil {
		return 0
	}
	j.reqID = append(j.reqID[:0], req.RequestID...)
	j.rows = append(j.rows[:0], req.Rows...)
	for _, v := range req.RowsF32 {
		j.rows = append(j.rows, float64(v))
	}
	j.scores = append(j.scores[:0], req.Scores...)
	j.req = req
	j.req.RequestID, j.req.Rows, j.req.RowsF32, j.req.Scores = "", nil, nil, nil

	n := len(j.shadows) // j belongs to a worker once sent
	m.closeMu.RLock()
	if !m.closed {
		select {
		case m.jobs <- j:
			m.closeMu.RUnlock()
			return n
		default:
		}
	}
	m.closeMu.RUnlock()
	for _, s := range j.shadows {
		s.dropped.Add(1)
		s.inflight.Done()
	}
	m.put(j)
	return 0
}

func (m *Mirror) put(j *job) {
	clear(j.shadows)
	j.shadows = j.shadows[:0]
	if cap(j.rows) > 1<<20 {
		return // let the GC have a huge request's buffers
	}
	m.pool.Put(j)
}

// Close stops accepting jobs and waits for the queued ones to finish.
func (m *Mirror) Close() {
	m.closeMu.Lock()
	if !m.closed {
		m.closed = true
		close(m.jobs)
	}
	m.closeMu.Unlock()
	m.wg.Wait()
	if m.reg != nil {
		m.reg.Unregister()
	}
}

// worker is one worker's reusable scratch space.
type worker struct {
	rows  []float64
	out   []float64
	idx   []int
	ranks [2][]float64
	vals  []float64
}

func (m *Mirror) work() {
	defer m.wg.Done()
	var w worker
	for j := range m.jobs {
		for _, s := range j.shadows {
			w.run(s, j)
			s.inflight.Done()
		}
		m.put(j)
	}
}

func (w *worker) run(s *Shadow, j *job) {
	defer func() {
		// A shadow is an experiment: its bugs must not take the primary down with it.
		if r := recover(); r != nil {
			s.recordError(fmt.Errorf("panic: %v", r))
		}
	}()
	nrows, outputs := j.req.NumRows, j.req.Outputs
	rows := j.rows
	nf := s.cfg.Predictor.NumFeatures()
	if s.colMap != nil {
		w.rows = slices.Grow(w.rows[:0], nrows*nf)[:nrows*nf]
		for r := 0; r < nrows; r++ {
			src, dst := j.rows[r*j.req.NumFeatures:], w.rows[r*nf:(r+1)*nf]
			for c, i := range s.colMap {
				if i < 0 {
					dst[c] = math.NaN()
				} else {
					dst[c] = src[i]
				}
			}
		}
		rows = w.rows
	} else if nf != j.req.NumFeatures {
		s.recordError(fmt.Errorf("%d features per row, the shadow takes %d", j.req.NumFeatures, nf))
		return
	}
	// Raw margins need NumOutputs(raw=true) values per row even when the transform
	// narrows them, so size the buffer for the wider of the two.
	width := max(s.cfg.Predictor.NumOutputs(true), outputs)
	w.out = slices.Grow(w.out[:0], nrows*width)[:nrows*width]
	score := s.cfg.Predictor.PredictF64
	if s.cfg.Score != nil {
		score = s.cfg.Score
	}
	if err := score(rows, nrows, w.out, j.req.Raw); err != nil {
		s.recordError(err)
		return
	}
	out := w.out[:nrows*outputs]
	s.record(w, j.scores, out, nrows, outputs)
	if s.cfg.Log != nil {
		if rec := s.cfg.Log.Sample(); rec != nil {
			rec.Model, rec.Version, rec.ShadowOf = s.cfg.Name, s.cfg.Version, s.shadowOf
			rec.FeatureNames = s.cfg.Predictor.FeatureNames()
			rec.SetRequestID(string(j.reqID))
			rec.SetRows(rows, nrows, nf)
			rec.SetPredictions(out, outputs)
			s.cfg.Log.Log(rec)
		}
	}
}

func (s *Shadow) recordError(err error) {
	s.mu.Lock()
	s.st.errors++
	s.st.lastErr = err.Error()
	s.mu.Unlock()
}

// record folds one scored request into the statistics.
func (s *Shadow) record(w *worker, primary, shadow []float64, nrows, outputs int) {
	var absSum, absMax float64
	var absN, nonfinite uint64
	for i, p := range primary {
		// A NaN or infinite score (Inf−Inf is NaN) would poison every later mean and
		// make /v1/models unencodable as JSON: count it apart instead.
		d := math.Abs(shadow[i] - p)
		if !finite(d) {
			nonfinite++
			continue
		}
		absSum += d
		absMax = max(absMax, d)
		absN++
	}
	rho, rhoOK, overlap := agreement(w, primary, shadow, nrows, outputs, s.cfg.TopK)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.requests++
	s.st.rows += uint64(nrows)
	s.st.absSum += absSum
	s.st.absN += absN
	s.st.nonfinite += nonfinite
	s.st.absMax = max(s.st.absMax, absMax)
	if rhoOK && finite(rho) {
		s.st.rhoSum += rho
		s.st.rhoN++
	}
	if nrows > 0 && s.cfg.TopK > 0 && finite(overlap) {
		s.st.overlapSum += overlap
		s.st.overlapN++
	}
}

// agreement computes Spearman's ρ over the primary's top k rows and the top-k overlap
// (see the package comment), reading the first output of each row.
func agreement(w *worker, primary, shadow []float64, nrows, outputs, topK int) (rho float64, ok bool, overlap float64) {
	k := min(topK, nrows)
	if k == 0 {
		return 0, false, 0
	}
	first := func(vals []float64, r int) float64 { return vals[r*outputs] }
	w.idx = slices.Grow(w.idx[:0], nrows)[:nrows]
	topOf := func(vals []float64) []int {
		for i := range w.idx {
			w.idx[i] = i
		}
		// Highest first; a stable sort keeps row order among ties. NaN sorts last.
		slices.SortStableFunc(w.idx, func(a, b int) int {
			x, y := first(vals, a), first(vals, b)
			switch {
			case greater(x, y):
				return -1
			case greater(y, x):
				return 1
			}
			return 0
		})
		return w.idx[:k]
	}
	shadowTop := slices.Clone(topOf(shadow))
	primTop := topOf(primary)

	inShadow := 0
	for _, r := range primTop {
		if slices.Contains(shadowTop, r) {
			inShadow++
		}
	}
	overlap = float64(inShadow) / float64(k)

	if k < 2 {
		return 0, false, overlap
	}
	for side, vals := range [2][]float64{primary, shadow} {
		w.vals = w.vals[:0]
		for _, r := range primTop {
			w.vals = append(w.vals, first(vals, r))
		}
		w.ranks[side] = rankAverage(w.ranks[side][:0], w.vals)
	}
	rho, ok = pearson(w.ranks[0], w.ranks[1])
	return rho, ok, overlap
}

// rankAverage appends the descending rank (1 = largest) of each value, tied values
// sharing the mean of their ranks. NaN ranks below every number.
func rankAverage(dst, vals []float64) []float64 {
	for i := range vals {
		var above, equal int
		for _, v := range vals {
			switch {
			case greater(v, vals[i]):
				above++
			case v == vals[i] || (math.IsNaN(v) && math.IsNaN(vals[i])):
				equal++
			}
		}
		// Ranks above+1 … above+equal, averaged.
		dst = append(dst, float64(above)+float64(equal+1)/2)
	}
	return dst
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// finiteOr0 keeps a statistic JSON-encodable: encoding/json rejects NaN and ±Inf.
func finiteOr0(x float64) float64 {
	if finite(x) {
		return x
	}
	return 0
}

func greater(x, y float64) bool { return x > y || (!math.IsNaN(x) && math.IsNaN(y)) }

// pearson returns the correlation of x and y, or false when either is constant.
func pearson(x, y []float64) (float64, bool) {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0, false
	}
	return sxy / math.Sqrt(sxx*syy), true
}

// Stats is a snapshot of a shadow's agreement with its primary, shaped for /v1/models.
type Stats struct {
	Name            string  `json:"name"`
	Version         string  `json:"version"`
	Rate            float64 `json:"rate"`
	Requests        uint64  `json:"requests"` // mirrored requests scored
	Rows            uint64  `json:"rows"`     // rows scored
	Dropped         uint64  `json:"dropped"`  // requests not mirrored: shadow budget full
	Errors          uint64  `json:"errors"`   // requests the shadow failed to score
	LastError       string  `json:"last_error,omitempty"`
	MeanAbsDiff     float64 `json:"mean_abs_diff"` // over every compared value; 0 before the first request
	MaxAbsDiff      float64 `json:"max_abs_diff"`
	TopK            int     `json:"top_k"`
	RankCorr        float64 `json:"rank_corr"`          // mean Spearman ρ over the primary's top k
	RankCorrCount   uint64  `json:"rank_corr_requests"` // requests where ρ was defined
	TopKOverlap     float64 `json:"top_k_overlap"`      // mean |top k ∩ top k| / k
	MissingFeatures int     `json:"missing_features"`   // shadow features the primary's rows lack
	NonFinite       uint64  `json:"nonfinite"`          // compared values left out of the differences: NaN or infinite
}

// Stats returns a snapshot of the shadow's statistics.
func (s *Shadow) Stats() Stats {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	out := Stats{
		Name: s.cfg.Name, Version: s.cfg.Version, Rate: s.cfg.Rate, TopK: s.cfg.TopK,
		Requests: st.requests, Rows: st.rows, Dropped: s.dropped.Load(), Errors: st.errors,
		LastError: st.lastErr, MaxAbsDiff: st.absMax, RankCorrCount: st.rhoN,
		MissingFeatures: s.missing, NonFinite: st.nonfinite,
	}
	if st.absN > 0 {
		out.MeanAbsDiff = st.absSum / float64(st.absN)
	}
	if st.rhoN > 0 {
		out.RankCorr = st.rhoSum / float64(st.rhoN)
	}
	if st.overlapN > 0 {
		out.TopKOverlap = st.overlapSum / float64(st.overlapN)
	}
	// A sum of finite differences can still overflow to +Inf (1e308 + 1e308).
	out.MeanAbsDiff = finiteOr0(out.MeanAbsDiff)
	out.MaxAbsDiff = finiteOr0(out.MaxAbsDiff)
	out.RankCorr = finiteOr0(out.RankCorr)
	out.TopKOverlap = finiteOr0(out.TopKOverlap)
	out.Rate = finiteOr0(out.Rate)
	return out
}

func (m *Mirror) registerMetrics(meter metric.Meter) error {
	if meter == nil {
		meter = noop.Meter{}
	}
	scored, err1 := meter.Int64ObservableCounter("predictd.shadow.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Mirrored requests scored by a shadow model."))
	dropped, err2 := meter.Int64ObservableCounter("predictd.shadow.dropped", metric.WithUnit("{request}"),
		metric.WithDescription("Requests not mirrored to a shadow because the shadow budget was full."))
	failed, err3 := meter.Int64ObservableCounter("predictd.shadow.errors", metric.WithUnit("{request}"),
		metric.WithDescription("Mirrored requests a shadow model failed to score."))
	mad, err4 := meter.Float64ObservableGauge("predictd.shadow.mean_abs_diff",
		metric.WithDescription("Mean absolute difference between shadow and primary scores."))
	rho, err5 := meter.Float64ObservableGauge("predictd.shadow.rank_corr",
		metric.WithDescription("Mean Spearman rank correlation over the primary's top k."))
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return fmt.Errorf("shadow: metrics: %w", err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for s := range m.shadows {
			st := s.Stats()
			attrs := metric.WithAttributes(attribute.String("model", s.cfg.Primary),
				attribute.String("shadow", st.Name), attribute.String("shadow_version", st.Version))
			o.ObserveInt64(scored, int64(st.Requests), attrs)
			o.ObserveInt64(dropped, int64(st.Dropped), attrs)
			o.ObserveInt64(failed, int64(st.Errors), attrs)
			o.ObserveFloat64(mad, st.MeanAbsDiff, attrs)
			o.ObserveFloat64(rho, st.RankCorr, attrs)
		}
		return nil
	}, scored, dropped, failed, mad, rho)
	if err != nil {
		return fmt.Errorf("shadow: metrics: %w", err)
	}
	m.reg = reg
	return nil
}
