package admission

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
)

// BenchmarkAcquireRelease is the uncontended fast path, beside a bare channel semaphore
// (its baseline).
func BenchmarkAcquireRelease(b *testing.B) {
	l := newLimiter(b, Config{Capacity: 1 << 20}, map[string]float64{"m": 1})
	h := l.Bulkhead("m")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := h.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
			h.Release()
		}
	})
}

func BenchmarkChannelSemaphoreBaseline(b *testing.B) {
	sem := make(chan struct{}, 1<<20)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sem <- struct{}{}
			<-sem
		}
	})
}

// scoreWork is one request's work: scoring rows with the bundled demo model (LightGBM,
// 100 trees) on the C++ core. Each goroutine brings its own buffers, as the sidecar's
// pooled requests do.
type scoreWork struct {
	m    *engine.Model
	rows []float64
	n    int
}

func newScoreWork(tb testing.TB, nrows int) *scoreWork {
	m, err := engine.LoadFile("../../examples/models/claims/1/model.txt", "", engine.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	nf := m.NumFeatures()
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([]float64, nrows*nf)
	for j := range rows {
		if j%nf < 5 {
			rows[j] = float64(rng.IntN(12)) // categorical codes
		} else {
			rows[j] = rng.Float64() * 200
		}
	}
	return &scoreWork{m: m, rows: rows, n: nrows}
}

func (w *scoreWork) do(out []float64) {
	if err := w.m.PredictF64(w.rows, w.n, out, false); err != nil {
		panic(err)
	}
}

// isolationScenario is one run of the noisy-neighbour experiment.
type isolationScenario struct {
	name string
	// acquire returns a release func or an error; nil means no admission control.
	acquire func(ctx context.Context, model string) (func(), error)
	flood   bool
}

type isolationResult struct {
	quietP50, quietP99  time.Duration
	floodDone, floodRej int64
	rejP99              time.Duration
	quietRejected       int64
}

// runIsolation measures the quiet model's latency (acquire + work + release) over nQuiet
// requests while, if flood is set, floodClients goroutines hammer the other
// model. A rejected flood client backs off briefly and retries, as a load generator does.
func runIsolation(sc isolationScenario, nQuiet, floodClients int, work *scoreWork) isolationResult {
	ctx := context.Background()
	do := func(model string, start time.Time, out []float64) (time.Duration, bool) {
		release := func() {}
		if sc.acquire != nil {
			r, err := sc.acquire(ctx, model)
			if err != nil {
				if !errors.Is(err, ErrOverloaded) {
					panic(err)
				}
				return time.Since(start), false
			}
			release = r
		}
		work.do(out)
		release()
		return time.Since(start), true
	}
	var (
		stop           atomic.Bool
		wg             sync.WaitGroup
		done, rejected atomic.Int64
		rejMu          sync.Mutex
		rejLat         []time.Duration
	)
	if sc.flood {
		for i := 0; i < floodClients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lats []time.Duration
				out := make([]float64, work.n)
				for !stop.Load() {
					d, ok := do("flood", time.Now(), out)
					if ok {
						done.Add(1)
						continue
					}
					rejected.Add(1)
					lats = append(lats, d)
					time.Sleep(5 * time.Millisecond) // back off before retrying (real clients wait Retry-After)
				}
				rejMu.Lock()
				rejLat = append(rejLat, lats...)
				rejMu.Unlock()
			}()
		}
		time.Sleep(20 * time.Millisecond) // let the flood build up
	}
	// Latency of the quiet requests that were served; rejections are counted apart (a
	// fast rejection is not a fast answer).
	//
	// The quiet model's requests arrive open-loop, one per quietInterval, like a service
	// at a steady rate; latency counts from the intended arrival, so time spent waiting
	// for a CPU to start the request counts too.
	lat := make([]time.Duration, 0, nQuiet)
	var quietRejected int64
	out := make([]float64, work.n)
	begin := time.Now()
	deadline := begin.Add(maxQuietTime)
	for i := 0; i < nQuiet && time.Now().Before(deadline); i++ {
		arrival := begin.Add(time.Duration(i) * quietInterval)
		if d := time.Until(arrival); d > 0 {
			time.Sleep(d)
		}
		d, ok := do("quiet", arrival, out)
		if !ok {
			quietRejected++
			continue
		}
		lat = append(lat, d)
	}
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	slices.Sort(rejLat)
	res := isolationResult{
		quietP50: pct(lat, 0.50), quietP99: pct(lat, 0.99),
		floodDone: done.Load(), floodRej: rejected.Load(), rejP99: pct(rejLat, 0.99),
		quietRejected: quietRejected,
	}
	return res
}

// maxQuietTime caps a scenario: without admission control the quiet requests are so slow
// that 2000 of them would take minutes.
const maxQuietTime = 5 * time.Second

// quietInterval spaces the quiet model's requests: 500 requests/s of ~0.15 ms each use
// less than a tenth of one core.
const quietInterval = 2 * time.Millisecond

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkIsolation is the noisy-neighbour experiment: a quiet model's latency alone,
// then with another model flooded by 32 closed-loop clients, under four regimes:
//
//   - alone:    quiet model only, per-model bulkheads (the baseline);
//   - isolated: flood on, per-model bulkheads (this package, weights 1:1);
//   - shared:   flood on, one bulkhead of the same total capacity for both models (a
//     process-wide limit without per-model shares);
//   - none:     flood on, no admission control at all.
//
// Each request scores 20 rows with the bundled demo model (LightGBM, 100 trees, C++
// core): about 0.15 ms of CPU (reported as work-µs). The quiet model's requests arrive open-loop at 500/s.
// Capacity is GOMAXPROCS, so with isolation the flood holds at most half the slots. One
// benchmark iteration runs every regime once, in turn; with -benchtime=Nx the reported
// values are medians over the N rounds, so load from other processes on the machine hits
// all regimes alike. Reported: the quiet model's p50/p99 over served requests, each p99 as
// a ratio to alone's, how many quiet requests were rejected, the flood's served and
// rejected requests per second and the p99 latency of its rejections.
func BenchmarkIsolation(b *testing.B) {
	const (
		nQuiet       = 1500
		floodClients = 32
	)
	work := newScoreWork(b, 20)
	capacity := max(2, runtime.GOMAXPROCS(0))
	cfg := Config{Capacity: capacity, MaxQueueWait: 100 * time.Millisecond, MaxPending: 64 * capacity}
	perModel := newLimiter(b, cfg, map[string]float64{"quiet": 1, "flood": 1})
	shared := newLimiter(b, cfg, map[string]float64{"all": 1})
	viaLimiter := func(l *Limiter, fixed string) func(context.Context, string) (func(), error) {
		return func(ctx context.Context, model string) (func(), error) {
			if fixed != "" {
				model = fixed
			}
			h, err := l.Acquire(ctx, model)
			if err != nil {
				return nil, err
			}
			return h.Release, nil
		}
	}
	scenarios := []isolationScenario{
		{name: "alone", acquire: viaLimiter(perModel, "")},
		{name: "isolated", acquire: viaLimiter(perModel, ""), flood: true},
		{name: "shared", acquire: viaLimiter(shared, "all"), flood: true},
		{name: "none", flood: true},
	}
	metrics := map[string][]float64{}
	add := func(name string, v float64) { metrics[name] = append(metrics[name], v) }
	for b.Loop() {
		// How long one request's work takes now, without contention.
		out := make([]float64, work.n)
		start := time.Now()
		for range 200 {
			work.do(out)
		}
		add("work-µs", float64(time.Since(start).Microseconds())/200)

		var alone time.Duration
		for _, sc := range scenarios {
			start := time.Now()
			r := runIsolation(sc, nQuiet, floodClients, work)
			secs := time.Since(start).Seconds()
			if sc.name == "alone" {
				alone = r.quietP99
			}
			add(sc.name+"-quiet-p50-µs", float64(r.quietP50.Microseconds()))
			add(sc.name+"-quiet-p99-µs", float64(r.quietP99.Microseconds()))
			add(sc.name+"-p99/alone", float64(r.quietP99)/float64(alone))
			if sc.flood {
				add(sc.name+"-quiet-rejected", float64(r.quietRejected))
				add(sc.name+"-flood-ok/s", float64(r.floodDone)/secs)
				add(sc.name+"-flood-rejected/s", float64(r.floodRej)/secs)
				add(sc.name+"-reject-p99-µs", float64(r.rejP99.Microseconds()))
			}
		}
	}
	for name, vals := range metrics {
		slices.Sort(vals)
		b.ReportMetric(vals[len(vals)/2], name)
	}
}
