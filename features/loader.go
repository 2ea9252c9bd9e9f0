package features

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Row is one entity's update: fields to set (the freshness timestamp among them) and field
// ids to delete (features whose cell was empty).
type Row struct {
	Entity  string
	Fields  []Field
	Missing []uint32
}

// Sink receives validated rows from Load. Writing the same rows twice leaves the same state
// (idempotent).
type Sink interface {
	WriteRows(ctx context.Context, g *Group, rows []Row) error
}

// RedisSink writes rows into Redis (standalone or Cluster): per row one HSET of all its
// fields and one HDEL of its empty ones, all rows of a batch in one pipeline.
type RedisSink struct {
	Client redis.UniversalClient
}

// WriteRows implements Sink.
func (s RedisSink) WriteRows(ctx context.Context, g *Group, rows []Row) error {
	pipe := s.Client.Pipeline()
	var key []byte
	for _, r := range rows {
		key = g.RedisKey(key[:0], r.Entity)
		args := make([]any, 0, 2*len(r.Fields))
		for _, f := range r.Fields {
			args = append(args, string(fieldKey(nil, f.ID)), f.Value)
		}
		pipe.HSet(ctx, string(key), args...)
		if len(r.Missing) > 0 {
			del := make([]string, len(r.Missing))
			for i, id := range r.Missing {
				del[i] = string(fieldKey(nil, id))
			}
			pipe.HDel(ctx, string(key), del...)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// WriteRows implements Sink: each row updates the entity's record in place.
func (e *Embedded) WriteRows(_ context.Context, g *Group, rows []Row) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.groups[g.Name]
	if m == nil {
		m = make(map[string]string)
		e.groups[g.Name] = m
	}
	var rec []byte
	for _, r := range rows {
		merged := make([]Field, 0, len(r.Fields))
		set := make(map[uint32]bool, len(r.Fields)+len(r.Missing))
		for _, f := range r.Fields {
			set[f.ID] = true
		}
		for _, id := range r.Missing {
			set[id] = true
		}
		if old, ok := m[r.Entity]; ok {
			_ = walkRecord(old, func(id uint32, v string) {
				if !set[id] {
					merged = append(merged, Field{ID: id, Value: []byte(v)})
				}
			})
		}
		merged = append(merged, r.Fields...)
		rec = appendRecord(rec[:0], merged)
		m[strings.Clone(r.Entity)] = string(rec)
	}
	return nil
}

// LoadConfig configures Load.
type LoadConfig struct {
	Group *Group
	Sink  Sink
	// Format is "csv" (default), "jsonl" or "parquet".
	Format string
	// BatchRows is how many rows go in one pipelined write; default 500.
	BatchRows int
	// Progress, when not nil, receives a progress line every ProgressEvery (default 1s).
	Progress      io.Writer
	ProgressEvery time.Duration
	// Timestamp is every row's freshness timestamp; default the time Load starts.
	Timestamp time.Time
	// MaxBadRows stops the load after this many bad rows; default 1000.
	MaxBadRows int
}

// BadRow is a row that was not written, with its 1-based line number in the input (for
// Parquet, its 1-based data row number).
type BadRow struct {
	Line int
	Err  string
}

// LoadStats summarizes a Load.
type LoadStats struct {
	Rows    int      // rows written
	Bad     int      // rows refused
	BadRows []BadRow // the first 100 refused rows
	Elapsed time.Duration
}

// RowsPerSecond is the write rate of the load.
func (s LoadStats) RowsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Rows) / s.Elapsed.Seconds()
}

// maxReportedBadRows bounds LoadStats.BadRows; the count goes on in Bad.
const maxReportedBadRows = 100

// Load reads rows for cfg.Group from r and writes them to cfg.Sink in pipelined batches. A
// CSV input starts with a header naming the group's key column and feature columns (any
// subset, any order; an unknown column is an error before anything is written). JSON lines
// hold one object per line with the same names; a Parquet file's top-level columns carry
// them (see loader_parquet.go). A row with any bad cell is refused whole,
// reported with its line number, and never partly written. An empty cell (or JSON null)
// deletes the entity's stored value of that feature. The error is non-nil for input that
// cannot be read at all, a sink failure, or more than MaxBadRows bad rows.
func Load(ctx context.Context, r io.Reader, cfg LoadConfig) (LoadStats, error) {
	if cfg.Group == nil || cfg.Sink == nil {
		return LoadStats{}, errors.New("features.Load: Group and Sink are required")
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 500
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.MaxBadRows <= 0 {
		cfg.MaxBadRows = 1000
	}
	if cfg.Timestamp.IsZero() {
		cfg.Timestamp = time.Now()
	}
	l := &loader{cfg: cfg, g: cfg.Group, start: time.Now(), ts: encodeTimestamp(nil, cfg.Timestamp)}
	l.lastProgress = l.start
	var err error
	switch cfg.Format {
	case "", "csv":
		err = l.csv(ctx, r)
	case "jsonl":
		err = l.jsonl(ctx, r)
	case "parquet":
		err = l.parquet(ctx, r)
	default:
		err = fmt.Errorf("unknown load format %q (want csv, jsonl or parquet)", cfg.Format)
	}
	if err == nil {
		err = l.flush(ctx)
	}
	l.stats.Elapsed = time.Since(l.start)
	if cfg.Progress != nil && l.stats.Rows+l.stats.Bad > 0 {
		l.progress(true)
	}
	return l.stats, err
}

type loader struct {
	cfg          LoadConfig
	g            *Group
	ts           []byte
	batch        []Row
	stats        LoadStats
	start        time.Time
	lastProgress time.Time
	vs           []float32
}

func (l *loader) bad(line int, err error) error {
	l.stats.Bad++
	if len(l.stats.BadRows) < maxReportedBadRows {
		l.stats.BadRows = append(l.stats.BadRows, BadRow{Line: line, Err: err.Error()})
	}
	if l.stats.Bad > l.cfg.MaxBadRows {
		where := "line" // CSV and JSON lines count file lines; Parquet counts data rows
		if l.cfg.Format == "parquet" {
			where = "row"
		}
		return fmt.Errorf("more than %d bad rows; stopped at %s %d (raise the limit or fix the file)", l.cfg.MaxBadRows, where, line)
	}
	return nil
}

func (l *loader) add(ctx context.Context, row Row) error {
	l.batch = append(l.batch, row)
	if len(l.batch) >= l.cfg.BatchRows {
		return l.flush(ctx)
	}
	return nil
}

func (l *loader) flush(ctx context.Context) error {
	if len(l.batch) == 0 {
		return nil
	}
	if err := l.cfg.Sink.WriteRows(ctx, l.g, l.batch); err != nil {
		return fmt.Errorf("writing %d rows after %d: %w", len(l.batch), l.stats.Rows, err)
	}
	l.stats.Rows += len(l.batch)
	l.batch = l.batch[:0]
	if l.cfg.Progress != nil && time.Since(l.lastProgress) >= l.cfg.ProgressEvery {
		l.progress(false)
	}
	return nil
}

func (l *loader) progress(final bool) {
	l.lastProgress = time.Now()
	el := time.Since(l.start).Seconds()
	end := "\r"
	if final {
		end = "\n"
	}
	fmt.Fprintf(l.cfg.Progress, "\rloading %s: %d rows, %.0f rows/s, %d bad%s", l.g.Name, l.stats.Rows, float64(l.stats.Rows)/max(el, 1e-9), l.stats.Bad, end)
}

// column is a header column: the key (f nil) or a feature.
type column struct {
	f   *Feature
	key bool
}

// buildRow validates and encodes one row's cells; get returns a column's cell and whether
// it is empty (missing).
func (l *loader) buildRow(entity string, cols []column, get func(i int) (string, bool)) (Row, error) {
	if entity == "" {
		return Row{}, fmt.Errorf("empty %s", l.g.Key)
	}
	if len(entity) > maxEntityLen {
		return Row{}, fmt.Errorf("%s of %d bytes is longer than %d", l.g.Key, len(entity), maxEntityLen)
	}
	row := Row{Entity: entity, Fields: []Field{{ID: timestampField, Value: l.ts}}}
	for i, c := range cols {
		if c.key {
			continue
		}
		cell, empty := get(i)
		if empty {
			row.Missing = append(row.Missing, c.f.id)
			continue
		}
		v, err := parseCell(c.f, cell, l.vs)
		if err != nil {
			return Row{}, err
		}
		if c.f.Type == List || c.f.Type == Embedding {
			l.vs = v.V[:0]
		}
		enc, err := l.g.EncodeValue(nil, c.f, v)
		if err != nil {
			return Row{}, err
		}
		row.Fields = append(row.Fields, Field{ID: c.f.id, Value: enc})
	}
	return row, nil
}

func (l *loader) header(names []string) ([]column, int, error) {
	cols := make([]column, len(names))
	keyAt := -1
	seen := make(map[string]bool, len(names))
	for i, name := range names {
		name = strings.TrimSpace(name)
		if seen[name] {
			return nil, 0, fmt.Errorf("column %q appears twice", name)
		}
		seen[name] = true
		if name == l.g.Key {
			cols[i].key, keyAt = true, i
			continue
		}
		f, err := l.g.Feature(name)
		if err != nil {
			return nil, 0, fmt.Errorf("column %d: %w (the group's features and key %q are allowed)", i+1, err, l.g.Key)
		}
		cols[i].f = f
	}
	if keyAt < 0 {
		return nil, 0, fmt.Errorf("no key column %q in the header", l.g.Key)
	}
	return cols, keyAt, nil
}

func (l *loader) csv(ctx context.Context, r io.Reader) error {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	hdr, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty input: want a CSV header")
		}
		return fmt.Errorf("CSV header: %w", err)
	}
	cols, keyAt, err := l.header(hdr)
	if err != nil {
		return fmt.Errorf("CSV header: %w", err)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return err
			}
			if e := l.bad(pe.StartLine, pe.Err); e != nil {
				return e
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		row, err := l.buildRow(rec[keyAt], cols, func(i int) (string, bool) {
			return rec[i], strings.TrimSpace(rec[i]) == ""
		})
		if err != nil {
			if e := l.bad(line, err); e != nil {
				return e
			}
			continue
		}
		if err := l.add(ctx, row); err != nil {
			return err
		}
	}
}

func (l *loader) jsonl(ctx context.Context, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), maxRecordLen)
	var names []string
	var cols []column
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(text, &obj); err != nil {
			if e := l.bad(line, fmt.Errorf("not a JSON object: %v", err)); e != nil {
				return e
			}
			continue
		}
		names = names[:0]
		for k := range obj {
			names = append(names, k)
		}
		var (
			keyAt int
			err   error
			row   Row
		)
		cols, keyAt, err = l.header(names)
		cells := make([]string, len(names))
		for i := 0; err == nil && i < len(names); i++ {
			cells[i], err = jsonText(obj[names[i]])
			if err != nil {
				err = fmt.Errorf("%q: %w", names[i], err)
			}
		}
		if err == nil {
			row, err = l.buildRow(cells[keyAt], cols, func(i int) (string, bool) {
				return cells[i], strings.TrimSpace(cells[i]) == ""
			})
		}
		if err == nil {
			if err := l.add(ctx, row); err != nil {
				return err
			}
			continue
		}
		if e := l.bad(line, err); e != nil {
			return e
		}
	}
	return sc.Err()
}

// jsonText turns a JSON value into the cell text parseCell reads: numbers as written,
// strings unquoted, arrays of numbers space-separated, null as "" (missing).
func jsonText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '[':
		var xs []float64
		if err := json.Unmarshal(raw, &xs); err != nil {
			return "", fmt.Errorf("want an array of numbers: %v", err)
		}
		b := make([]byte, 0, 12*len(xs))
		for i, x := range xs {
			if i > 0 {
				b = append(b, ' ')
			}
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		}
		return string(b), nil
	case '{', 't', 'f':
		return "", fmt.Errorf("want a number, string, array or null, got %s", raw)
	}
	return string(raw), nil
}
