package features

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// pqNum is how a Parquet leaf column's values read as feature values.
type pqNum uint8

const (
	pqSigned   pqNum = iota // INT32/INT64, signed or without an integer annotation
	pqUnsigned              // INT32/INT64 annotated as unsigned integers
	pqFloat                 // FLOAT/DOUBLE
	pqBytes                 // BYTE_ARRAY, plain or annotated as a string, enum or JSON
)

// pqColumn is a top-level Parquet column mapped to the group's key or one of its features.
type pqColumn struct {
	column
	name string
	leaf int          // leaf column index of its values
	kind parquet.Kind // physical type of its values
	num  pqNum
	list bool // a LIST (or a repeated field): values are a list's elements
	// listDef is the definition level of a present but empty list; a lower one is a null
	// list.
	listDef int
}

// pqReadRows is how many rows one ReadRows call decodes: few enough that rows of the
// largest allowed lists (65536 values) stay in the tens of MiB.
const pqReadRows = 64

// parquet loads a Parquet file: its top-level columns name the key and features like a CSV
// header, and it is read one row group at a time, pqReadRows rows per read, so a large
// file is never held in memory. A null cell (or an empty list) deletes the stored value
// like an empty CSV cell. Bad rows are reported with their 1-based data row number.
func (l *loader) parquet(ctx context.Context, r io.Reader) error {
	ra, size, done, err := parquetInput(r)
	if err != nil {
		return err
	}
	defer done()
	if err := pqCheckFooter(ra, size); err != nil {
		return fmt.Errorf("not a readable Parquet file: %w", err)
	}
	var f *parquet.File
	err = pqGuard(func() (err error) {
		f, err = parquet.OpenFile(ra, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
		return err
	})
	if err != nil {
		return fmt.Errorf("not a readable Parquet file: %w", err)
	}
	if err := pqGuard(func() error { return pqCheckPages(f.Metadata(), ra, size) }); err != nil {
		return fmt.Errorf("corrupt Parquet file: %w", err)
	}
	var cols []pqColumn
	keyAt := 0
	if err := pqGuard(func() (err error) {
		cols, keyAt, err = l.pqColumns(f.Root())
		return err
	}); err != nil {
		return fmt.Errorf("Parquet schema: %w", err)
	}

	rows := make([]parquet.Row, pqReadRows)
	byLeaf := make([][]parquet.Value, 0, len(cols))
	rowNum := 0
	for gi, rg := range f.RowGroups() {
		var rr parquet.Rows
		if err := pqGuard(func() error { rr = rg.Rows(); return nil }); err != nil {
			return fmt.Errorf("Parquet row group %d: %w", gi+1, err)
		}
		closeRows := func() { _ = pqGuard(rr.Close) }
		for {
			if err := ctx.Err(); err != nil {
				closeRows()
				return err
			}
			var n int
			rerr := pqGuard(func() (err error) {
				n, err = rr.ReadRows(rows)
				return err
			})
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				closeRows()
				return fmt.Errorf("reading Parquet row group %d after row %d: %w", gi+1, rowNum, rerr)
			}
			for _, pr := range rows[:n] {
				rowNum++
				byLeaf = pqByLeaf(byLeaf, pr, len(cols))
				row, err := l.pqRow(cols, keyAt, byLeaf)
				if err != nil {
					if e := l.bad(rowNum, err); e != nil {
						closeRows()
						return e
					}
					continue
				}
				if err := l.add(ctx, row); err != nil {
					closeRows()
					return err
				}
			}
			if rerr != nil || n == 0 {
				break
			}
		}
		if err := pqGuard(rr.Close); err != nil {
			return fmt.Errorf("Parquet row group %d: %w", gi+1, err)
		}
	}
	return nil
}

// pqGuard runs fn, a call into the Parquet reader, turning a panic into an error: the
// reader panics on some corrupt files, and a bad file must not take the process down.
func pqGuard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt Parquet file: %v", p)
		}
	}()
	return fn()
}

// The Parquet reader trusts sizes in the file: it allocates a footer, a page or a thrift
// list as large as the file claims (up to 2-4 GiB, or a list of 2^31 structs) before it
// reads it. pqCheckFooter and pqCheckPages bound every such size first, so that a corrupt
// or hostile file is refused with an error instead of exhausting memory.
const (
	// pqMaxPageBytes bounds a page's uncompressed size; writers cut pages at about 1 MiB,
	// and a row of the largest embedding (65536 float32) is 256 KiB.
	pqMaxPageBytes = 64 << 20
	// pqMaxPageValues bounds a page's value count (writers use at most about 20000 rows a
	// page); the reader allocates level buffers of this many bytes.
	pqMaxPageValues = 1 << 24
)

// pqCheckFooter checks the footer length in the file's last 8 bytes against the file size
// and the footer's thrift encoding (pqCheckThrift).
func pqCheckFooter(ra io.ReaderAt, size int64) error {
	const frame = 12 // "PAR1" at the start, then the footer length and "PAR1" at the end
	if size < frame {
		return fmt.Errorf("%d bytes is too short", size)
	}
	var tail [8]byte
	if n, err := ra.ReadAt(tail[:], size-8); n < len(tail) {
		return fmt.Errorf("reading the footer length: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-frame {
		return fmt.Errorf("footer length %d does not fit a file of %d bytes (truncated or corrupt)", n, size)
	}
	if string(tail[4:]) != "PAR1" {
		return nil // OpenFile says what is wrong
	}
	footer := make([]byte, n)
	if k, err := ra.ReadAt(footer, size-8-n); int64(k) < n {
		return fmt.Errorf("reading the footer: %w", err)
	}
	if _, err := pqCheckThrift(footer); err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	return nil
}

// pqCheckPages walks every column chunk's page headers (only the headers are read) and
// checks that each page lies inside its chunk and declares bounded sizes.
func pqCheckPages(md *format.FileMetaData, ra io.ReaderAt, size int64) error {
	var proto thrift.CompactProtocol
	var buf []byte
	for gi := range md.RowGroups {
		for ci := range md.RowGroups[gi].Columns {
			cm := &md.RowGroups[gi].Columns[ci].MetaData
			where := func(format string, args ...any) error {
				return fmt.Errorf("row group %d, column %d: %s", gi+1, ci+1, fmt.Sprintf(format, args...))
			}
			start := cm.DataPageOffset
			if cm.DictionaryPageOffset != 0 {
				start = cm.DictionaryPageOffset
			}
			end := start + cm.TotalCompressedSize
			if start < 0 || cm.TotalCompressedSize < 0 || end < start || end > size {
				return where("column chunk at %d (%d bytes) is outside the file of %d bytes", start, cm.TotalCompressedSize, size)
			}
			for pos := start; pos < end; {
				var n int
				var err error
				// A page header is usually tens of bytes; statistics can make it longer.
				for win := int64(4 << 10); ; win *= 16 {
					w := min(win, end-pos)
					if int64(cap(buf)) < w {
						buf = make([]byte, w)
					}
					b := buf[:w]
					if k, rerr := ra.ReadAt(b, pos); int64(k) < w {
						return where("reading the page header at %d: %v", pos, rerr)
					}
					if n, err = pqCheckThrift(b); err == nil || w == end-pos || win >= 16<<20 {
						break
					}
				}
				if err != nil {
					return where("page header at %d: %v", pos, err)
				}
				var h format.PageHeader
				if err := thrift.NewDecoder(proto.NewReaderFromBytes(buf[:n])).Decode(&h); err != nil {
					return where("page header at %d: %v", pos, err)
				}
				body := int64(h.CompressedPageSize)
				if body < 0 || pos+int64(n)+body > end {
					return where("page at %d of %d bytes runs past its column chunk", pos, body)
				}
				if h.UncompressedPageSize < 0 || h.UncompressedPageSize > pqMaxPageBytes {
					return where("page at %d of %d bytes (uncompressed) is larger than the loader's limit of %d", pos, h.UncompressedPageSize, pqMaxPageBytes)
				}
				var values int32
				switch {
				case h.DataPageHeader.Valid:
					values = h.DataPageHeader.V.NumValues
				case h.DataPageHeaderV2.Valid:
					values = h.DataPageHeaderV2.V.NumValues
				case h.DictionaryPageHeader.Valid:
					values = h.DictionaryPageHeader.V.NumValues
				}
				if values < 0 || values > pqMaxPageValues {
					return where("page at %d holds %d values; the loader's limit is %d", pos, values, pqMaxPageValues)
				}
				pos += int64(n) + body
			}
		}
	}
	return nil
}

// pqCheckThrift walks one thrift compact-protocol struct at the start of b and returns its
// length. It refuses a list, set, map or string that claims more elements or bytes than
// are left in b (each element takes at least one byte), and nesting deeper than 64.
func pqCheckThrift(b []byte) (int, error) {
	w := thriftWalker{b: b}
	if err := w.value(12, 0); err != nil {
		return 0, err
	}
	return w.pos, nil
}

type thriftWalker struct {
	b   []byte
	pos int
}

var errThriftShort = errors.New("thrift data ends early")

func (w *thriftWalker) byte() (byte, error) {
	if w.pos >= len(w.b) {
		return 0, errThriftShort
	}
	w.pos++
	return w.b[w.pos-1], nil
}

func (w *thriftWalker) uvarint() (uint64, error) {
	var x uint64
	for shift := 0; shift < 64; shift += 7 {
		c, err := w.byte()
		if err != nil {
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("thrift varint longer than 10 bytes")
}

// count reads a collection or string length and checks it against the bytes left.
func (w *thriftWalker) count(n uint64, what string) (int, error) {
	if n > uint64(len(w.b)-w.pos) {
		return 0, fmt.Errorf("thrift %s of %d does not fit the %d bytes left", what, n, len(w.b)-w.pos)
	}
	return int(n), nil
}

func (w *thriftWalker) skip(n int) error {
	if n > len(w.b)-w.pos {
		return errThriftShort
	}
	w.pos += n
	return nil
}

// value skips one value of compact type t.
func (w *thriftWalker) value(t byte, depth int) error {
	if depth > 64 {
		return errors.New("thrift nesting deeper than 64")
	}
	switch t {
	case 1, 2: // bool in a field header: no body
		return nil
	case 3: // byte; also a bool element of a list
		return w.skip(1)
	case 4, 5, 6: // i16, i32, i64 as zigzag varints
		_, err := w.uvarint()
		return err
	case 7: // double
		return w.skip(8)
	case 8: // binary
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		k, err := w.count(n, "string length")
		if err != nil {
			return err
		}
		return w.skip(k)
	case 9, 10: // list, set
		h, err := w.byte()
		if err != nil {
			return err
		}
		n := uint64(h >> 4)
		if n == 15 {
			if n, err = w.uvarint(); err != nil {
				return err
			}
		}
		k, err := w.count(n, "list size")
		if err != nil {
			return err
		}
		et := h & 0x0f
		if et == 1 || et == 2 {
			et = 3 // bools in a list take a byte each
		}
		for range k {
			if err := w.value(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 11: // map
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		k, err := w.count(n, "map size")
		if err != nil || k == 0 {
			return err
		}
		h, err := w.byte()
		if err != nil {
			return err
		}
		kt, vt := h>>4, h&0x0f
		for range k {
			if err := w.value(kt, depth+1); err != nil {
				return err
			}
			if err := w.value(vt, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 12: // struct: field headers until a stop byte
		for {
			h, err := w.byte()
			if err != nil {
				return err
			}
			if h == 0 {
				return nil
			}
			if h>>4 == 0 { // long form: the field id follows as a zigzag varint
				if _, err := w.uvarint(); err != nil {
					return err
				}
			}
			if err := w.value(h&0x0f, depth+1); err != nil {
				return err
			}
		}
	case 13: // uuid
		return w.skip(16)
	}
	return fmt.Errorf("unknown thrift type %d", t)
}

// parquetInput returns r as a random-access file with its size: Parquet's metadata is at
// the end. A reader that cannot seek (stdin, a pipe) is first copied to a temporary file,
// not to memory. done releases the temporary file.
func parquetInput(r io.Reader) (ra io.ReaderAt, size int64, done func(), err error) {
	if rs, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		if size, err := rs.Seek(0, io.SeekEnd); err == nil {
			return rs, size, func() {}, nil
		}
	}
	tmp, err := os.CreateTemp("", "predictd-load-*.parquet")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spooling Parquet input to a temporary file: %w", err)
	}
	done = func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}
	if size, err = io.Copy(tmp, r); err != nil {
		done()
		return nil, 0, nil, fmt.Errorf("spooling Parquet input to %s: %w", tmp.Name(), err)
	}
	return tmp, size, done, nil
}

// pqColumns maps the file's top-level columns to the key and features (like a CSV header)
// and checks that each column's Parquet type can hold its feature's values. Every error
// here refuses the file before anything is written.
func (l *loader) pqColumns(root *parquet.Column) ([]pqColumn, int, error) {
	top := root.Columns()
	names := make([]string, len(top))
	for i, c := range top {
		names[i] = c.Name()
	}
	hdr, keyAt, err := l.header(names)
	if err != nil {
		return nil, 0, err
	}
	cols := make([]pqColumn, len(top))
	for i, c := range top {
		pc := &cols[i]
		pc.column, pc.name = hdr[i], c.Name()
		// Walk down to the one leaf, counting the optional levels above the repeated one:
		// a definition level up to that count is a null or empty list.
		leaf, repeated := c, false
		for {
			repeated = repeated || leaf.Repeated()
			if !repeated && leaf.Optional() {
				pc.listDef++
			}
			if leaf.Leaf() {
				break
			}
			kids := leaf.Columns()
			if len(kids) != 1 {
				return nil, 0, fmt.Errorf("column %q is a group of %d fields; want a scalar or a LIST", pc.name, len(kids))
			}
			leaf = kids[0]
		}
		switch {
		case leaf.MaxRepetitionLevel() == 0 && leaf == c:
		case leaf.MaxRepetitionLevel() == 1:
			pc.list = true
		case leaf.MaxRepetitionLevel() > 1:
			return nil, 0, fmt.Errorf("column %q is a nested list; want a LIST of numbers", pc.name)
		default:
			return nil, 0, fmt.Errorf("column %q is a group; want a scalar or a LIST", pc.name)
		}
		t := leaf.Type()
		num, ok := pqNumOf(t)
		if !ok {
			return nil, 0, fmt.Errorf("column %q has Parquet type %s, which is not loadable; want an integer, float, double or string", pc.name, pqTypeName(t))
		}
		pc.leaf, pc.kind, pc.num = leaf.Index(), t.Kind(), num
		want := "an integer, float or double"
		var fits bool
		switch {
		case pc.key:
			want, fits = "a string or integer", !pc.list && num != pqFloat
		case pc.f.Type == String:
			want, fits = "a string or integer", !pc.list && num != pqFloat
		case pc.f.Type == List || pc.f.Type == Embedding:
			want, fits = "a LIST of float or double", pc.list && num != pqBytes
		default:
			fits = !pc.list && num != pqBytes
		}
		if !fits {
			what := "the key"
			if !pc.key {
				what = fmt.Sprintf("a %s feature", pc.f.Type)
			}
			got := pqTypeName(t)
			if pc.list {
				got = "LIST of " + got
			}
			return nil, 0, fmt.Errorf("column %q is %s, but %s needs %s", pc.name, got, what, want)
		}
	}
	return cols, keyAt, nil
}

// pqNumOf classifies a leaf type; ok is false for types that are not plain numbers or
// strings (BOOLEAN, INT96, DECIMAL, dates, times, timestamps, UUIDs, ...), whose meaning
// as a feature value would be a guess.
func pqNumOf(t parquet.Type) (num pqNum, ok bool) {
	var intType *format.IntType
	if lt := t.LogicalType(); lt != nil && lt.Value != nil {
		switch v := lt.Value.(type) {
		case *format.IntType:
			intType = v
		case *format.StringType, *format.EnumType, *format.JsonType:
			return pqBytes, t.Kind() == parquet.ByteArray
		default:
			return 0, false
		}
	}
	switch t.Kind() {
	case parquet.Int32, parquet.Int64:
		if intType != nil && !intType.IsSigned {
			return pqUnsigned, true
		}
		return pqSigned, true
	case parquet.Float, parquet.Double:
		return pqFloat, intType == nil
	case parquet.ByteArray:
		return pqBytes, intType == nil
	}
	return 0, false
}

func pqTypeName(t parquet.Type) string {
	if lt := t.LogicalType(); lt != nil && lt.Value != nil {
		return fmt.Sprintf("%s (%s)", t.Kind(), lt)
	}
	return t.Kind().String()
}

// pqByLeaf groups a row's values by leaf column index into dst.
func pqByLeaf(dst [][]parquet.Value, row parquet.Row, leaves int) [][]parquet.Value {
	if cap(dst) < leaves {
		dst = make([][]parquet.Value, leaves)
	}
	dst = dst[:leaves]
	for i := range dst {
		dst[i] = dst[i][:0]
	}
	for _, v := range row {
		if c := v.Column(); c >= 0 && c < leaves {
			dst[c] = append(dst[c], v)
		}
	}
	return dst
}

// pqRow validates and encodes one Parquet row; an error refuses it whole.
func (l *loader) pqRow(cols []pqColumn, keyAt int, byLeaf [][]parquet.Value) (Row, error) {
	kc := &cols[keyAt]
	kv := byLeaf[kc.leaf]
	if len(kv) != 1 || kv[0].IsNull() {
		return Row{}, fmt.Errorf("null %s", l.g.Key)
	}
	// buildRow with only the key column validates the entity id and adds the timestamp.
	row, err := l.buildRow(pqText(kc, kv[0]), []column{{key: true}}, nil)
	if err != nil {
		return Row{}, err
	}
	for i := range cols {
		c := &cols[i]
		if c.key {
			continue
		}
		vals := byLeaf[c.leaf]
		var v Value
		missing := len(vals) == 0
		if c.list {
			missing = missing || len(vals) == 1 && vals[0].DefinitionLevel() <= c.listDef
		} else {
			missing = missing || vals[0].IsNull()
		}
		if missing {
			row.Missing = append(row.Missing, c.f.id)
			continue
		}
		switch c.f.Type {
		case Float32, Float64:
			x := pqFloat64(c, vals[0])
			if c.f.Type == Float32 && math.Abs(x) > math.MaxFloat32 && !math.IsInf(x, 0) {
				return Row{}, fmt.Errorf("%q: %g does not fit a float32", c.f.Name, x)
			}
			v.F = x
		case Int64:
			if v.I, err = pqInt64(c, vals[0]); err != nil {
				return Row{}, err
			}
		case String:
			v.S = []byte(pqText(c, vals[0]))
		case List, Embedding:
			if len(vals) > c.f.Width() {
				if c.f.Type == List {
					return Row{}, fmt.Errorf("%q: more than %d values", c.f.Name, c.f.Len)
				}
				return Row{}, fmt.Errorf("%q: embedding needs %d values, got %d", c.f.Name, c.f.Dim, len(vals))
			}
			vs := l.vs[:0]
			for j, e := range vals {
				if e.IsNull() {
					return Row{}, fmt.Errorf("%q: value %d is null", c.f.Name, j+1)
				}
				x := pqFloat64(c, e)
				if math.Abs(x) > math.MaxFloat32 && !math.IsInf(x, 0) {
					return Row{}, fmt.Errorf("%q: value %d, %g, does not fit a float32", c.f.Name, j+1, x)
				}
				vs = append(vs, float32(x))
			}
			l.vs, v.V = vs, vs
			if c.f.Type == Embedding && len(vs) != c.f.Dim {
				return Row{}, fmt.Errorf("%q: embedding needs %d values, got %d", c.f.Name, c.f.Dim, len(vs))
			}
		}
		enc, err := l.g.EncodeValue(nil, c.f, v)
		if err != nil {
			return Row{}, err
		}
		row.Fields = append(row.Fields, Field{ID: c.f.id, Value: enc})
	}
	return row, nil
}

// pqText is a string or integer value as text: integers in decimal.
func pqText(c *pqColumn, v parquet.Value) string {
	switch {
	case c.num == pqBytes:
		return string(v.ByteArray())
	case c.num == pqUnsigned:
		return strconv.FormatUint(pqUint64(c, v), 10)
	case c.kind == parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	}
	return strconv.FormatInt(v.Int64(), 10)
}

func pqUint64(c *pqColumn, v parquet.Value) uint64 {
	if c.kind == parquet.Int32 {
		return uint64(v.Uint32())
	}
	return v.Uint64()
}

// pqFloat64 is a numeric value as a float64 (large int64s round, as in a CSV load).
func pqFloat64(c *pqColumn, v parquet.Value) float64 {
	switch {
	case c.kind == parquet.Float:
		return float64(v.Float())
	case c.kind == parquet.Double:
		return v.Double()
	case c.num == pqUnsigned:
		return float64(pqUint64(c, v))
	case c.kind == parquet.Int32:
		return float64(v.Int32())
	}
	return float64(v.Int64())
}

// pqInt64 is a numeric value as an int64: floats only when they are whole numbers in range.
func pqInt64(c *pqColumn, v parquet.Value) (int64, error) {
	switch {
	case c.num == pqFloat:
		x := pqFloat64(c, v)
		// 2^63 is exactly representable; every float64 below it in magnitude converts.
		if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
			return 0, fmt.Errorf("%q: %g is not an int64", c.f.Name, x)
		}
		return int64(x), nil
	case c.num == pqUnsigned:
		u := pqUint64(c, v)
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("%q: %d does not fit an int64", c.f.Name, u)
		}
		return int64(u), nil
	case c.kind == parquet.Int32:
		return int64(v.Int32()), nil
	}
	return v.Int64(), nil
}
