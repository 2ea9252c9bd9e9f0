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
//
// # CPU share and coverage
//
// A shadow may have a Budget: a CPU-time share (in cores) within which its jobs are
// scored at normal priority on the worker's own thread, whose CPU time is measured and
// charged. Jobs beyond it go to the idle-priority path (ShadowConfig.Background) as
// shadows without a budget always do. The sampling rate is lowered, evenly, when the
// budget cannot cover the configured rate: every adaptEvery the Mirror estimates each
// budget's demand (rate × the busiest request rate of the last hour, or the current one
// if higher, × the measured CPU cost per mirrored request) and scales the rates of its
// shadows so that the demand fits 90% of the share. The decision is the same random
// sampling decision, made before scoring, so which requests are mirrored does not depend
// on how busy the host is at that moment. Requests sampled but not scored (queue full, no
// idle CPU within the wait) are counted as dropped, apart from those sampled out.
//
// Coverage counts, per one-minute bucket over the last hour, the primary requests each
// shadow saw, mirrored, sampled out and dropped, and warns when the busiest minutes were
// covered markedly less than the quietest (see Coverage).
package shadow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/predlog"
)

// Config configures a Mirror. Field comments give the defaults.
type Config struct {
	// Workers is the most shadow scoring jobs that run at once; default 1. Keep it
	// below the cores left over by primaries.
	Workers int
	// Queue is how many jobs may wait for a worker; default 4×Workers. A job that does
	// not fit is dropped and counted.
	Queue int
	// Meter records metrics for every shadow of the Mirror; nil means no metrics.
	Meter metric.Meter
	// CoverageBucket is the width of a coverage bucket; default one minute. The ring
	// keeps 60 complete buckets.
	CoverageBucket time.Duration
}

// adaptEvery is how often the sampling rates of shadows with a budget are recomputed.
const adaptEvery = 500 * time.Millisecond

// rateTau is the time constant of the current request rate's moving average: long
// enough to ignore a burst of a few requests, short enough to follow a rising load
// within seconds (the hour's per-bucket peak carries the rate after that).
const rateTau = 10 * time.Second

// budgetHeadroom is the fraction of a budget the rate adaptation plans to use: the rest
// absorbs the error of the estimates, so few jobs find the bucket empty.
const budgetHeadroom = 0.9

// Mirror runs shadow models on a bounded worker pool. Its methods are safe for
// concurrent use.
type Mirror struct {
	jobs   chan *job
	wg     sync.WaitGroup
	pool   sync.Pool
	bucket time.Duration
	stop   chan struct{}
	now    func() time.Time
	// shortSlices counts the workers whose thread got the short time slice (shortSlice).
	shortSlices atomic.Int32
	// adaptMu serializes adapt, the only user of the Shadows' adaptation state.
	adaptMu sync.Mutex

	closeMu sync.RWMutex
	closed  bool

	mu      sync.Mutex
	shadows map[*Shadow]struct{}
	reg     metric.Registration
}

// New starts a Mirror's workers.
func New(cfg Config) (*Mirror, error) { return newMirror(cfg, time.Now) }

// newMirror is New with a clock for the coverage buckets and the rate adaptation.
func newMirror(cfg Config, now func() time.Time) (*Mirror, error) {
	if cfg.Workers < 0 || cfg.Queue < 0 {
		return nil, errors.New("shadow: Workers and Queue must not be negative")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4 * cfg.Workers
	}
	if cfg.CoverageBucket < 0 {
		return nil, errors.New("shadow: CoverageBucket must not be negative")
	}
	if cfg.CoverageBucket == 0 {
		cfg.CoverageBucket = time.Minute
	}
	m := &Mirror{jobs: make(chan *job, cfg.Queue), shadows: make(map[*Shadow]struct{}),
		bucket: cfg.CoverageBucket, stop: make(chan struct{}), now: now}
	m.pool.New = func() any { return new(job) }
	if err := m.registerMetrics(cfg.Meter); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Workers; i++ {
		m.wg.Add(1)
		go m.work()
	}
	m.wg.Add(1)
	go m.adaptLoop()
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
	// contract) on the worker's own thread, at normal priority.
	Score func(rows []float64, nrows int, out []float64, raw bool) error
	// Background, if not nil, scores the rows at idle priority and returns the CPU time
	// it took; the sidecar passes the C++ core's lowest-priority background threads, so
	// shadow scoring takes only CPU time the primaries leave. An error wrapping
	// engine.ErrBackgroundTimeout (no thread started the batch in time) counts as a
	// drop, not a shadow error. Without a Budget every job is scored here.
	Background func(rows []float64, nrows int, out []float64, raw bool) (time.Duration, error)
	// Budget, if not nil, is the CPU share within which jobs are scored at normal
	// priority (Score) before falling back to Background; the shadow's sampling rate is
	// lowered when the budget cannot cover Rate. Without Background, a job beyond the
	// budget is dropped. Shadows may share a Budget.
	Budget *Budget
}

// Shadow is one shadow model attached to a Mirror.
type Shadow struct {
	cfg     ShadowConfig
	m       *Mirror
	colMap  []int // shadow column j = primary column colMap[j], or -1; nil when identical
	missing int
	// recode, per shadow column, maps the primary's category codes to the shadow's
	// (NaN: a category the shadow does not name) where both models name their
	// categories and the names differ; nil when no column needs it.
	recode   [][]float64
	shadowOf string

	retireMu sync.RWMutex
	retired  bool
	inflight sync.WaitGroup

	dropped, droppedQueue, droppedCPU, sampledOut atomic.Uint64
	primaries                                     atomic.Uint64 // primary requests seen
	effRate                                       atomic.Uint64 // float64 bits: the rate sampled at
	cov                                           coverage

	// The rate adaptation's state, touched only by Mirror.adapt (under adaptMu).
	lastPrim uint64
	lastTick time.Time
	lambda   float64 // moving average of the primary request rate, per second

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
	normal, idle           uint64 // jobs scored at normal and at idle priority
	cpuNormal, cpuIdle     time.Duration
	cost                   float64 // moving average of the CPU ns per job
	costN                  uint64
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
	s := &Shadow{cfg: cfg, m: m, shadowOf: cfg.Primary + "@" + cfg.PrimaryVersion, cov: coverage{width: m.bucket}}
	s.effRate.Store(math.Float64bits(cfg.Rate))
	names := cfg.Predictor.FeatureNames()
	if len(names) != cfg.Predictor.NumFeatures() {
		return nil, fmt.Errorf("shadow %s: %d feature names for %d features", cfg.Name, len(names), cfg.Predictor.NumFeatures())
	}
	primary := cfg.PrimaryPredictor.FeatureNames()
	if !slices.Equal(names, primary) {
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
	s.recode = recodeTables(cfg.PrimaryPredictor.Info().CategoryNames, cfg.Predictor.Info().CategoryNames, s.colMap, len(names))
	if s.recode != nil && s.colMap == nil {
		s.colMap = make([]int, len(names)) // the identity: rows are copied to be recoded
		for j := range s.colMap {
			s.colMap[j] = j
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
	bucket  int64     // coverage bucket of the request
	at      time.Time // when it was submitted
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
	now := m.now()
	for _, s := range shadows {
		s.retireMu.RLock()
		if s.retired {
			s.retireMu.RUnlock()
			continue
		}
		idx := s.cov.index(now)
		s.primaries.Add(1)
		if r := s.rate(); r < 1 && rand.Float64() >= r {
			s.retireMu.RUnlock()
			s.sampledOut.Add(1)
			s.cov.add(idx, 1, 0, 1, 0)
			continue
		}
		s.cov.add(idx, 1, 0, 0, 0)
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
	j.bucket = now.UnixNano() / int64(m.bucket)
	j.at = now
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
		s.drop(j.bucket, &s.droppedQueue)
		s.inflight.Done()
	}
	m.put(j)
	return 0
}

// rate returns the fraction of requests the shadow samples now: its configured rate,
// lowered when its budget cannot cover it.
func (s *Shadow) rate() float64 { return math.Float64frombits(s.effRate.Load()) }

// drop counts a sampled request that was not scored, under its reason.
func (s *Shadow) drop(bucket int64, reason *atomic.Uint64) {
	s.dropped.Add(1)
	reason.Add(1)
	s.cov.add(bucket, 0, 0, 0, 1)
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
		close(m.stop)
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
	// Locked for the thread CPU clock, which must read the thread that scored; the thread
	// ends with the goroutine (at Close).
	runtime.LockOSThread()
	if shortSlice() {
		m.shortSlices.Add(1)
	}
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
			for c, tab := range s.recode {
				// A whole code the primary names becomes the shadow's; others (missing,
				// negative, unseen by the primary) are left as they are.
				if x := dst[c]; tab != nil && x >= 0 && x < float64(len(tab)) && x == math.Trunc(x) {
					dst[c] = tab[int(x)]
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
	if err := s.score(rows, nrows, w.out, j.req.Raw, j.at); err != nil {
		if errors.Is(err, engine.ErrBackgroundTimeout) || errors.Is(err, errOverBudget) {
			s.drop(j.bucket, &s.droppedCPU)
			return
		}
		s.recordError(err)
		return
	}
	out := w.out[:nrows*outputs]
	s.record(w, j.scores, out, nrows, outputs)
	s.cov.add(j.bucket, 0, 1, 0, 0)
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

// errOverBudget: the budget was empty and the shadow has no idle-priority path.
var errOverBudget = errors.New("over the CPU budget, no idle-priority path")

// score scores one job: at normal priority within the budget (or always, without budget
// and idle path), else at idle priority; it records the CPU time on the path taken.
func (s *Shadow) score(rows []float64, nrows int, out []float64, raw bool, submitted time.Time) error {
	b := s.cfg.Budget
	if s.cfg.Background != nil && (b == nil || !b.take()) {
		cpu, err := s.cfg.Background(rows, nrows, out, raw)
		if err == nil {
			s.recordCPU(cpu, false)
		}
		return err
	}
	if b != nil && s.cfg.Background == nil && !b.take() {
		return errOverBudget
	}
	score := s.cfg.Predictor.PredictF64
	if s.cfg.Score != nil {
		score = s.cfg.Score
	}
	if b != nil {
		// Submit runs before the primary's response is written: a normal-priority batch
		// started at once competes with that write for the core.
		if d := headStart - time.Since(submitted); d > 0 {
			time.Sleep(d)
		}
	}
	t0, ok := threadCPU()
	w0 := time.Now()
	err := score(rows, nrows, out, raw)
	t1, ok1 := threadCPU()
	cpu := t1 - t0
	if !ok || !ok1 {
		cpu = time.Since(w0) // no thread clock: wall time, an upper bound
	}
	if b != nil {
		b.charge(cpu)
	}
	if err == nil {
		s.recordCPU(cpu, true)
	}
	return err
}

// headStart is how long after its request was submitted a job may start at normal
// priority: the primary's response, written after Submit returns, goes first.
const headStart = 200 * time.Microsecond

// costAlpha is the weight of the newest job in the moving average of the cost per job.
const costAlpha = 0.2

func (s *Shadow) recordCPU(cpu time.Duration, normal bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if normal {
		s.st.normal++
		s.st.cpuNormal += cpu
	} else {
		s.st.idle++
		s.st.cpuIdle += cpu
	}
	if s.st.costN == 0 {
		s.st.cost = float64(cpu)
	} else {
		s.st.cost += costAlpha * (float64(cpu) - s.st.cost)
	}
	s.st.costN++
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
	Requests        uint64  `json:"requests"`           // mirrored requests scored
	Rows            uint64  `json:"rows"`               // rows scored
	Dropped         uint64  `json:"dropped"`            // sampled requests not scored: DroppedQueue + DroppedCPU
	DroppedQueue    uint64  `json:"dropped_queue_full"` // the job queue was full
	DroppedCPU      uint64  `json:"dropped_no_cpu"`     // no idle CPU within the wait, or over the budget without an idle path
	SampledOut      uint64  `json:"sampled_out"`        // primary requests not sampled (rate, lowered by the budget)
	Primaries       uint64  `json:"primary_requests"`   // primary requests the shadow saw
	Errors          uint64  `json:"errors"`             // requests the shadow failed to score
	LastError       string  `json:"last_error,omitempty"`
	MeanAbsDiff     float64 `json:"mean_abs_diff"` // over every compared value; 0 before the first request
	MaxAbsDiff      float64 `json:"max_abs_diff"`
	TopK            int     `json:"top_k"`
	RankCorr        float64 `json:"rank_corr"`          // mean Spearman ρ over the primary's top k
	RankCorrCount   uint64  `json:"rank_corr_requests"` // requests where ρ was defined
	TopKOverlap     float64 `json:"top_k_overlap"`      // mean |top k ∩ top k| / k
	MissingFeatures int     `json:"missing_features"`   // shadow features the primary's rows lack
	NonFinite       uint64  `json:"nonfinite"`          // compared values left out of the differences: NaN or infinite

	// EffectiveRate is the rate requests are sampled at now: Rate, lowered when the
	// CPU budget cannot cover it.
	EffectiveRate float64 `json:"effective_rate"`
	// Budget is the shadow's CPU budget (shared with the other shadows on it); absent
	// without one.
	Budget *BudgetStats `json:"budget,omitempty"`
	// NormalPriority and IdlePriority count the jobs scored on each path, CPUSeconds*
	// their thread CPU time; CostSeconds is the moving average of the CPU time per job.
	NormalPriority   uint64   `json:"normal_priority"`
	IdlePriority     uint64   `json:"idle_priority"`
	CPUSecondsNormal float64  `json:"cpu_seconds_normal"`
	CPUSecondsIdle   float64  `json:"cpu_seconds_idle"`
	CostSeconds      float64  `json:"cost_seconds"`
	Coverage         Coverage `json:"coverage"`
}

// Stats returns a snapshot of the shadow's statistics.
func (s *Shadow) Stats() Stats {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	out := Stats{
		Name: s.cfg.Name, Version: s.cfg.Version, Rate: s.cfg.Rate, TopK: s.cfg.TopK,
		Requests: st.requests, Rows: st.rows, Dropped: s.dropped.Load(), Errors: st.errors,
		DroppedQueue: s.droppedQueue.Load(), DroppedCPU: s.droppedCPU.Load(), SampledOut: s.sampledOut.Load(),
		Primaries: s.primaries.Load(),
		LastError: st.lastErr, MaxAbsDiff: st.absMax, RankCorrCount: st.rhoN,
		MissingFeatures: s.missing, NonFinite: st.nonfinite,
		EffectiveRate: finiteOr0(s.rate()), NormalPriority: st.normal, IdlePriority: st.idle,
		CPUSecondsNormal: st.cpuNormal.Seconds(), CPUSecondsIdle: st.cpuIdle.Seconds(),
		CostSeconds: finiteOr0(st.cost / 1e9),
		Coverage:    s.cov.snapshot(s.m.now(), s.cfg.Rate),
	}
	if s.cfg.Budget != nil {
		bs := s.cfg.Budget.Stats()
		out.Budget = &bs
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
	primaries, err6 := meter.Int64ObservableCounter("predictd.shadow.primary_requests", metric.WithUnit("{request}"),
		metric.WithDescription("Primary requests a shadow model saw (mirrored, sampled out or dropped)."))
	sampledOut, err7 := meter.Int64ObservableCounter("predictd.shadow.sampled_out", metric.WithUnit("{request}"),
		metric.WithDescription("Primary requests not sampled for a shadow (its rate, lowered when its CPU budget cannot cover it)."))
	noCPU, err8 := meter.Int64ObservableCounter("predictd.shadow.dropped_no_cpu", metric.WithUnit("{request}"),
		metric.WithDescription("Sampled requests a shadow dropped for want of CPU: no idle-priority thread in time, or over its budget without one."))
	cpu, err9 := meter.Float64ObservableCounter("predictd.shadow.cpu", metric.WithUnit("s"),
		metric.WithDescription("Thread CPU time of shadow scoring, by priority (normal: within the CPU budget; idle)."))
	effRate, err10 := meter.Float64ObservableGauge("predictd.shadow.effective_rate",
		metric.WithDescription("Fraction of primary requests a shadow samples now: its rate, lowered when its CPU budget cannot cover it."))
	covHour, err11 := meter.Float64ObservableGauge("predictd.shadow.coverage",
		metric.WithDescription("Fraction of the last hour's primary requests a shadow scored."))
	covMinute, err12 := meter.Float64ObservableGauge("predictd.shadow.coverage_last_minute",
		metric.WithDescription("Fraction of the last complete minute's primary requests a shadow scored."))
	uneven, err13 := meter.Int64ObservableGauge("predictd.shadow.coverage_uneven",
		metric.WithDescription("1 when a shadow covered the busiest tenth of the last hour's minutes markedly less than the quietest."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10, err11, err12, err13); err != nil {
		return fmt.Errorf("shadow: metrics: %w", err)
	}
	normalAttr, idleAttr := attribute.String("priority", "normal"), attribute.String("priority", "idle")
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
			o.ObserveInt64(primaries, int64(st.Primaries), attrs)
			o.ObserveInt64(sampledOut, int64(st.SampledOut), attrs)
			o.ObserveInt64(noCPU, int64(st.DroppedCPU), attrs)
			base := []attribute.KeyValue{attribute.String("model", s.cfg.Primary),
				attribute.String("shadow", st.Name), attribute.String("shadow_version", st.Version)}
			o.ObserveFloat64(cpu, st.CPUSecondsNormal, metric.WithAttributes(append(base, normalAttr)...))
			o.ObserveFloat64(cpu, st.CPUSecondsIdle, metric.WithAttributes(append(base, idleAttr)...))
			o.ObserveFloat64(effRate, st.EffectiveRate, attrs)
			o.ObserveFloat64(covHour, st.Coverage.LastHour.Fraction, attrs)
			o.ObserveFloat64(covMinute, st.Coverage.LastMinute.Fraction, attrs)
			var u int64
			if st.Coverage.Uneven {
				u = 1
			}
			o.ObserveInt64(uneven, u, attrs)
		}
		return nil
	}, scored, dropped, failed, mad, rho, primaries, sampledOut, noCPU, cpu, effRate, covHour, covMinute, uneven)
	if err != nil {
		return fmt.Errorf("shadow: metrics: %w", err)
	}
	m.reg = reg
	return nil
}

// recodeTables returns, per shadow column, the primary's category code → the shadow's
// code for the same label (NaN for a label the shadow does not name), where both models
// name the column's categories and their lists differ (a model retrained on data with
// new categories numbers them anew); nil when no column needs one. colMap maps shadow
// columns to primary ones (nil: the same columns).
func recodeTables(primary, shadow [][]string, colMap []int, nf int) [][]float64 {
	if primary == nil || shadow == nil || len(shadow) != nf {
		return nil
	}
	var tabs [][]float64
	for j := range nf {
		i := j
		if colMap != nil {
			i = colMap[j]
		}
		if i < 0 || i >= len(primary) || primary[i] == nil || shadow[j] == nil || slices.Equal(primary[i], shadow[j]) {
			continue
		}
		code := engine.CategoryCodes(shadow[j])
		tab := make([]float64, len(primary[i]))
		for k, l := range primary[i] {
			if c, ok := code[l]; ok {
				tab[k] = c
			} else {
				tab[k] = math.NaN()
			}
		}
		if tabs == nil {
			tabs = make([][]float64, nf)
		}
		tabs[j] = tab
	}
	return tabs
}
