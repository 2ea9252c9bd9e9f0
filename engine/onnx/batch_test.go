package onnx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// randomEmbRows makes n rows for the emb model in its feature order (item_id, d0, d1,
// user_id, d2, d3) with valid ids.
func randomEmbRows(n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	rows := make([]float64, n*6)
	for r := range n {
		for c := range 6 {
			rows[r*6+c] = rng.NormFloat64()
		}
		rows[r*6+0] = float64(rng.IntN(20))
		rows[r*6+3] = float64(rng.IntN(20))
	}
	return rows
}

// gate holds the batcher's runner at its next batch until release is called, so a test
// can fill the queue deterministically.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	sizes   chan int // len of every batch that ran
}

func installGate(m *Model) *gate {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{}), sizes: make(chan int, 1024)}
	m.batch.beforeRun = func(batch []*request) {
		g.sizes <- len(batch)
		g.once.Do(func() {
			close(g.entered)
			<-g.release
		})
	}
	return g
}

func waitQueued(t *testing.T, m *Model, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(m.batch.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after 30s, want %d", len(m.batch.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchingMergesCallers: many concurrent callers with different row counts, float32 and
// float64, each get exactly their own rows' scores back, and the runs merged them.
func TestBatchingMergesCallers(t *testing.T) {
	tc := embCase()
	features, _, _ := loadInputs(t, "emb")
	const callers = 64
	sizes := make([]int, callers)
	starts := make([]int, callers)
	total := 0
	for i := range sizes {
		sizes[i] = 1 + (i*37)%300 // 1..300 rows, uneven
		starts[i] = total
		total += sizes[i]
	}
	rows := randomEmbRows(total, 9)
	want := score(tc, reference(t, tc, features, rows, total), total)

	m := loadModel(t, tc, features, func(c *Config) {
		c.Batching = &BatchingConfig{MaxBatch: 2048, MaxQueueDelayUs: 2000}
	})
	g := installGate(m)
	// A first call holds the runner, the others queue behind it, then all are released
	// together: the runner must split them into batches of at most 2048 rows.
	first := make([]float64, 1)
	firstDone := make(chan error)
	go func() { firstDone <- m.PredictF64(rows[:6], 1, first, false) }()
	<-g.entered

	var wg sync.WaitGroup
	errs := make([]error, callers)
	outs := make([][]float64, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, n := starts[i], sizes[i]
			outs[i] = make([]float64, n)
			part := rows[lo*6 : (lo+n)*6]
			if i%2 == 0 {
				errs[i] = m.PredictF64(part, n, outs[i], false)
				return
			}
			p32 := make([]float32, len(part))
			for j, v := range part {
				p32[j] = float32(v)
			}
			errs[i] = m.PredictF32(p32, n, outs[i], false)
		}()
	}
	waitQueued(t, m, callers)
	close(g.release)
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	checkClose(t, "first", first, want[:1], tolerance())
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		checkClose(t, fmt.Sprintf("caller %d (%d rows)", i, sizes[i]), outs[i], want[starts[i]:starts[i]+sizes[i]], tolerance())
	}
	st := m.BatchStats()
	t.Logf("%+v", st)
	if st.Requests != callers+1 || st.Rows != uint64(total+1) {
		t.Fatalf("stats %+v: want %d requests, %d rows", st, callers+1, total+1)
	}
	// total rows / 2048 per batch, plus the first: every merged batch is full but the last.
	if minBatches := uint64(1 + (total+2047)/2048); st.Batches < minBatches || st.Batches >= st.Requests {
		t.Fatalf("%d batches for %d requests (%d rows); want merged batches of <= 2048 rows", st.Batches, st.Requests, total)
	}
}

// TestBatchingQueueFull: with the runner busy and queue_size calls waiting, the next call
// fails at once with ErrQueueFull naming the setting; the waiting calls still succeed.
func TestBatchingQueueFull(t *testing.T) {
	tc := embCase()
	features, rows, nrows := loadInputs(t, "emb")
	want := score(tc, reference(t, tc, features, rows, nrows), nrows)
	m := loadModel(t, tc, features, func(c *Config) {
		c.Batching = &BatchingConfig{QueueSize: 2}
	})
	g := installGate(m)
	outs := make([][]float64, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		outs[i] = make([]float64, 1)
		errs[i] = m.PredictF64(rows[i*6:(i+1)*6], 1, outs[i], false)
	}
	wg.Add(1)
	go call(0)
	<-g.entered
	wg.Add(2)
	go call(1)
	go call(2)
	waitQueued(t, m, 2)

	err := m.PredictF64(rows[:6], 1, make([]float64, 1), false)
	if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "onnx.batching.queue_size") {
		t.Fatalf("full queue: %v", err)
	}
	close(g.release)
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		checkClose(t, fmt.Sprint("call ", i), outs[i], want[i:i+1], tolerance())
	}
	if st := m.BatchStats(); st.QueueFull != 1 {
		t.Fatalf("stats %+v: want QueueFull 1", st)
	}
}

// TestBatchingCancel: a queued call whose context ends returns ctx.Err() without waiting
// for the runner, and the runner skips it.
func TestBatchingCancel(t *testing.T) {
	tc := embCase()
	features, rows, nrows := loadInputs(t, "emb")
	want := score(tc, reference(t, tc, features, rows, nrows), nrows)
	m := loadModel(t, tc, features, func(c *Config) { c.Batching = &BatchingConfig{} })
	g := installGate(m)
	first := make([]float64, 1)
	firstDone := make(chan error)
	go func() { firstDone <- m.PredictF64(rows[:6], 1, first, false) }()
	<-g.entered

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error)
	go func() { cancelled <- m.PredictF64Context(ctx, rows[6:12], 1, make([]float64, 1)) }()
	waitQueued(t, m, 1)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	close(g.release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	checkClose(t, "first", first, want[:1], tolerance())
	out := make([]float64, nrows)
	if err := m.PredictF64Context(context.Background(), rows, nrows, out); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "after cancel", out, want, tolerance())
	if st := m.BatchStats(); st.Rows != uint64(1+nrows) {
		t.Fatalf("stats %+v: the cancelled call's row ran", st)
	}
	// An expired context fails before queueing or running.
	if err := m.PredictF64Context(ctx, rows, nrows, out); !errors.Is(err, context.Canceled) {
		t.Fatalf("expired context: %v", err)
	}
}

// TestBatchingDeadlineWhileGathering: a lone call waits MaxQueueDelay for others to join;
// when its deadline passes during that wait it returns at once, and the runner drops it.
func TestBatchingDeadlineWhileGathering(t *testing.T) {
	tc := embCase()
	features, rows, nrows := loadInputs(t, "emb")
	want := score(tc, reference(t, tc, features, rows, nrows), nrows)
	m := loadModel(t, tc, features, func(c *Config) {
		c.Batching = &BatchingConfig{MaxQueueDelayUs: 1_000_000} // 1 s of gathering, the most allowed
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.PredictF64Context(ctx, rows[:6], 1, make([]float64, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("the call returned after %v: it waited out the 1 s gathering delay", took)
	}
	// The dropped call never runs; a later one still gets its own scores.
	out := make([]float64, nrows)
	if err := m.PredictF64Context(context.Background(), rows, nrows, out); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "after the dropped call", out, want, tolerance())
	if st := m.BatchStats(); st.Rows != uint64(nrows) {
		t.Fatalf("stats %+v: the dropped call's row ran", st)
	}
}

// TestBatchingIsolatesBadCalls: in one merged batch, a call with a non-integer id and one
// with an id past the embedding table fail alone; the others get their scores.
func TestBatchingIsolatesBadCalls(t *testing.T) {
	tc := embCase()
	features, rows, nrows := loadInputs(t, "emb")
	want := score(tc, reference(t, tc, features, rows, nrows), nrows)
	m := loadModel(t, tc, features, func(c *Config) { c.Batching = &BatchingConfig{} })
	g := installGate(m)
	firstDone := make(chan error)
	go func() { firstDone <- m.PredictF64(rows[:6], 1, make([]float64, 1), false) }()
	<-g.entered

	fraction := append([]float64(nil), rows[6:12]...)
	fraction[0] = 2.5 // item_id
	outOfRange := append([]float64(nil), rows[12:18]...)
	outOfRange[3] = 20 // user_id; the table has 20 rows
	inputs := [][]float64{rows[18:24], fraction, outOfRange, rows[24:30]}
	errs := make([]error, len(inputs))
	outs := make([][]float64, len(inputs))
	var wg sync.WaitGroup
	for i, in := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = make([]float64, 1)
			errs[i] = m.PredictF64(in, 1, outs[i], false)
		}()
		waitQueued(t, m, i+1) // keep the queue order fixed
	}
	close(g.release)
	wg.Wait()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if n := <-g.sizes; n != 1 {
		t.Fatalf("first batch has %d calls", n)
	}
	if n := <-g.sizes; n != 4 {
		t.Fatalf("second batch has %d calls, want the 4 queued", n)
	}
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("good calls failed: %v, %v", errs[0], errs[3])
	}
	checkClose(t, "good 0", outs[0], want[3:4], tolerance())
	checkClose(t, "good 3", outs[3], want[4:5], tolerance())
	if !errors.Is(errs[1], ErrInvalidInput) {
		t.Fatalf("fractional id: %v", errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "out of data bounds") {
		t.Fatalf("id past the table: %v", errs[2])
	}
}

// TestBatchingBigCallBypasses: a call of max_batch rows or more runs on its own, even
// while the runner is busy.
func TestBatchingBigCallBypasses(t *testing.T) {
	tc := embCase()
	features, rows, nrows := loadInputs(t, "emb")
	want := score(tc, reference(t, tc, features, rows, nrows), nrows)
	m := loadModel(t, tc, features, func(c *Config) { c.Batching = &BatchingConfig{MaxBatch: nrows} })
	g := installGate(m)
	firstDone := make(chan error)
	go func() { firstDone <- m.PredictF64(rows[:6], 1, make([]float64, 1), false) }()
	<-g.entered
	out := make([]float64, nrows)
	if err := m.PredictF64(rows, nrows, out, false); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "big call", out, want, tolerance())
	close(g.release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
}
