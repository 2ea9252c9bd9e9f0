// Package predlog writes sampled prediction logs: the rows a model scored (features as
// used, in the model's order), its predictions, and who asked, as zstd-compressed JSON
// lines that rotate by size and age. Logs feed training sets and debugging.
//
// One Logger serves one model (logging is opt-in per model). The request path only copies
// into a pooled Record and hands it to a bounded queue; a single background goroutine
// encodes, compresses and writes. When the queue is full (a slow or full disk) records are
// dropped and counted, never waited for. Close writes out everything that was accepted.
//
// # File format
//
// Files are named PREFIX-YYYYMMDDTHHMMSSZ-SEQ.jsonl.zst and hold one zstd stream of JSON
// lines. While a file is being written it carries a ".part" suffix; it is renamed when it
// is rotated or the Logger closes, so readers can take every file without the suffix.
// Each file starts with a header line, repeated whenever the model version or its feature
// names change within the file:
//
//	{"header":{"model":"ctr","version":"3","features":["age","price","clicks_7d"]}}
//
// followed by one line per logged request:
//
//	{"ts":"2026-11-26T02:30:00.123456Z","request_id":"r-17","model":"ctr","version":"3",
//	 "ids":["a","b"],"features":[[31,9.5,null],[31,12,4]],"predictions":[0.12,0.53]}
//
// "features" holds one array per row in header order; a missing value (NaN) is null and
// ±Inf are the strings "+Inf" and "-Inf" (JSON has no infinities). "predictions" holds one
// number per row for single-output models, or one array per row otherwise. "ids" (the
// candidate ids) is present when the request had them, "shadow_of" ("model@version") when
// the record holds a shadow model's scores.
package predlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/predictd/predictd/api/wire"
	"github.com/predictd/predictd/sidecar/jsonnum"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Config configures a Logger. Field comments give the defaults.
type Config struct {
	// Dir is the directory for log files; required. It is created if missing.
	Dir string
	// Prefix starts every file name; required, typically the model name. It may hold
	// letters, digits, '.', '_' and '-' only.
	Prefix string
	// Rate is the fraction of requests logged, in (0, 1]; default 1 (every request).
	Rate float64
	// QueueSize is how many records may wait for the writer; default 1024. A full queue
	// drops new records.
	QueueSize int
	// MaxFileBytes rotates a file once this many compressed bytes were written to it;
	// default 256 MiB. A file can exceed it by up to one zstd block (128 KiB) because the
	// encoder buffers a block before writing.
	MaxFileBytes int64
	// MaxFileAge rotates a file this long after it was opened; default 1h.
	MaxFileAge time.Duration
	// FlushInterval is how often buffered data is written out to the file; default 1s.
	// Records count as written once flushed.
	FlushInterval time.Duration
	// RetryAfter is how long the writer waits after a write error (a full disk) before
	// opening a new file; records arriving meanwhile are counted as failed. Default 1s.
	RetryAfter time.Duration
	// Meter records the Logger's metrics; nil means no metrics.
	Meter metric.Meter
}

// Stats are a Logger's counters since it was created.
type Stats struct {
	Accepted uint64 // records taken by Log
	Dropped  uint64 // records Log refused because the queue was full or the Logger closed
	Written  uint64 // records flushed to a file
	Failed   uint64 // accepted records lost to write errors (a full disk)
	Bytes    uint64 // compressed bytes written
	Files    uint64 // files opened
}

// Logger writes one model's prediction log. Sample, Log, Stats and Close are safe for
// concurrent use.
type Logger struct {
	cfg    Config
	open   func(path string) (io.WriteCloser, error)
	rename func(oldpath, newpath string) error
	now    func() time.Time

	// closeMu orders Log against Close: Log sends under the read lock, Close sets closed
	// and closes queue under the write lock, so no send ever hits a closed channel.
	closeMu sync.RWMutex
	closed  bool
	// isClosed mirrors closed for Sample, which takes no lock.
	isClosed atomic.Bool
	queue    chan *Record
	done     chan struct{}
	// closeErr is set by the writer before it closes done.
	closeErr error

	pool sync.Pool

	accepted, dropped, written, failed, bytes, files atomic.Uint64

	reg metric.Registration
}

// New checks cfg, creates the directory and starts the background writer.
func New(cfg Config) (*Logger, error) {
	return newLogger(cfg, openFile, time.Now)
}

func openFile(path string) (io.WriteCloser, error) { return createFile(path) }

func createFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

func newLogger(cfg Config, open func(string) (io.WriteCloser, error), now func() time.Time) (*Logger, error) {
	if cfg.Dir == "" {
		return nil, errors.New("predlog: Dir is empty; set the directory for prediction logs")
	}
	if cfg.Prefix == "" || !validPrefix(cfg.Prefix) {
		return nil, fmt.Errorf("predlog: prefix %q must be non-empty and hold only letters, digits, '.', '_' and '-'", cfg.Prefix)
	}
	if cfg.Rate == 0 {
		cfg.Rate = 1
	}
	if !(cfg.Rate > 0 && cfg.Rate <= 1) {
		return nil, fmt.Errorf("predlog: rate %v is outside (0, 1]", cfg.Rate)
	}
	if cfg.QueueSize < 0 || cfg.MaxFileBytes < 0 || cfg.MaxFileAge < 0 || cfg.FlushInterval < 0 || cfg.RetryAfter < 0 {
		return nil, errors.New("predlog: sizes and durations must not be negative")
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MaxFileBytes == 0 {
		cfg.MaxFileBytes = 256 << 20
	}
	if cfg.MaxFileAge == 0 {
		cfg.MaxFileAge = time.Hour
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("predlog: %w", err)
	}
	l := &Logger{
		cfg:    cfg,
		open:   open,
		rename: os.Rename,
		now:    now,
		queue:  make(chan *Record, cfg.QueueSize),
		done:   make(chan struct{}),
	}
	l.pool.New = func() any { return new(Record) }
	if err := l.registerMetrics(cfg.Meter); err != nil {
		return nil, err
	}
	w, err := newWriter(l)
	if err != nil {
		return nil, err
	}
	go w.run()
	return l, nil
}

func validPrefix(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return s != "." && s != ".."
}

// Sample decides whether the current request is logged. It returns a cleared Record to
// fill and pass to Log, or nil when the request is not sampled or the Logger is closed.
// The Record belongs to the caller until Log; a Record that is not logged may be dropped
// without ceremony (the pool refills).
func (l *Logger) Sample() *Record {
	if l.isClosed.Load() || (l.cfg.Rate < 1 && rand.Float64() >= l.cfg.Rate) {
		return nil
	}
	r := l.pool.Get().(*Record)
	r.reset()
	r.Time = l.now()
	return r
}

// Log queues rec for writing and takes ownership of it: rec must not be used after the
// call. It never blocks; it returns false when the record was dropped because the queue
// is full or the Logger is closed (the drop is counted).
func (l *Logger) Log(rec *Record) bool {
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		l.dropped.Add(1)
		l.put(rec)
		return false
	}
	select {
	case l.queue <- rec:
		l.closeMu.RUnlock()
		l.accepted.Add(1)
		return true
	default:
		l.closeMu.RUnlock()
		l.dropped.Add(1)
		l.put(rec)
		return false
	}
}

func (l *Logger) put(r *Record) {
	// Rows of a huge request would pin memory forever; let the GC have them.
	if cap(r.Rows) > 1<<20 || cap(r.Predictions) > 1<<20 || cap(r.ids) > 1<<20 {
		return
	}
	l.pool.Put(r)
}

// Close stops accepting records, writes out every accepted record, finishes and renames
// the current file. It returns the first error from finishing that file; records lost to
// write errors are counted in Stats.Failed. Close is idempotent.
func (l *Logger) Close() error {
	l.closeMu.Lock()
	if !l.closed {
		l.closed = true
		l.isClosed.Store(true)
		close(l.queue)
	}
	l.closeMu.Unlock()
	<-l.done
	if l.reg != nil {
		l.reg.Unregister()
	}
	return l.closeErr
}

// Stats returns the Logger's counters.
func (l *Logger) Stats() Stats {
	return Stats{
		Accepted: l.accepted.Load(),
		Dropped:  l.dropped.Load(),
		Written:  l.written.Load(),
		Failed:   l.failed.Load(),
		Bytes:    l.bytes.Load(),
		Files:    l.files.Load(),
	}
}

func (l *Logger) registerMetrics(m metric.Meter) error {
	if m == nil {
		m = noop.Meter{}
	}
	counter := func(name, unit, desc string) (metric.Int64ObservableCounter, error) {
		return m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	}
	written, err1 := counter("predictd.predlog.records.written", "{record}", "Prediction-log records flushed to a file.")
	dropped, err2 := counter("predictd.predlog.records.dropped", "{record}", "Prediction-log records dropped because the writer queue was full.")
	failed, err3 := counter("predictd.predlog.records.failed", "{record}", "Accepted prediction-log records lost to write errors.")
	bytes, err4 := counter("predictd.predlog.bytes", "By", "Compressed prediction-log bytes written.")
	files, err5 := counter("predictd.predlog.files", "{file}", "Prediction-log files opened.")
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return fmt.Errorf("predlog: metrics: %w", err)
	}
	attrs := metric.WithAttributes(attribute.String("log", l.cfg.Prefix))
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := l.Stats()
		o.ObserveInt64(written, int64(s.Written), attrs)
		o.ObserveInt64(dropped, int64(s.Dropped), attrs)
		o.ObserveInt64(failed, int64(s.Failed), attrs)
		o.ObserveInt64(bytes, int64(s.Bytes), attrs)
		o.ObserveInt64(files, int64(s.Files), attrs)
		return nil
	}, written, dropped, failed, bytes, files)
	if err != nil {
		return fmt.Errorf("predlog: metrics: %w", err)
	}
	l.reg = reg
	return nil
}

// Record is one logged request. Get one from Logger.Sample, fill it with the Set methods
// (which copy, so the caller's buffers may be reused as soon as they return) and hand it
// to Logger.Log.
type Record struct {
	// Time is when the request was sampled; Sample sets it.
	Time time.Time
	// Model and Version name what scored the rows. They are held, not copied: pass the
	// registry's strings, not views of a request buffer.
	Model, Version string
	// FeatureNames names the columns of Rows. It is held, not copied, and must not change
	// afterwards (a model's names are immutable).
	FeatureNames []string
	// ShadowOf is "model@version" of the primary when this record holds a shadow's scores.
	ShadowOf string

	Rows        []float64 // NumRows × NumFeatures, row-major; see SetRows
	NumRows     int
	NumFeatures int
	Predictions []float64 // NumRows × Outputs; see SetPredictions
	Outputs     int

	reqID []byte
	ids   []byte // candidate ids, back to back
	idEnd []int  // end offset of each id in ids
}

func (r *Record) reset() {
	r.Time = time.Time{}
	r.Model, r.Version, r.ShadowOf = "", "", ""
	r.FeatureNames = nil
	r.Rows, r.NumRows, r.NumFeatures = r.Rows[:0], 0, 0
	r.Predictions, r.Outputs = r.Predictions[:0], 0
	r.reqID, r.ids, r.idEnd = r.reqID[:0], r.ids[:0], r.idEnd[:0]
}

// SetRequestID copies the request id.
func (r *Record) SetRequestID(id string) { r.reqID = append(r.reqID[:0], id...) }

// RequestID returns the request id.
func (r *Record) RequestID() string { return string(r.reqID) }

// AddID copies one candidate id; call it once per row, in row order.
func (r *Record) AddID(id string) {
	r.ids = append(r.ids, id...)
	r.idEnd = append(r.idEnd, len(r.ids))
}

// AddIDBytes is AddID for an id held in a byte slice (a request buffer); it copies.
func (r *Record) AddIDBytes(id []byte) {
	r.ids = append(r.ids, id...)
	r.idEnd = append(r.idEnd, len(r.ids))
}

// IDs returns the candidate ids added so far.
func (r *Record) IDs() []string {
	out := make([]string, len(r.idEnd))
	start := 0
	for i, end := range r.idEnd {
		out[i] = string(r.ids[start:end])
		start = end
	}
	return out
}

// SetRows copies nrows row-major rows of nfeat values.
func (r *Record) SetRows(rows []float64, nrows, nfeat int) {
	r.Rows = append(r.Rows[:0], rows[:nrows*nfeat]...)
	r.NumRows, r.NumFeatures = nrows, nfeat
}

// SetRowsF32 is SetRows for float32 rows; values are widened exactly.
func (r *Record) SetRowsF32(rows []float32, nrows, nfeat int) {
	r.Rows = r.Rows[:0]
	for _, v := range rows[:nrows*nfeat] {
		r.Rows = append(r.Rows, float64(v))
	}
	r.NumRows, r.NumFeatures = nrows, nfeat
}

// SetPredictions copies NumRows × outputs predictions; call it after SetRows (or set
// NumRows first when logging predictions without rows).
func (r *Record) SetPredictions(preds []float64, outputs int) {
	r.Predictions = append(r.Predictions[:0], preds[:r.NumRows*outputs]...)
	r.Outputs = outputs
}

// appendJSON appends rec as one JSON line (without the newline). Strings follow
// wire.AppendJSONString: request ids come from clients and are not trusted to be text,
// so quotes and control characters are escaped and invalid UTF-8 bytes become U+FFFD.
func (r *Record) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","request_id":`...)
	dst = wire.AppendJSONString(dst, r.reqID)
	dst = append(dst, `,"model":`...)
	dst = wire.AppendJSONString(dst, r.Model)
	dst = append(dst, `,"version":`...)
	dst = wire.AppendJSONString(dst, r.Version)
	if r.ShadowOf != "" {
		dst = append(dst, `,"shadow_of":`...)
		dst = wire.AppendJSONString(dst, r.ShadowOf)
	}
	if len(r.idEnd) > 0 {
		dst = append(dst, `,"ids":[`...)
		start := 0
		for i, end := range r.idEnd {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = wire.AppendJSONString(dst, r.ids[start:end])
			start = end
		}
		dst = append(dst, ']')
	}
	if r.NumFeatures > 0 && len(r.Rows) == r.NumRows*r.NumFeatures {
		dst = append(dst, `,"features":`...)
		dst = appendMatrix(dst, r.Rows, r.NumRows, r.NumFeatures, false)
	}
	if r.Outputs > 0 && len(r.Predictions) == r.NumRows*r.Outputs {
		dst = append(dst, `,"predictions":`...)
		dst = appendMatrix(dst, r.Predictions, r.NumRows, r.Outputs, r.Outputs == 1)
	}
	return append(dst, '}')
}

// appendMatrix writes rows of width values as nested arrays, or as one flat array when
// flat is set.
func appendMatrix(dst []byte, vals []float64, nrows, width int, flat bool) []byte {
	dst = append(dst, '[')
	for i := 0; i < nrows; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		if !flat {
			dst = append(dst, '[')
		}
		for j, v := range vals[i*width : (i+1)*width] {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, v)
		}
		if !flat {
			dst = append(dst, ']')
		}
	}
	return append(dst, ']')
}

func appendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "null"...)
	case math.IsInf(v, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(v, -1):
		return append(dst, `"-Inf"`...)
	}
	// The shortest text that parses back to the same float64 (strconv's 'g', -1).
	return jsonnum.AppendFloat(dst, v)
}

// writer is the background goroutine's state.
type writer struct {
	l   *Logger
	enc *zstd.Encoder
	buf []byte

	f        io.WriteCloser // nil when no file is open
	cw       countingWriter
	path     string // final name; the open file is path+".part"
	opened   time.Time
	seq      int
	pending  uint64 // records written to the encoder since the last flush
	dirty    bool
	retryAt  time.Time
	hdrModel string
	hdrVer   string
	hdrNames []string
}

type countingWriter struct {
	w io.Writer
	n int64
	l *Logger
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.l.bytes.Add(uint64(n))
	return n, err
}

func newWriter(l *Logger) (*writer, error) {
	// One encoder goroutine: the writer already runs beside the request path and must
	// not take more than its share of CPU.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("predlog: %w", err)
	}
	return &writer{l: l, enc: enc}, nil
}

func (w *writer) run() {
	defer close(w.l.done)
	tick := time.NewTicker(w.l.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case r, ok := <-w.l.queue:
			if !ok {
				w.l.closeErr = w.finish()
				return
			}
			w.write(r)
			w.l.put(r)
		case <-tick.C:
			if w.f != nil && w.l.now().Sub(w.opened) >= w.l.cfg.MaxFileAge {
				w.finish()
			} else if w.dirty {
				w.flush()
			}
		}
	}
}

func (w *writer) write(r *Record) {
	now := w.l.now()
	if w.f != nil && (w.cw.n >= w.l.cfg.MaxFileBytes || now.Sub(w.opened) >= w.l.cfg.MaxFileAge) {
		w.finish()
	}
	if w.f == nil {
		if now.Before(w.retryAt) {
			w.l.failed.Add(1)
			return
		}
		if err := w.openNext(now); err != nil {
			w.fail()
			w.l.failed.Add(1)
			return
		}
	}
	w.buf = w.buf[:0]
	if r.Model != w.hdrModel || r.Version != w.hdrVer || !sameNames(r.FeatureNames, w.hdrNames) {
		w.buf = appendHeader(w.buf, r)
		w.buf = append(w.buf, '\n')
		w.hdrModel, w.hdrVer, w.hdrNames = r.Model, r.Version, r.FeatureNames
	}
	w.buf = r.appendJSON(w.buf)
	w.buf = append(w.buf, '\n')
	w.pending++
	w.dirty = true
	if _, err := w.enc.Write(w.buf); err != nil {
		w.fail()
	}
}

func appendHeader(dst []byte, r *Record) []byte {
	dst = append(dst, `{"header":{"model":`...)
	dst = wire.AppendJSONString(dst, r.Model)
	dst = append(dst, `,"version":`...)
	dst = wire.AppendJSONString(dst, r.Version)
	dst = append(dst, `,"features":[`...)
	for i, n := range r.FeatureNames {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = wire.AppendJSONString(dst, n)
	}
	return append(dst, "]}}"...)
}

// sameNames compares by identity first: a model's names are one immutable slice.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (w *writer) openNext(now time.Time) error {
	w.seq++
	name := fmt.Sprintf("%s-%s-%06d.jsonl.zst", w.l.cfg.Prefix, now.UTC().Format("20060102T150405Z"), w.seq)
	path := filepath.Join(w.l.cfg.Dir, name)
	f, err := w.l.open(path + ".part")
	if err != nil {
		return err
	}
	w.f, w.path, w.opened = f, path, now
	w.cw = countingWriter{w: f, l: w.l}
	w.enc.Reset(&w.cw)
	w.hdrModel, w.hdrVer, w.hdrNames = "", "", nil
	w.l.files.Add(1)
	return nil
}

// flush writes the encoder's buffered block; records written since the last flush count
// as written once it succeeds.
func (w *writer) flush() {
	if w.f == nil {
		return
	}
	if err := w.enc.Flush(); err != nil {
		w.fail()
		return
	}
	w.l.written.Add(w.pending)
	w.pending, w.dirty = 0, false
}

// finish ends the zstd stream, closes the file and renames it to its final name.
func (w *writer) finish() error {
	if w.f == nil {
		return nil
	}
	if err := w.enc.Close(); err != nil {
		w.fail()
		return err
	}
	w.l.written.Add(w.pending)
	w.pending, w.dirty = 0, false
	err := w.f.Close()
	if err == nil {
		err = w.l.rename(w.path+".part", w.path)
	}
	w.f = nil
	return err
}

// fail abandons the current file after a write error: the records not yet flushed are
// lost, and no new file is opened until RetryAfter has passed. The partial file is kept
// under its ".part" name; what was flushed before the error is still readable.
func (w *writer) fail() {
	w.l.failed.Add(w.pending)
	w.pending, w.dirty = 0, false
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.retryAt = w.l.now().Add(w.l.cfg.RetryAfter)
}
