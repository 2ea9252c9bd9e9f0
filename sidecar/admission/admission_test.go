package admission

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newLimiter(t testing.TB, cfg Config, weights map[string]float64) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetWeights(weights); err != nil {
		t.Fatal(err)
	}
	return l
}

func overloaded(t *testing.T, err error, status int, setting string) *OverloadedError {
	t.Helper()
	var oe *OverloadedError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOverloaded) {
		t.Fatalf("err = %v, want *OverloadedError", err)
	}
	if oe.Status != status || !strings.Contains(oe.Error(), setting) {
		t.Fatalf("err = %v (status %d), want status %d naming %q", err, oe.Status, status, setting)
	}
	return oe
}

func TestShares(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 10}, map[string]float64{"a": 3, "b": 1, "c": 1, "tiny": 0.01})
	f := func(model string, slots int) {
		t.Helper()
		if got := l.Bulkhead(model).Stats().Slots; got != slots {
			t.Fatalf("%s: %d slots, want %d", model, got, slots)
		}
	}
	// Σw = 5.01: a = round(10·3/5.01) = 6, b = c = round(1.996) = 2, tiny gets the floor of 1.
	f("a", 6)
	f("b", 2)
	f("c", 2)
	f("tiny", 1)
	if err := l.SetWeights(map[string]float64{"a": 0}); err == nil {
		t.Fatal("zero weight accepted")
	}
	if _, err := l.Acquire(context.Background(), "unknown"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestFastPathThenQueue(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 2, MaxQueueWait: time.Minute}, map[string]float64{"m": 1})
	b := l.Bulkhead("m")
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan error)
	go func() { got <- b.Acquire(ctx) }()
	// The third request waits for a slot; a Release hands it one.
	for b.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	b.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	b.Release()
	b.Release()
	st := b.Stats()
	if st.Admitted != 3 || st.LimitReached != 1 || st.InFlight != 0 || st.Queued != 0 {
		t.Fatalf("%+v", st)
	}
	if p := l.pending.Load(); p != 0 {
		t.Fatalf("%d pending after every release", p)
	}
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 1, QueuePerSlot: 1, MaxQueueWait: time.Minute, MaxPending: 100, RetryAfter: 1500 * time.Millisecond},
		map[string]float64{"m": 1})
	b := l.Bulkhead("m")
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error)
	go func() { waiter <- b.Acquire(ctx) }()
	for b.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	// One slot held, one waiting: the queue of 1 is full, so this is rejected without
	// waiting the minute.
	oe := overloaded(t, b.Acquire(context.Background()), http.StatusTooManyRequests, "weight")
	if oe.RetryAfter != 1500*time.Millisecond || oe.RetryAfterHeader() != "2" || oe.Model != "m" {
		t.Fatalf("%+v, header %s", oe, oe.RetryAfterHeader())
	}
	cancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter: %v", err)
	}
	b.Release()
	st := b.Stats()
	if st.Rejected != 1 || st.Canceled != 1 || st.Admitted != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestQueueWaitTimesOut(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 1, MaxQueueWait: 5 * time.Millisecond}, map[string]float64{"m": 1})
	b := l.Bulkhead("m")
	if err := b.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	overloaded(t, b.Acquire(context.Background()), http.StatusTooManyRequests, "--admission-max-queue-wait")
	if st := b.Stats(); st.Timeouts != 1 {
		t.Fatalf("%+v", st)
	}
	b.Release()
}

func TestDeadlineHonored(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 1, MaxQueueWait: time.Minute}, map[string]float64{"m": 1})
	b := l.Bulkhead("m")
	if err := b.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	// The request's deadline ends the wait long before MaxQueueWait.
	if err := b.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	b.Release()
	// An expired request is not admitted even with a slot free.
	if err := b.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if st := b.Stats(); st.Canceled != 2 || st.InFlight != 0 || st.Admitted != 1 {
		t.Fatalf("%+v", st)
	}
	if p := l.pending.Load(); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

func TestProcessSaturation(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 4, MaxPending: 3}, map[string]float64{"a": 1, "b": 1})
	a, b := l.Bulkhead("a"), l.Bulkhead("b")
	ctx := context.Background()
	for _, h := range []*Bulkhead{a, a, b} {
		if err := h.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// b has a free slot, but the process holds MaxPending requests: 503 at once.
	overloaded(t, b.Acquire(ctx), http.StatusServiceUnavailable, "--admission-max-pending")
	if _, n := l.Stats(); n != 1 {
		t.Fatalf("%d saturation rejections", n)
	}
	a.Release()
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFloodIsIsolated: one model with every slot and queue place taken does not take
// anything from another.
func TestFloodIsIsolated(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 4, QueuePerSlot: 1, MaxQueueWait: time.Minute, MaxPending: 100},
		map[string]float64{"flood": 1, "quiet": 1})
	flood, quiet := l.Bulkhead("flood"), l.Bulkhead("quiet")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		if err := flood.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		go flood.Acquire(ctx)
	}
	for flood.Stats().Queued != 2 {
		time.Sleep(time.Millisecond)
	}
	overloaded(t, flood.Acquire(ctx), http.StatusTooManyRequests, "weight")
	for i := 0; i < 2; i++ {
		if err := quiet.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := quiet.Stats(); st.LimitReached != 0 || st.InFlight != 2 {
		t.Fatalf("quiet model had to wait: %+v", st)
	}
}

func TestSetWeightsKeepsUnchanged(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 4}, map[string]float64{"a": 1, "b": 1})
	a, b := l.Bulkhead("a"), l.Bulkhead("b")
	if err := b.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	// c joins with weight 2: a and b shrink from 2 slots to 1, c gets 2.
	if err := l.SetWeights(map[string]float64{"a": 1, "b": 1, "c": 2}); err != nil {
		t.Fatal(err)
	}
	if l.Bulkhead("a") == a || l.Bulkhead("c").Stats().Slots != 2 || l.Bulkhead("a").Stats().Slots != 1 {
		t.Fatal("shares not redistributed")
	}
	b.Release() // into the old bulkhead that admitted it
	if err := l.SetWeights(map[string]float64{"a": 5, "b": 5, "c": 10}); err != nil {
		t.Fatal(err)
	}
	if l.Bulkhead("c").Stats().Weight != 10 || l.Bulkhead("c").Stats().Slots != 2 {
		t.Fatal("same share, new weight not kept")
	}
	if l.pending.Load() != 0 {
		t.Fatal("pending count leaked across SetWeights")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {Capacity: -1}, {Capacity: 1, MaxQueueWait: -1}} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("New(%+v) accepted", cfg)
		}
	}
}

func TestReleaseWithoutAcquirePanics(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 1}, map[string]float64{"m": 1})
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(string), "BUG:") {
			t.Fatalf("recovered %v", r)
		}
	}()
	l.Bulkhead("m").Release()
}

// TestDefaultMaxPendingLeavesRoomForOthers: with the default MaxPending, one model with
// every slot and queue place taken leaves the process-wide bound room for the others, so
// a quiet model is admitted instead of getting 503.
func TestDefaultMaxPendingLeavesRoomForOthers(t *testing.T) {
	l := newLimiter(t, Config{Capacity: 2, MaxQueueWait: time.Minute}, map[string]float64{"flood": 1, "quiet": 1})
	if got, want := l.cfg.MaxPending, 2*(1+4); got != want {
		t.Fatalf("default MaxPending %d, want Capacity × (1 + QueuePerSlot) = %d", got, want)
	}
	flood, quiet := l.Bulkhead("flood"), l.Bulkhead("quiet")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// flood: 1 slot held, its 4 queue places taken, the next one rejected with 429 (its
	// own bulkhead), not 503.
	if err := flood.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiters := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() { waiters <- flood.Acquire(ctx) }()
	}
	for flood.Stats().Queued != 4 {
		time.Sleep(time.Millisecond)
	}
	overloaded(t, flood.Acquire(ctx), http.StatusTooManyRequests, "weight")
	if err := quiet.Acquire(ctx); err != nil {
		t.Fatalf("quiet model not admitted beside a flooded one: %v", err)
	}
	if _, n := l.Stats(); n != 0 {
		t.Fatalf("%d process-wide (503) rejections", n)
	}
	quiet.Release()
	cancel()
	for i := 0; i < 4; i++ {
		if err := <-waiters; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter: %v", err)
		}
	}
	flood.Release()
	if p := l.pending.Load(); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

// TestRejectedFloodDoesNotCountTowardsMaxPending: requests that their own full bulkhead
// rejects never count towards the process-wide MaxPending, so a flood of them, however
// many arrive at once, cannot get another model's requests 503s. Before the bulkhead was
// asked first, every attempt counted for a moment: at MaxPending = the flooded
// bulkhead's size a flooded request got 503, not 429, and with the default MaxPending a
// burst of concurrent attempts pushed the quiet model's requests over it (the
// noisy-neighbor scenario's quiet model got 503s at a flood of 1,600/s).
func TestRejectedFloodDoesNotCountTowardsMaxPending(t *testing.T) {
	// MaxPending = flood's slot and queue: exactly full once flood's bulkhead is.
	l := newLimiter(t, Config{Capacity: 2, MaxQueueWait: time.Minute, MaxPending: 5}, map[string]float64{"flood": 1, "quiet": 1})
	flood, quiet := l.Bulkhead("flood"), l.Bulkhead("quiet")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := flood.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiters := make(chan error, 4)
	for range 4 {
		go func() { waiters <- flood.Acquire(ctx) }()
	}
	for flood.Stats().Queued != 4 {
		time.Sleep(time.Millisecond)
	}
	// The flood's own bulkhead rejects it (429), not the process (503) ...
	overloaded(t, flood.Acquire(ctx), http.StatusTooManyRequests, "weight")
	// ... while the process is at MaxPending: the quiet model gets 503.
	overloaded(t, quiet.Acquire(ctx), http.StatusServiceUnavailable, "--admission-max-pending")
	if _, n := l.Stats(); n != 1 {
		t.Fatalf("%d process-wide rejections, want 1 (the quiet request)", n)
	}
	cancel()
	for range 4 {
		<-waiters
	}
	flood.Release()

	// Default MaxPending: 8 goroutines flood a full bulkhead while the quiet model
	// acquires and releases; not one quiet request may be refused.
	l = newLimiter(t, Config{Capacity: 2, MaxQueueWait: time.Minute}, map[string]float64{"flood": 1, "quiet": 1})
	flood, quiet = l.Bulkhead("flood"), l.Bulkhead("quiet")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if err := flood.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		go flood.Acquire(ctx)
	}
	for flood.Stats().Queued != 4 {
		time.Sleep(time.Millisecond)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if flood.Acquire(ctx) == nil {
					flood.Release() // not reached: the slot is never freed
				}
			}
		}()
	}
	for flood.Stats().Rejected < 100 {
		time.Sleep(time.Millisecond)
	}
	// At least 2,000 quiet requests, and until the flood was rejected 20,000 more
	// times: the two overlap however the goroutines are scheduled.
	until := flood.Stats().Rejected + 20_000
	for i := 0; i < 2000 || flood.Stats().Rejected < until; i++ {
		if err := quiet.Acquire(ctx); err != nil {
			close(stop)
			t.Fatalf("quiet request %d refused beside a flood its bulkhead rejects: %v", i, err)
		}
		quiet.Release()
	}
	close(stop)
	for range 8 {
		<-done
	}
}

// TestWeightChangeWhileStatsRead: a reload that changes a model's weight but not its
// slot count keeps the bulkhead and updates its weight while /metrics and /v1/models
// read Stats. Under -race this failed when the weight was a plain field.
func TestWeightChangeWhileStatsRead(t *testing.T) {
	// Capacity 1: every model gets one slot whatever its weight, so the bulkhead stays.
	l := newLimiter(t, Config{Capacity: 1}, map[string]float64{"a": 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			if err := l.SetWeights(map[string]float64{"a": float64(1 + i%7)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var seen float64
	for {
		select {
		case <-done:
			if st, _ := l.Stats(); st[0].Weight != 1+1999%7 {
				t.Errorf("weight after the last SetWeights: %v, want %v", st[0].Weight, 1+1999%7)
			}
			if seen == 0 {
				t.Error("Stats never saw a weight")
			}
			return
		default:
			st, _ := l.Stats()
			seen = st[0].Weight
		}
	}
}
