package loadtest

// The open-loop schedule (docs/loadtest.md, "How it measures"): a phase is one stretch of
// load; per workload a scheduler fires each request at its intended time, whether or not
// earlier ones have answered, and a monitor samples the sidecar at window boundaries.

import (
	"context"
	"math"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// phase is one continuous stretch of scheduled load: a step, a ramp or a search trial.
type phase struct {
	r            *runner
	name         string
	start        time.Time // schedule start
	measureStart time.Time // start + warmup
	window       time.Duration
	nWin         int
	wls          []*phaseWL
	// wlsB are side B's measurements in an interleaved run (runner.targetB), one per
	// workload, each the twin of the wls entry at its index; nil otherwise.
	wlsB []*phaseWL

	// Sidecar samples at window boundaries (index k is measureStart + k*window); cpuAtB
	// and rssAtB are side B's sidecar's.
	cpuAt, cpuAtB []float64
	rssAt, rssAtB []int64
	// missAt is the sidecar's store-miss total at each boundary; missOK says it was read.
	missAt, missAtB []float64
	missOK, missOKB []bool
	// profileAt, if non-zero, is when to start the CPU profile.
	profileAt   time.Time
	profileSecs int
	profileDone chan struct{}

	stopOnce sync.Once
	stop     chan struct{}
	stopAt   time.Time // when stop was called (early stop or cancel); zero if none
	keep     int       // windows to report after an early stop by check; 0 if none
	wg       sync.WaitGroup
}

// phaseWL is one workload's measurements within a phase.
type phaseWL struct {
	w    *workload
	rate func(el time.Duration) float64 // rate at elapsed time since phase start
	// workers, if above zero, runs the workload closed-loop instead: that many senders,
	// each sending its next request when the last one answered.
	workers int
	// twin is side B's phaseWL of this workload in an interleaved run (on side A's; nil
	// otherwise): the schedule runs at twice rate and sends every other request to it.
	// b marks side B's, whose requests go to runner.targetB.
	twin *phaseWL
	b    bool

	mu   sync.Mutex
	win  []*winStats // by intended-time window
	lag  *hdrhistogram.Histogram
	late int64
	// by completion / send time window
	compl  []atomic.Int64
	sent   []atomic.Int64
	predOK []atomic.Int64
	waits  atomic.Int64
}

type winStats struct {
	hist      *hdrhistogram.Histogram
	ok        int64
	errs      map[string]int64
	degraded  int64
	late      int64
	scheduled atomic.Int64
	done      atomic.Int64
}

func (r *runner) newPhase(name string, warmup, measured time.Duration) *phase {
	n := int(math.Ceil(float64(measured) / float64(r.sc.Window.D())))
	if n < 1 {
		n = 1
	}
	ph := &phase{r: r, name: name, window: r.sc.Window.D(), nWin: n, stop: make(chan struct{})}
	ph.start = time.Now().Add(5 * time.Millisecond) // schedulers start together
	ph.measureStart = ph.start.Add(warmup)
	ph.cpuAt = make([]float64, n+1)
	ph.rssAt = make([]int64, n+1)
	ph.missAt = make([]float64, n+1)
	ph.missOK = make([]bool, n+1)
	newWL := func(w *workload) *phaseWL {
		pw := &phaseWL{w: w, win: make([]*winStats, n), lag: newHist(),
			compl: make([]atomic.Int64, n), sent: make([]atomic.Int64, n), predOK: make([]atomic.Int64, n)}
		for i := range pw.win {
			pw.win[i] = &winStats{hist: newHist(), errs: map[string]int64{}}
		}
		return pw
	}
	for _, w := range r.wls {
		pw := newWL(w)
		ph.wls = append(ph.wls, pw)
		if r.targetB != nil {
			pw.twin = newWL(w)
			pw.twin.b = true
			ph.wlsB = append(ph.wlsB, pw.twin)
		}
	}
	if r.targetB != nil {
		ph.cpuAtB = make([]float64, n+1)
		ph.rssAtB = make([]int64, n+1)
		ph.missAtB = make([]float64, n+1)
		ph.missOKB = make([]bool, n+1)
	}
	return ph
}

// idx is the window holding t: -1 in the warmup, nWin past the end.
func (ph *phase) idx(t time.Time) int {
	d := t.Sub(ph.measureStart)
	if d < 0 {
		return -1
	}
	i := int(d / ph.window)
	if i > ph.nWin {
		i = ph.nWin
	}
	return i
}

// halt cuts the phase short (an early stop or an interrupt); stopAt records when.
func (ph *phase) halt() {
	ph.stopOnce.Do(func() {
		ph.stopAt = time.Now()
		close(ph.stop)
	})
}

// finish ends a phase that ran its full length.
func (ph *phase) finish() {
	ph.stopOnce.Do(func() { close(ph.stop) })
}

// run schedules the phase for its warmup plus nWin whole windows and waits until every
// request has finished. check, if not nil, is called after each complete window with the
// count of complete windows and stops the phase when it returns true.
func (ph *phase) run(ctx context.Context, check func(complete int) bool) {
	end := ph.measureStart.Add(time.Duration(ph.nWin) * ph.window)
	dur := end.Sub(ph.start)
	var sched sync.WaitGroup
	for _, pw := range ph.wls {
		sched.Add(1)
		go func() {
			defer sched.Done()
			if pw.workers > 0 {
				ph.closedLoop(ctx, pw, dur)
				return
			}
			ph.schedule(ctx, pw, dur)
		}()
	}
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		ph.monitor(ctx, check)
	}()
	sched.Wait()
	// Hold the phase to its full length, so the last window and its sidecar sample are
	// whole even when the last arrival came early.
	if d := time.Until(end); d > 0 {
		select {
		case <-time.After(d):
		case <-ph.stop:
		case <-ctx.Done():
			ph.halt()
		}
	}
	ph.wg.Wait()
	if ctx.Err() != nil {
		ph.halt()
	}
	ph.finish()
	<-monDone
	if ph.profileDone != nil {
		<-ph.profileDone
	}
}

// schedule fires pw's requests at their intended times: an open loop, so a slow answer
// never delays the next send. Latency is measured from the intended time. With a twin
// (an interleaved run) it runs at twice pw's rate and sends the requests to pw and its
// twin in turn, so the two get the same number of requests in every window: a random
// split would leave them ±1/√n apart (±10% over 100 requests). Under Poisson arrivals
// each side's gaps are then Erlang-2 (two exponential gaps of the doubled rate), less
// bursty than Poisson at the scenario's rate, alike for both sides. Each side is sent
// the bodies in the same order and has its own in-flight cap; while the loop waits for
// one side's cap, the other side's next sends wait too (late sends, counted as such).
func (ph *phase) schedule(ctx context.Context, pw *phaseWL, dur time.Duration) {
	r := ph.r
	rng := rand.New(rand.NewSource(pw.w.spec.Seed*7919 + r.seq.Add(1)))
	poisson := r.sc.Arrival == "poisson"
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rateOf := pw.rate
	if pw.twin != nil {
		rateOf = func(el time.Duration) float64 { return 2 * pw.rate(el) }
	}
	var el time.Duration
	gaps := pw.w.gaps
	if poisson && gaps == nil {
		if rate := rateOf(0); rate > 0 {
			el = time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		}
	}
	bodies := pw.w.bodies
	var nth [2]int // requests sent to each side so far: the index of its next body
	for i := 0; el < dur; i++ {
		rate := rateOf(el)
		if rate <= 0 {
			// Nothing to send now (a ramp from zero): look again shortly.
			el += time.Millisecond
			i--
			continue
		}
		intended := ph.start.Add(el)
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
		}
		q, side := pw, 0
		if pw.twin != nil && i%2 == 1 {
			q, side = pw.twin, 1
		}
		sem := r.sem
		if q.b {
			sem = r.semB
		}
		select {
		case sem <- struct{}{}:
		default:
			q.waits.Add(1)
			select {
			case sem <- struct{}{}:
			case <-ph.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		wi := ph.idx(intended)
		if wi >= 0 && wi < ph.nWin {
			q.win[wi].scheduled.Add(1)
		}
		body := bodies[nth[side]%len(bodies)]
		nth[side]++
		ph.wg.Add(1)
		r.inFlight.Add(1)
		go ph.send(q, intended, wi, body)
		gap := 1 / rate
		switch {
		case gaps != nil:
			// The recorded gap, scaled so the recorded mean rate becomes this rate.
			gap = gaps[i%len(gaps)] * pw.w.gapRate / rate
		case poisson:
			gap = rng.ExpFloat64() / rate
		}
		el += time.Duration(gap * float64(time.Second))
	}
}

// closedLoop runs pw.workers senders until dur has passed: each takes the next body and
// sends it as soon as its last request answered. The intended time is the send time.
func (ph *phase) closedLoop(ctx context.Context, pw *phaseWL, dur time.Duration) {
	r := ph.r
	end := ph.start.Add(dur)
	bodies := pw.w.bodies
	var next atomic.Int64
	var wg sync.WaitGroup
	for range pw.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := time.Until(ph.start); d > 0 {
				select {
				case <-time.After(d):
				case <-ph.stop:
					return
				case <-ctx.Done():
					return
				}
			}
			for {
				select {
				case <-ph.stop:
					return
				case <-ctx.Done():
					return
				case r.sem <- struct{}{}:
				}
				now := time.Now()
				if !now.Before(end) {
					<-r.sem
					return
				}
				wi := ph.idx(now)
				if wi >= 0 && wi < ph.nWin {
					pw.win[wi].scheduled.Add(1)
				}
				ph.wg.Add(1)
				r.inFlight.Add(1)
				ph.send(pw, now, wi, bodies[int(next.Add(1)-1)%len(bodies)])
			}
		}()
	}
	wg.Wait()
}

func (ph *phase) send(pw *phaseWL, intended time.Time, wi int, body Body) {
	r := ph.r
	t, sem := r.target, r.sem
	if pw.b {
		t, sem = r.targetB, r.semB
	}
	defer func() {
		<-sem
		r.inFlight.Add(-1)
		ph.wg.Done()
	}()
	sendAt := time.Now()
	out := t.predict(body.Data, pw.w.contentType, r.sc.Timeout.D())
	end := time.Now()
	lag := sendAt.Sub(intended)
	// Forgive up to LateThreshold of send lag: that much is the timer's own granularity
	// (an idle Go process wakes up to ~1ms late), not the server's doing. Larger lags
	// (the generator fell behind, or waited for max_in_flight) count in full beyond it.
	lat := end.Sub(intended) - min(max(lag, 0), LateThreshold)
	if si := ph.idx(sendAt); si >= 0 && si < ph.nWin {
		pw.sent[si].Add(1)
	}
	if ci := ph.idx(end); ci >= 0 && ci < ph.nWin {
		pw.compl[ci].Add(1)
		if out.kind == "" {
			pw.predOK[ci].Add(int64(body.Candidates))
		}
	}
	if wi < 0 || wi >= ph.nWin {
		return // warmup
	}
	ws := pw.win[wi]
	pw.mu.Lock()
	_ = ws.hist.RecordValue(max(lat.Microseconds(), histMinUs))
	_ = pw.lag.RecordValue(max(lag.Microseconds(), histMinUs))
	if lag > LateThreshold {
		ws.late++
	}
	if out.kind == "" {
		ws.ok++
		if out.degraded {
			ws.degraded++
		}
	} else {
		ws.errs[out.kind]++
	}
	pw.mu.Unlock()
	ws.done.Add(1)
}

// monitor samples the sidecar at window boundaries, prints progress, starts the CPU
// profile when due, and runs check on complete windows.
func (ph *phase) monitor(ctx context.Context, check func(int) bool) {
	r := ph.r
	sample := func(k int) {
		if r.pid != 0 {
			if s, err := ReadProc(r.pid); err == nil {
				ph.cpuAt[k] = s.CPUSeconds
				ph.rssAt[k] = s.RSSBytes
			}
		}
		if r.pidB != 0 {
			if s, err := ReadProc(r.pidB); err == nil {
				ph.cpuAtB[k] = s.CPUSeconds
				ph.rssAtB[k] = s.RSSBytes
			}
		}
		if r.metrics {
			ph.missAt[k], ph.missOK[k] = storeMisses(r.target)
		}
		if r.metricsB {
			ph.missAtB[k], ph.missOKB[k] = storeMisses(r.targetB)
		}
	}
	next := 0 // next boundary to sample
	complete := 0
	sides := append(ph.wls[:len(ph.wls):len(ph.wls)], ph.wlsB...) // both sides' workloads
	lastProgress := time.Time{}
	for {
		now := time.Now()
		for next <= ph.nWin && !now.Before(ph.measureStart.Add(time.Duration(next)*ph.window)) {
			sample(next)
			next++
		}
		if !ph.profileAt.IsZero() && !now.Before(ph.profileAt) && ph.profileDone == nil {
			ph.profileDone = make(chan struct{})
			go func() {
				defer close(ph.profileDone)
				r.takeProfile(ctx, ph.profileSecs)
			}()
		}
		// A window is complete when its time is over and all its requests answered.
		for complete < ph.nWin && complete < next-1 {
			c := 0
			for _, pw := range sides {
				if pw.win[complete].done.Load() != pw.win[complete].scheduled.Load() {
					c = 1
				}
			}
			if c != 0 {
				break
			}
			complete++
			if check != nil && ph.keep == 0 && check(complete) {
				ph.keep = complete
				ph.halt()
			}
		}
		if now.Sub(lastProgress) >= time.Second {
			lastProgress = now
			r.progress(ph)
		}
		select {
		case <-ph.stop:
			// Sample the boundary reached so far for a cut-short phase.
			if next <= ph.nWin {
				sample(next)
			}
			return
		case <-ctx.Done():
			ph.halt()
		default:
		}
		wait := 100 * time.Millisecond
		if next <= ph.nWin {
			if d := time.Until(ph.measureStart.Add(time.Duration(next) * ph.window)); d < wait {
				wait = max(d, 0)
			}
		}
		select {
		case <-time.After(wait):
		case <-ph.stop:
		case <-ctx.Done():
		}
	}
}
