package onnx

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/predictd/predictd/engine"
)

// BatchStats counts the batcher's work since Load; all zero without batching.
type BatchStats struct {
	Requests  uint64 // calls that went through the queue
	Batches   uint64 // runs of merged calls
	Rows      uint64 // rows in those runs
	QueueFull uint64 // calls refused with ErrQueueFull
}

// BatchStats returns the batcher's counters. Safe for concurrent use.
func (m *Model) BatchStats() BatchStats {
	if m.batch == nil {
		return BatchStats{}
	}
	b := m.batch
	return BatchStats{
		Requests:  b.requests.Load(),
		Batches:   b.batches.Load(),
		Rows:      b.rows.Load(),
		QueueFull: b.full.Load(),
	}
}

// Request states: the caller and the runner race to move a request out of queued. A
// request stays queued while the runner gathers a batch around it (up to MaxQueueDelay),
// so a caller whose deadline passes during that wait leaves at once; the runner claims
// the gathered requests (queued → taken) only just before the run.
const (
	stateQueued    int32 = iota
	stateTaken           // the runner owns the rows until it signals done
	stateCancelled       // the caller's context ended first; the runner drops the request
)

// request is one waiting Predict call. The caller blocks on done while the runner reads
// its rows and writes its out, so both slices stay valid without copying.
type request struct {
	f32      []float32
	f64      []float64
	nrows    int
	out      []float64
	off      int // first row in the batch
	enqueued time.Time
	state    atomic.Int32
	err      error
	done     chan struct{} // capacity 1: the runner never blocks on a caller
}

func (r *request) finish(err error) {
	r.err = err
	r.done <- struct{}{}
}

// batcher merges concurrent calls: one runner goroutine takes the first waiting request,
// gathers more until MaxBatch rows or MaxQueueDelayUs after the first one arrived, and runs
// them as one batch. One batch runs at a time per model; calls of MaxBatch rows or more
// bypass the queue.
type batcher struct {
	m        *Model
	maxBatch int
	delay    time.Duration
	queue    chan *request
	stop     chan struct{}
	stopped  chan struct{}
	reqs     sync.Pool // *request; holds only Go memory, so sync.Pool is fine here

	// beforeRun, when set (by tests, before the first call), runs before each batch runs.
	beforeRun func(batch []*request)

	requests, batches, rows, full atomic.Uint64
}

func newBatcher(m *Model, cfg BatchingConfig) *batcher {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = defaultMaxBatch
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = defaultQueueSize
	}
	b := &batcher{
		m:        m,
		maxBatch: cfg.MaxBatch,
		delay:    time.Duration(cfg.MaxQueueDelayUs) * time.Microsecond,
		queue:    make(chan *request, cfg.QueueSize),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	b.reqs.New = func() any { return &request{done: make(chan struct{}, 1)} }
	go b.loop()
	return b
}

// submit queues a call and waits for its result. Exactly one of f32, f64 is non-nil.
func (b *batcher) submit(ctx context.Context, f32 []float32, f64 []float64, nrows int, out []float64) error {
	r := b.reqs.Get().(*request)
	r.f32, r.f64, r.nrows, r.out, r.err = f32, f64, nrows, out, nil
	r.state.Store(stateQueued)
	r.enqueued = time.Now()
	select {
	case b.queue <- r:
	default:
		b.full.Add(1)
		b.recycle(r)
		return fmt.Errorf("%w: %d calls already wait for %s; raise onnx.batching.queue_size, or max_batch so each run takes more of them",
			ErrQueueFull, cap(b.queue), b.m.path)
	}
	b.requests.Add(1)
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(stateQueued, stateCancelled) {
			return ctx.Err() // the runner will drop r; it is not recycled
		}
		<-r.done // already taken: the rows are in use until the run ends
	}
	err := r.err
	b.recycle(r)
	return err
}

func (b *batcher) recycle(r *request) {
	r.f32, r.f64, r.out, r.err = nil, nil, nil, nil
	b.reqs.Put(r)
}

// next receives a request, skipping cancelled ones; the request stays queued (the caller
// may still cancel it) until claim. block: wait for one (or stop); else return nil when
// none is queued. timeout, when non-nil, ends the wait.
func (b *batcher) next(block bool, timeout <-chan time.Time) (*request, bool) {
	for {
		var r *request
		if block {
			select {
			case r = <-b.queue:
			case <-timeout:
				return nil, true
			case <-b.stop:
				return nil, false
			}
		} else {
			select {
			case r = <-b.queue:
			default:
				return nil, true
			}
		}
		if r.state.Load() == stateQueued {
			return r, true
		}
	}
}

// claim takes ownership of the gathered requests that were not cancelled meanwhile and
// returns them with their row count; cancelled ones are dropped (their callers left).
func claim(batch []*request) ([]*request, int) {
	kept, rows := batch[:0], 0
	for _, r := range batch {
		if r.state.CompareAndSwap(stateQueued, stateTaken) {
			kept = append(kept, r)
			rows += r.nrows
		}
	}
	clear(batch[len(kept):])
	return kept, rows
}

func (b *batcher) loop() {
	defer close(b.stopped)
	var (
		batch []*request
		carry *request // taken, but did not fit in the previous batch
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = b.next(true, nil); !ok {
				b.drain()
				return
			}
		}
		batch = append(batch[:0], first)
		rows := first.nrows
		// Wait until MaxQueueDelay after the first request arrived; it may have waited
		// already while the previous batch ran.
		wait := b.delay - time.Since(first.enqueued)
		var timeout <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			timeout = timer.C
		}
		for rows < b.maxBatch {
			// On stop, next returns nil: run what we have; the next receive drains.
			r, _ := b.next(timeout != nil, timeout)
			if r == nil {
				break
			}
			if rows+r.nrows > b.maxBatch {
				carry = r
				break
			}
			batch = append(batch, r)
			rows += r.nrows
		}
		timer.Stop()
		if batch, rows = claim(batch); len(batch) > 0 {
			b.run(batch, rows)
		}
		clear(batch)
	}
}

// drain fails the calls still queued at Close.
func (b *batcher) drain() {
	for {
		r, _ := b.next(false, nil)
		if r == nil {
			return
		}
		if r.state.CompareAndSwap(stateQueued, stateTaken) {
			r.finish(engine.ErrClosed)
		}
	}
}

// parallelFillValues is the batch size (rows × features) from which rows are copied into
// the arena on several goroutines: below it the copy takes less than about 50 µs, too
// little to be worth starting goroutines.
const parallelFillValues = 1 << 16

// run copies the requests into one arena, runs it and hands each caller its rows.
func (b *batcher) run(batch []*request, rows int) {
	m := b.m
	if b.beforeRun != nil {
		b.beforeRun(batch)
	}
	a := m.arenas.get()
	defer m.arenas.put(a)
	runRows := rows
	if m.batchDim > 0 {
		runRows = int(m.batchDim) // rows <= max_batch <= the fixed size; the rest is padding
	}
	if err := a.prepare(runRows); err != nil {
		for _, r := range batch {
			r.finish(err)
		}
		return
	}
	off := 0
	for _, r := range batch {
		r.off = off
		off += r.nrows
	}
	errs := b.fillAll(a, batch, rows)
	if runRows > rows {
		zeroRows(a, rows, runRows-rows)
	}
	// A request with a bad value fails alone; the others run. Its rows stay in the batch
	// (zeroed) and their outputs are ignored.
	err := m.run(a, runRows)
	// Counted before any caller is answered, so a caller that reads BatchStats after its
	// call returns sees its own run.
	b.batches.Add(1)
	b.rows.Add(uint64(rows))
	for i, r := range batch {
		switch {
		case errs != nil && errs[i] != nil:
			r.finish(errs[i])
		case err != nil && len(batch) > 1:
			// One caller's rows may have failed the whole run (an id past the end of an
			// embedding table fails the Gather): run each alone, so only it fails.
			if r.f32 != nil {
				r.finish(predictCopy(m, r.f32, r.nrows, r.out))
			} else {
				r.finish(predictCopy(m, r.f64, r.nrows, r.out))
			}
		case err != nil:
			r.finish(err)
		default:
			m.copyOut(a, r.off, r.nrows, r.out)
			r.finish(nil)
		}
	}
}

// fillAll copies every request into a; it returns nil when all succeeded, else one error
// per request. A failed request's rows are zeroed so the run stays valid.
func (b *batcher) fillAll(a *arena, batch []*request, rows int) []error {
	workers := min(runtime.GOMAXPROCS(0), len(batch))
	var errs []error
	if workers <= 1 || rows*len(b.m.features) < parallelFillValues {
		for i, r := range batch {
			if err := b.fillOne(a, r); err != nil {
				if errs == nil {
					errs = make([]error, len(batch))
				}
				errs[i] = err
			}
		}
		return errs
	}
	all := make([]error, len(batch))
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
		nextI  atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(nextI.Add(1) - 1)
				if i >= len(batch) {
					return
				}
				if all[i] = b.fillOne(a, batch[i]); all[i] != nil {
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		return all
	}
	return nil
}

func (b *batcher) fillOne(a *arena, r *request) error {
	var err error
	if r.f32 != nil {
		err = fill(b.m, a, r.off, r.f32, r.nrows, 0)
	} else {
		err = fill(b.m, a, r.off, r.f64, r.nrows, 0)
	}
	if err != nil {
		zeroRows(a, r.off, r.nrows)
	}
	return err
}

// zeroRows clears rows [off, off+n) of every input, so a request that failed half-way
// leaves valid ids (0) in the batch.
func zeroRows(a *arena, off, n int) {
	for i := range a.in {
		a.in[i].zero(off, n)
	}
}

func (b *batcher) close() {
	close(b.stop)
	<-b.stopped
}
