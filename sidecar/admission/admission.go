// Package admission keeps one busy model from starving the others and rejects work
// before the process saturates.
//
// Every model gets a bulkhead: a channel semaphore with a share of the process's
// Capacity proportional to the model's weight. Acquire takes a slot without waiting when
// one is free; otherwise it waits in the model's bounded queue for at most MaxQueueWait
// (or the request's deadline, if sooner), then gives up with an *OverloadedError that
// says when to retry and which setting to raise. A model never holds more slots than its
// share, busy neighbours or not: a flood on one model queues and is rejected within its
// own bulkhead while the others keep their slots (the design of VictoriaMetrics'
// lib/writeconcurrencylimiter, per model).
//
// Behind the bulkheads, process-wide admission control counts every admitted and waiting
// request; past MaxPending it rejects at once, so the process answers quickly with 503
// instead of queueing until every client times out. A request counts only once its
// bulkhead gave it a slot or a queue place: what a full bulkhead rejects (429) never
// reaches the process-wide count, so a flood on one model cannot push the others' requests
// over MaxPending.
package admission

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Config configures a Limiter. Field comments give the defaults.
type Config struct {
	// Capacity is the number of requests scored at once, shared by all models in
	// proportion to their weights; default 2×GOMAXPROCS is a good start for CPU-bound
	// tree models (set by the caller: this package does not read GOMAXPROCS).
	Capacity int
	// MaxQueueWait is the longest a request waits for its model's slot; default 100ms.
	MaxQueueWait time.Duration
	// QueuePerSlot bounds each model's queue at QueuePerSlot × its slots; default 4.
	// A request that finds the queue full is rejected at once.
	QueuePerSlot int
	// MaxPending is the process-wide bound on admitted plus waiting requests; past it
	// requests are rejected at once with 503. Default Capacity × (1 + QueuePerSlot),
	// 5×Capacity with the default queue: every model's slots and queue places, so one
	// flooded model fills only its own bulkhead and never the process-wide bound that the
	// other models need. A smaller bound lets a flood on one model get the others 503s.
	MaxPending int
	// RetryAfter is the hint returned with a rejection; default 1s. HTTP Retry-After is
	// whole seconds, so it is rounded up.
	RetryAfter time.Duration
	// Meter records the Limiter's metrics; nil means no metrics.
	Meter metric.Meter
}

// Setting names used in rejection messages: the serve flags and model.yaml key that set
// Config.Capacity, MaxQueueWait, MaxPending and a model's weight.
const (
	settingCapacity   = "--admission-capacity"
	settingWeight     = "the model's weight (model.yaml)"
	settingQueueWait  = "--admission-max-queue-wait"
	settingMaxPending = "--admission-max-pending"
)

// OverloadedError is a rejection: the request was not admitted and may be retried.
type OverloadedError struct {
	Model string
	// Status is the HTTP status to answer: 429 when the model used its whole share,
	// 503 when the process as a whole is saturated.
	Status int
	// RetryAfter is how long the client should wait before retrying.
	RetryAfter time.Duration
	// Reason says what ran out; Setting names the configuration to raise.
	Reason, Setting string
}

func (e *OverloadedError) Error() string {
	return fmt.Sprintf("model %q overloaded: %s; retry after %s, or raise %s", e.Model, e.Reason, e.RetryAfter, e.Setting)
}

// Is makes errors.Is(err, ErrOverloaded) true for every *OverloadedError.
func (e *OverloadedError) Is(target error) bool { return target == ErrOverloaded }

// RetryAfterHeader is the Retry-After header value in whole seconds, at least 1.
func (e *OverloadedError) RetryAfterHeader() string {
	return strconv.Itoa(max(1, int(math.Ceil(e.RetryAfter.Seconds()))))
}

// ErrOverloaded matches every *OverloadedError with errors.Is.
var ErrOverloaded = errors.New("overloaded")

// Limiter holds the bulkheads of all models. It is safe for concurrent use.
type Limiter struct {
	cfg     Config
	pending atomic.Int64
	rejects atomic.Uint64 // process-wide rejections (MaxPending)

	mu    sync.Mutex                           // serializes SetWeights
	heads atomic.Pointer[map[string]*Bulkhead] // replaced whole by SetWeights
	reg   metric.Registration
}

// New checks cfg and returns a Limiter without models; call SetWeights.
func New(cfg Config) (*Limiter, error) {
	if cfg.Capacity <= 0 {
		return nil, fmt.Errorf("admission: capacity %d must be positive", cfg.Capacity)
	}
	if cfg.MaxQueueWait < 0 || cfg.QueuePerSlot < 0 || cfg.MaxPending < 0 || cfg.RetryAfter < 0 {
		return nil, errors.New("admission: durations and sizes must not be negative")
	}
	if cfg.MaxQueueWait == 0 {
		cfg.MaxQueueWait = 100 * time.Millisecond
	}
	if cfg.QueuePerSlot == 0 {
		cfg.QueuePerSlot = 4
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = cfg.Capacity * (1 + cfg.QueuePerSlot)
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	l := &Limiter{cfg: cfg}
	empty := map[string]*Bulkhead{}
	l.heads.Store(&empty)
	if err := l.registerMetrics(cfg.Meter); err != nil {
		return nil, err
	}
	return l, nil
}

// SetWeights sets the models and their weights (positive) and divides Capacity among
// them: model i gets max(1, round(Capacity × wᵢ / Σw)) slots. Models whose share is
// unchanged keep their bulkhead and counters; a changed share gets a new bulkhead, and
// requests still holding the old one release into it, so for a moment the model may hold
// old plus new slots.
func (l *Limiter) SetWeights(weights map[string]float64) error {
	var total float64
	for m, w := range weights {
		if !(w > 0) || math.IsInf(w, 1) {
			return fmt.Errorf("admission: model %q has weight %v; weights must be positive", m, w)
		}
		total += w
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.heads.Load()
	next := make(map[string]*Bulkhead, len(weights))
	for m, w := range weights {
		slots := max(1, int(math.Round(float64(l.cfg.Capacity)*w/total)))
		if b := old[m]; b != nil && cap(b.sem) == slots {
			b.weight.Store(math.Float64bits(w)) // Stats reads it without l.mu
			next[m] = b
			continue
		}
		b := &Bulkhead{
			l:        l,
			model:    m,
			sem:      make(chan struct{}, slots),
			maxQueue: int64(slots * l.cfg.QueuePerSlot),
		}
		b.weight.Store(math.Float64bits(w))
		next[m] = b
	}
	l.heads.Store(&next)
	return nil
}

// Bulkhead returns the model's bulkhead, or nil for a model SetWeights did not name.
func (l *Limiter) Bulkhead(model string) *Bulkhead { return (*l.heads.Load())[model] }

// BulkheadBytes is Bulkhead for a name still in a request's bytes; it does not allocate.
func (l *Limiter) BulkheadBytes(model []byte) *Bulkhead { return (*l.heads.Load())[string(model)] }

// Acquire is Bulkhead(model).Acquire(ctx); an unknown model is an error.
func (l *Limiter) Acquire(ctx context.Context, model string) (*Bulkhead, error) {
	b := l.Bulkhead(model)
	if b == nil {
		return nil, fmt.Errorf("admission: model %q has no bulkhead; it must be loaded before it is served", model)
	}
	return b, b.Acquire(ctx)
}

// Bulkhead is one model's share of the Limiter's capacity.
type Bulkhead struct {
	l        *Limiter
	model    string
	weight   atomic.Uint64 // math.Float64bits of the weight; SetWeights may change it
	sem      chan struct{}
	maxQueue int64
	queued   atomic.Int64

	admitted, limitReached, rejected, timeouts, canceled atomic.Uint64
}

// Acquire takes a slot, waiting at most MaxQueueWait or until ctx is done. On success the
// caller must call Release exactly once. It fails with an *OverloadedError when the
// process is saturated, the model's queue is full or the wait ran out, and with ctx's
// error (wrapped) when ctx ended first; a request whose deadline has already passed is
// never admitted.
func (b *Bulkhead) Acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		b.canceled.Add(1)
		return fmt.Errorf("model %q: %w", b.model, context.Cause(ctx))
	}
	l := b.l
	// The model's own bulkhead is asked first, and a request counts towards MaxPending
	// only once it holds a slot or a queue place: a flood that its bulkhead rejects
	// never touches the process-wide count, so it cannot push the other models' requests
	// over MaxPending (each bulkhead holds at most its slots plus its queue).
	//
	// Fast path: a free slot, no timer, no allocation.
	select {
	case b.sem <- struct{}{}:
		if l.pending.Add(1) > int64(l.cfg.MaxPending) {
			<-b.sem
			return b.saturated()
		}
		b.admitted.Add(1)
		return nil
	default:
	}
	b.limitReached.Add(1)
	if b.queued.Add(1) > b.maxQueue {
		b.queued.Add(-1)
		b.rejected.Add(1)
		return b.overloaded(http.StatusTooManyRequests,
			fmt.Sprintf("all %d slots busy and %d requests queued", cap(b.sem), b.maxQueue), settingWeight+" or "+settingCapacity)
	}
	defer b.queued.Add(-1)
	if l.pending.Add(1) > int64(l.cfg.MaxPending) {
		return b.saturated()
	}
	// A request whose deadline comes before MaxQueueWait gives up at its deadline.
	wait := l.cfg.MaxQueueWait
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case b.sem <- struct{}{}:
		b.admitted.Add(1)
		return nil
	case <-ctx.Done():
		l.pending.Add(-1)
		b.canceled.Add(1)
		return fmt.Errorf("model %q: waiting for a slot: %w", b.model, context.Cause(ctx))
	case <-t.C:
		l.pending.Add(-1)
		b.timeouts.Add(1)
		return b.overloaded(http.StatusTooManyRequests,
			fmt.Sprintf("no slot free within %s (%d slots)", wait, cap(b.sem)), settingQueueWait+", "+settingWeight+" or "+settingCapacity)
	}
}

// saturated undoes the caller's pending.Add(1) and rejects with 503: the process holds
// MaxPending admitted or waiting requests.
func (b *Bulkhead) saturated() error {
	l := b.l
	l.pending.Add(-1)
	l.rejects.Add(1)
	return b.overloaded(http.StatusServiceUnavailable,
		fmt.Sprintf("%d requests admitted or waiting in the process", l.cfg.MaxPending), settingMaxPending+" or "+settingCapacity)
}

func (b *Bulkhead) overloaded(status int, reason, setting string) error {
	return &OverloadedError{Model: b.model, Status: status, RetryAfter: b.l.cfg.RetryAfter, Reason: reason, Setting: setting}
}

// Model returns the name of the model the bulkhead belongs to.
func (b *Bulkhead) Model() string { return b.model }

// Release returns the slot taken by a successful Acquire.
func (b *Bulkhead) Release() {
	select {
	case <-b.sem:
		b.l.pending.Add(-1)
	default:
		panic("BUG: admission: Release without a matching Acquire")
	}
}

// Stats are a bulkhead's counters, shaped for /v1/models.
type Stats struct {
	Model        string  `json:"model"`
	Weight       float64 `json:"weight"`
	Slots        int     `json:"slots"`
	InFlight     int     `json:"in_flight"`
	Queued       int64   `json:"queued"`
	Admitted     uint64  `json:"admitted"`
	LimitReached uint64  `json:"limit_reached"` // requests that found every slot busy and queued
	Rejected     uint64  `json:"rejected"`      // queue full: rejected at once (429)
	Timeouts     uint64  `json:"timeouts"`      // waited MaxQueueWait in vain (429)
	Canceled     uint64  `json:"canceled"`      // the request's context ended while waiting
}

// Stats returns the bulkhead's counters.
func (b *Bulkhead) Stats() Stats {
	return Stats{
		Model: b.model, Weight: math.Float64frombits(b.weight.Load()), Slots: cap(b.sem), InFlight: len(b.sem), Queued: b.queued.Load(),
		Admitted: b.admitted.Load(), LimitReached: b.limitReached.Load(), Rejected: b.rejected.Load(),
		Timeouts: b.timeouts.Load(), Canceled: b.canceled.Load(),
	}
}

// Stats returns every bulkhead's counters, sorted by model, and the number of
// process-wide (503) rejections.
func (l *Limiter) Stats() ([]Stats, uint64) {
	heads := *l.heads.Load()
	out := make([]Stats, 0, len(heads))
	for _, b := range heads {
		out = append(out, b.Stats())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out, l.rejects.Load()
}

func (l *Limiter) registerMetrics(m metric.Meter) error {
	if m == nil {
		m = noop.Meter{}
	}
	inflight, err1 := m.Int64ObservableGauge("predictd.admission.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Requests holding a model's slot."))
	queued, err2 := m.Int64ObservableGauge("predictd.admission.queued", metric.WithUnit("{request}"),
		metric.WithDescription("Requests waiting for a model's slot."))
	limit, err3 := m.Int64ObservableCounter("predictd.admission.limit_reached", metric.WithUnit("{request}"),
		metric.WithDescription("Requests that found all of a model's slots busy."))
	rejected, err4 := m.Int64ObservableCounter("predictd.admission.rejected", metric.WithUnit("{request}"),
		metric.WithDescription("Requests rejected; reason=queue_full or timeout (429), saturated (503)."))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("admission: metrics: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		stats, saturated := l.Stats()
		for _, s := range stats {
			model := attribute.String("model", s.Model)
			o.ObserveInt64(inflight, int64(s.InFlight), metric.WithAttributes(model))
			o.ObserveInt64(queued, s.Queued, metric.WithAttributes(model))
			o.ObserveInt64(limit, int64(s.LimitReached), metric.WithAttributes(model))
			o.ObserveInt64(rejected, int64(s.Rejected), metric.WithAttributes(model, attribute.String("reason", "queue_full")))
			o.ObserveInt64(rejected, int64(s.Timeouts), metric.WithAttributes(model, attribute.String("reason", "timeout")))
		}
		o.ObserveInt64(rejected, int64(saturated), metric.WithAttributes(attribute.String("reason", "saturated")))
		return nil
	}, inflight, queued, limit, rejected)
	if err != nil {
		return fmt.Errorf("admission: metrics: %w", err)
	}
	l.reg = reg
	return nil
}

// Close unregisters the Limiter's metrics.
func (l *Limiter) Close() {
	if l.reg != nil {
		l.reg.Unregister()
	}
}
