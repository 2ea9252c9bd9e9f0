package predlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// logged is what a test handed to Log, kept to compare with what comes back.
type logged struct {
	reqID, model, version, shadowOf string
	names                           []string
	ids                             []string
	rows                            [][]float64
	preds                           [][]float64
}

// readLogs decodes every finished file in dir, in name order, applying headers to the
// records that follow them.
func readLogs(t *testing.T, dir string) []logged {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []logged
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".part") {
			t.Fatalf("unfinished file %s left behind", e.Name())
		}
		if !strings.HasSuffix(e.Name(), ".jsonl.zst") {
			t.Fatalf("unexpected file %s", e.Name())
		}
		recs, err := decodeFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, recs...)
	}
	return out
}

func decodeFile(path string) ([]logged, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return decodeLines(zr)
}

type header struct {
	Model    string   `json:"model"`
	Version  string   `json:"version"`
	Features []string `json:"features"`
}

type line struct {
	Header      *header           `json:"header"`
	TS          string            `json:"ts"`
	RequestID   string            `json:"request_id"`
	Model       string            `json:"model"`
	Version     string            `json:"version"`
	ShadowOf    string            `json:"shadow_of"`
	IDs         []string          `json:"ids"`
	Features    [][]any           `json:"features"`
	Predictions []json.RawMessage `json:"predictions"`
}

func decodeLines(r io.Reader) ([]logged, error) {
	var (
		out []logged
		hdr *header
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		var l line
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if l.Header != nil {
			hdr = l.Header
			continue
		}
		if hdr == nil || hdr.Model != l.Model || hdr.Version != l.Version {
			return nil, fmt.Errorf("line %d: record for %s@%s without its header", n, l.Model, l.Version)
		}
		if _, err := time.Parse(time.RFC3339Nano, l.TS); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		rec := logged{reqID: l.RequestID, model: l.Model, version: l.Version, shadowOf: l.ShadowOf, names: hdr.Features, ids: l.IDs}
		for _, row := range l.Features {
			vals := make([]float64, len(row))
			for i, v := range row {
				f, err := jsonFloat(v)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", n, err)
				}
				vals[i] = f
			}
			rec.rows = append(rec.rows, vals)
		}
		for _, p := range l.Predictions {
			var v any
			if err := json.Unmarshal(p, &v); err != nil {
				return nil, err
			}
			var vals []float64
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					f, err := jsonFloat(x)
					if err != nil {
						return nil, err
					}
					vals = append(vals, f)
				}
			} else {
				f, err := jsonFloat(v)
				if err != nil {
					return nil, err
				}
				vals = []float64{f}
			}
			rec.preds = append(rec.preds, vals)
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

func jsonFloat(v any) (float64, error) {
	switch x := v.(type) {
	case nil:
		return math.NaN(), nil
	case float64:
		return x, nil
	case string:
		switch x {
		case "+Inf":
			return math.Inf(1), nil
		case "-Inf":
			return math.Inf(-1), nil
		}
	}
	return 0, fmt.Errorf("bad number %v", v)
}

func sameFloats(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool {
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	})
}

func equalLogged(a, b logged) bool {
	if a.reqID != b.reqID || a.model != b.model || a.version != b.version || a.shadowOf != b.shadowOf ||
		!slices.Equal(a.names, b.names) || !slices.Equal(a.ids, b.ids) ||
		len(a.rows) != len(b.rows) || len(a.preds) != len(b.preds) {
		return false
	}
	for i := range a.rows {
		if !sameFloats(a.rows[i], b.rows[i]) {
			return false
		}
	}
	for i := range a.preds {
		if !sameFloats(a.preds[i], b.preds[i]) {
			return false
		}
	}
	return true
}

// logRandom fills the caller-owned buffers with random data, logs them through lg and
// then scribbles over the buffers, as a request handler that reuses them would.
func logRandom(lg *Logger, rng *rand.Rand, model, version string, names []string, outputs int, rows, preds []float64, ids []byte) (logged, bool) {
	rec := lg.Sample()
	if rec == nil {
		return logged{}, false
	}
	nrows := 1 + rng.IntN(8)
	nf := len(names)
	rows, preds = rows[:nrows*nf], preds[:nrows*outputs]
	want := logged{model: model, version: version, names: names, reqID: fmt.Sprintf("req-%d \"q\"\t✓", rng.Uint32())}
	for i := range rows {
		switch rng.IntN(20) {
		case 0:
			rows[i] = math.NaN()
		case 1:
			rows[i] = math.Inf(1 - 2*rng.IntN(2))
		default:
			rows[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
		}
	}
	for i := range preds {
		preds[i] = rng.Float64()
	}
	rec.Model, rec.Version, rec.FeatureNames = model, version, names
	rec.SetRequestID(want.reqID)
	rec.SetRows(rows, nrows, nf)
	rec.SetPredictions(preds, outputs)
	for i := 0; i < nrows; i++ {
		ids = strconv.AppendInt(append(ids[:0], "cand-"...), int64(i), 10)
		rec.AddID(string(ids))
		want.ids = append(want.ids, string(ids))
		want.rows = append(want.rows, slices.Clone(rows[i*nf:(i+1)*nf]))
		want.preds = append(want.preds, slices.Clone(preds[i*outputs:(i+1)*outputs]))
	}
	ok := lg.Log(rec)
	for i := range rows {
		rows[i] = -1
	}
	for i := range preds {
		preds[i] = -1
	}
	return want, ok
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	lg, err := New(Config{Dir: dir, Prefix: "ctr", QueueSize: 4096, MaxFileBytes: 8 << 10, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	namesV1 := []string{"age", "price", `odd "name"`}
	namesV2 := []string{"age", "price", "clicks_7d", "ünïcode"}
	rows, preds := make([]float64, 64), make([]float64, 64)
	var want []logged
	for i := 0; i < 2000; i++ {
		version, names, outputs := "1", namesV1, 1
		if i%3 == 0 {
			version, names, outputs = "2", namesV2, 3
		}
		w, ok := logRandom(lg, rng, "ctr", version, names, outputs, rows, preds, nil)
		if !ok {
			t.Fatalf("record %d dropped with a queue larger than the test", i)
		}
		want = append(want, w)
	}
	// A shadow record without rows.
	rec := lg.Sample()
	rec.Model, rec.Version, rec.ShadowOf, rec.FeatureNames = "ctr-next", "7", "ctr@2", namesV2
	rec.SetRequestID("shadow-req")
	rec.NumRows = 2
	rec.SetPredictions([]float64{0.25, 0.5}, 1)
	lg.Log(rec)
	want = append(want, logged{reqID: "shadow-req", model: "ctr-next", version: "7", shadowOf: "ctr@2", names: namesV2, preds: [][]float64{{0.25}, {0.5}}})

	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, dir)
	if len(got) != len(want) {
		t.Fatalf("read back %d records, logged %d", len(got), len(want))
	}
	for i := range want {
		if !equalLogged(got[i], want[i]) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	st := lg.Stats()
	if st.Accepted != uint64(len(want)) || st.Written != st.Accepted || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v, want %d accepted and written", st, len(want))
	}
	files, _ := os.ReadDir(dir)
	if st.Files < 2 || int(st.Files) != len(files) {
		t.Fatalf("stats count %d files, %d on disk; want rotation into at least 2", st.Files, len(files))
	}
	var size int64
	for _, f := range files {
		fi, _ := f.Info()
		size += fi.Size()
	}
	if uint64(size) != st.Bytes {
		t.Fatalf("stats count %d bytes, %d on disk", st.Bytes, size)
	}
	if lg.Sample() != nil {
		t.Fatal("Sample after Close returned a record")
	}
	if lg.Log(lg.pool.Get().(*Record)) {
		t.Fatal("Log after Close accepted a record")
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	var clock atomic.Int64 // fake time in ns, advanced by the test
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	lg, err := newLogger(Config{Dir: dir, Prefix: "m", MaxFileAge: time.Minute, FlushInterval: time.Millisecond}, openFile, now)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rows, preds := make([]float64, 64), make([]float64, 64)
	names := []string{"a", "b"}
	for i := 1; i <= 3; i++ {
		if _, ok := logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil); !ok {
			t.Fatal("record dropped")
		}
		for lg.Stats().Files != uint64(i) {
			time.Sleep(time.Millisecond)
		}
		// The open file is now older than MaxFileAge: the next record starts a new one.
		clock.Add(int64(time.Minute))
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLogs(t, dir)); got != 3 {
		t.Fatalf("read %d records, logged 3", got)
	}
	if st := lg.Stats(); st.Files != 3 {
		t.Fatalf("%d files, want one per record", st.Files)
	}
}

// gateFile models a disk that stalls: Write blocks until the gate opens.
type gateFile struct {
	f       *os.File
	blocked chan struct{} // closed at the first blocked Write
	once    *sync.Once
	open    chan struct{}
}

func (g gateFile) Write(p []byte) (int, error) {
	select {
	case <-g.open:
	default:
		g.once.Do(func() { close(g.blocked) })
		<-g.open
	}
	return g.f.Write(p)
}

func (g gateFile) Close() error { return g.f.Close() }

func TestSlowDiskDropsInsteadOfBlocking(t *testing.T) {
	dir := t.TempDir()
	blocked, gate, once := make(chan struct{}), make(chan struct{}), new(sync.Once)
	const queue = 8
	lg, err := newLogger(Config{Dir: dir, Prefix: "m", QueueSize: queue, FlushInterval: time.Millisecond},
		func(path string) (io.WriteCloser, error) {
			f, err := createFile(path)
			return gateFile{f: f, blocked: blocked, once: once, open: gate}, err
		}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	rows, preds := make([]float64, 64), make([]float64, 64)
	names := []string{"a", "b", "c"}
	var want []logged
	w, _ := logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil)
	want = append(want, w)
	<-blocked // the writer is stuck in the disk now, holding nothing from the queue

	const n = 1000
	var slowest time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		w, ok := logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil)
		slowest = max(slowest, time.Since(start))
		if ok {
			want = append(want, w)
		}
	}
	st := lg.Stats()
	if st.Accepted != queue+1 || st.Dropped != n-queue {
		t.Fatalf("with the disk stalled: %+v; want %d accepted (queue+1) and %d dropped", st, queue+1, n-queue)
	}
	t.Logf("slowest of %d Log calls against a stalled disk: %v", n, slowest)

	close(gate)
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, dir)
	if len(got) != len(want) {
		t.Fatalf("read back %d records, accepted %d", len(got), len(want))
	}
	for i := range want {
		if !equalLogged(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	if st := lg.Stats(); st.Written != st.Accepted {
		t.Fatalf("after Close: %+v; every accepted record must be written", st)
	}
}

// disk models a small filesystem shared by all files: writes past its capacity fail
// with ENOSPC after writing what fits, like write(2) on a full disk.
type disk struct {
	mu   sync.Mutex
	free int
}

type diskFile struct {
	d *disk
	f *os.File
}

func (w diskFile) Write(p []byte) (int, error) {
	w.d.mu.Lock()
	n := min(len(p), w.d.free)
	w.d.free -= n
	w.d.mu.Unlock()
	m, err := w.f.Write(p[:n])
	if err == nil && n < len(p) {
		err = syscall.ENOSPC
	}
	return m, err
}

func (w diskFile) Close() error { return w.f.Close() }

func TestFullDiskCountsFailures(t *testing.T) {
	dir := t.TempDir()
	d := &disk{free: 20 << 10}
	lg, err := newLogger(Config{Dir: dir, Prefix: "m", QueueSize: 64, FlushInterval: time.Millisecond, RetryAfter: 5 * time.Millisecond},
		func(path string) (io.WriteCloser, error) {
			f, err := createFile(path)
			return diskFile{d: d, f: f}, err
		}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	rows, preds := make([]float64, 256), make([]float64, 64)
	names := make([]string, 32)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for lg.Stats().Failed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no write failure after filling the disk: %+v", lg.Stats())
		}
		logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil)
		time.Sleep(50 * time.Microsecond)
	}
	// Free the disk: the writer opens a new file after RetryAfter and writes again.
	d.mu.Lock()
	d.free = 1 << 30
	d.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	before := lg.Stats().Written
	for i := 0; i < 50; i++ {
		logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil)
		time.Sleep(100 * time.Microsecond)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	st := lg.Stats()
	if st.Written+st.Failed != st.Accepted {
		t.Fatalf("%+v: every accepted record must be either written or failed", st)
	}
	if st.Written <= before {
		t.Fatalf("nothing written after the disk was freed: %+v", st)
	}
	// The files renamed after the failure decode completely.
	ents, _ := os.ReadDir(dir)
	var complete int
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".part") {
			continue
		}
		recs, err := decodeFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		complete += len(recs)
	}
	if complete == 0 || uint64(complete) > st.Written {
		t.Fatalf("%d records in finished files, %d counted written", complete, st.Written)
	}
}

// TestSIGTERMFlushes runs a child process that logs until it gets SIGTERM, then closes
// the Logger as the sidecar's shutdown does; every record the child's Log accepted must
// be in the files.
func TestSIGTERMFlushes(t *testing.T) {
	if dir := os.Getenv("PREDLOG_CHILD_DIR"); dir != "" {
		sigtermChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGTERMFlushes$")
	cmd.Env = append(os.Environ(), "PREDLOG_CHILD_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "logging" {
		t.Fatalf("child did not start: %q", sc.Text())
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var accepted int
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "accepted "); ok {
			accepted, _ = strconv.Atoi(s)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, dir)
	if accepted == 0 || len(got) != accepted {
		t.Fatalf("child accepted %d records, files hold %d", accepted, len(got))
	}
}

func sigtermChild(dir string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// A long flush interval: without Close nothing would reach the files.
	lg, err := New(Config{Dir: dir, Prefix: "m", QueueSize: 100000, FlushInterval: time.Hour})
	if err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	rows, preds := make([]float64, 64), make([]float64, 64)
	names := []string{"a", "b", "c"}
	fmt.Println("logging")
	accepted := 0
	for {
		select {
		case <-term:
			if err := lg.Close(); err != nil {
				panic(err)
			}
			fmt.Println("accepted", accepted)
			os.Exit(0)
		default:
		}
		if _, ok := logRandom(lg, rng, "m", "1", names, 1, rows, preds, nil); ok {
			accepted++
		}
	}
}

func TestSampleRate(t *testing.T) {
	lg, err := New(Config{Dir: t.TempDir(), Prefix: "m", Rate: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	const n = 40000
	var hits int
	for i := 0; i < n; i++ {
		if lg.Sample() != nil {
			hits++
		}
	}
	// Binomial(40000, 0.25): σ ≈ 87; 6σ keeps a false failure below one in 10^8.
	if d := math.Abs(float64(hits) - n*0.25); d > 6*87 {
		t.Fatalf("%d of %d sampled at rate 0.25", hits, n)
	}
}

func TestConfigErrors(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("New(%+v) = %v, want an error containing %q", cfg, err, want)
		}
	}
	dir := t.TempDir()
	f(Config{Prefix: "m"}, "Dir is empty")
	f(Config{Dir: dir}, "prefix")
	f(Config{Dir: dir, Prefix: "../x"}, "prefix")
	f(Config{Dir: dir, Prefix: "m", Rate: 1.5}, "rate")
	f(Config{Dir: dir, Prefix: "m", Rate: -0.1}, "rate")
	f(Config{Dir: dir, Prefix: "m", QueueSize: -1}, "negative")
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	f(Config{Dir: filepath.Join(file, "sub"), Prefix: "m"}, "predlog")
}
