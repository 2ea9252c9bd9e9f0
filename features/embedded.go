package features

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Embedded is the in-process feature store: the same records as Redis (per group and
// entity, field id → stored value), held in memory and filled from a snapshot file or by
// the loader. It is the store when no Redis is configured. It is safe for concurrent use.
type Embedded struct {
	mu     sync.RWMutex
	groups map[string]map[string]string // group → entity → record (see appendRecord)
}

// NewEmbedded returns an empty embedded store.
func NewEmbedded() *Embedded {
	return &Embedded{groups: make(map[string]map[string]string)}
}

// Field is one stored field of an entity: a feature's field id and stored value.
type Field struct {
	ID    uint32
	Value []byte
}

// appendRecord appends an entity's fields in the record form the embedded store and its
// snapshots use: per field, the 4-byte little-endian id, a uvarint length, the value.
func appendRecord(dst []byte, fields []Field) []byte {
	for _, f := range fields {
		dst = binary.LittleEndian.AppendUint32(dst, f.ID)
		dst = binary.AppendUvarint(dst, uint64(len(f.Value)))
		dst = append(dst, f.Value...)
	}
	return dst
}

// walkRecord calls fn for each field of a record; it fails on a malformed record.
func walkRecord(rec string, fn func(id uint32, val string)) error {
	for len(rec) > 0 {
		if len(rec) < 5 {
			return fmt.Errorf("%w: truncated record field", ErrBadValue)
		}
		id := binary.LittleEndian.Uint32(bytesOf(rec[:4]))
		n, k := binary.Uvarint(bytesOf(rec[4:]))
		if k <= 0 || n > uint64(len(rec)-4-k) {
			return fmt.Errorf("%w: bad record field length", ErrBadValue)
		}
		start := 4 + k
		fn(id, rec[start:start+int(n)])
		rec = rec[start+int(n):]
	}
	return nil
}

// Put stores an entity's fields (its freshness timestamp among them), replacing what the
// store held for it.
func (e *Embedded) Put(group, entity string, fields []Field) {
	rec := string(appendRecord(nil, fields))
	e.mu.Lock()
	m := e.groups[group]
	if m == nil {
		m = make(map[string]string)
		e.groups[group] = m
	}
	m[entity] = rec
	e.mu.Unlock()
}

// Len returns how many entities the store holds for group.
func (e *Embedded) Len(group string) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.groups[group])
}

func (e *Embedded) get(_ context.Context, g *Group, fields []string, entities []string, vals []string, ok []bool) error {
	nf := len(fields)
	idx := make(map[uint32]int, nf)
	for j, f := range fields {
		idx[binary.LittleEndian.Uint32(bytesOf(f))] = j
	}
	e.mu.RLock()
	m := e.groups[g.Name]
	e.mu.RUnlock()
	for i, ent := range entities {
		e.mu.RLock()
		rec, found := m[ent]
		e.mu.RUnlock()
		if !found {
			continue
		}
		row := i * nf
		// Records are validated when stored or read from a snapshot.
		_ = walkRecord(rec, func(id uint32, v string) {
			if j, want := idx[id]; want {
				vals[row+j], ok[row+j] = v, true
			}
		})
	}
	return nil
}

// snapshotMagic starts every snapshot, inside the zstd stream.
const snapshotMagic = "predictd-features-snapshot-v1\n"

// Limits on snapshot items, so a corrupt or hostile file fails cleanly instead of
// allocating without bound.
const (
	maxEntityLen = 1 << 16 // 64 KiB entity ids
	maxRecordLen = 1 << 24 // 16 MiB per entity record
)

// WriteSnapshot writes the store as a zstd-compressed snapshot: the magic line, then per
// entity uvarint-prefixed group name, entity id and record, sorted for reproducible files.
func (e *Embedded) WriteSnapshot(w io.Writer) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<16)
	bw.WriteString(snapshotMagic)
	e.mu.RLock()
	groups := make([]string, 0, len(e.groups))
	for g := range e.groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var hdr []byte
	for _, g := range groups {
		ents := make([]string, 0, len(e.groups[g]))
		for ent := range e.groups[g] {
			ents = append(ents, ent)
		}
		sort.Strings(ents)
		for _, ent := range ents {
			rec := e.groups[g][ent]
			hdr = binary.AppendUvarint(hdr[:0], uint64(len(g)))
			hdr = append(hdr, g...)
			hdr = binary.AppendUvarint(hdr, uint64(len(ent)))
			hdr = append(hdr, ent...)
			hdr = binary.AppendUvarint(hdr, uint64(len(rec)))
			bw.Write(hdr)
			bw.WriteString(rec)
		}
	}
	e.mu.RUnlock()
	if err := bw.Flush(); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

// ReadSnapshot reads a snapshot written by WriteSnapshot into the store, replacing entities
// it already holds. A malformed snapshot is an error and leaves the store unchanged.
func (e *Embedded) ReadSnapshot(r io.Reader) error {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("snapshot: not a predictd feature snapshot (bad header)")
	}
	add := make(map[string]map[string]string)
	readStr := func(what string, limit int) (string, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return "", err
		}
		if n > uint64(limit) {
			return "", fmt.Errorf("%s of %d bytes exceeds the limit of %d", what, n, limit)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return string(b), nil
	}
	for item := 1; ; item++ {
		g, err := readStr("group name", 64)
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && !validName(g) {
			err = fmt.Errorf("bad group name %q", g)
		}
		var ent, rec string
		if err == nil {
			ent, err = readStr("entity id", maxEntityLen)
		}
		if err == nil {
			rec, err = readStr("record", maxRecordLen)
		}
		if err == nil {
			err = walkRecord(rec, func(uint32, string) {})
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("snapshot: item %d: %w", item, err)
		}
		if add[g] == nil {
			add[g] = make(map[string]string)
		}
		add[g][ent] = rec
	}
	e.mu.Lock()
	for g, ents := range add {
		if e.groups[g] == nil {
			e.groups[g] = ents
			continue
		}
		for ent, rec := range ents {
			e.groups[g][ent] = rec
		}
	}
	e.mu.Unlock()
	return nil
}

// LoadSnapshot reads a snapshot file into a new embedded store.
func LoadSnapshot(path string) (*Embedded, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e := NewEmbedded()
	if err := e.ReadSnapshot(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// SaveSnapshot writes the store to path atomically (a temporary file renamed over it).
func (e *Embedded) SaveSnapshot(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil { // CreateTemp makes 0600 files
		tmp.Close()
		return err
	}
	if err := e.WriteSnapshot(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
