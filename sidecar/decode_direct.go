package sidecar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"unsafe"
)

// Named candidates decoded straight into the matrix.
//
// When the body names its model (and version) first (peekModel, peekVersion), the
// version is resolved before decoding and the decoders write each candidate's features
// into its row of the version's matrix as they read them: the row is filled with NaN
// when the candidate starts, each name is resolved through a learned layout (the first
// candidate's names; later candidates' names compared byte for byte, a map lookup on a
// mismatch, see writeFeatures), and no per-candidate list of features is built.
//
// What assemble writes before the candidates' features keeps its order: a feature whose
// column the feature store fills, or a context feature sets, is not written in place
// but appended to the request's features as the generic path does, and apply writes it
// after the store and the context, as for any request. An unknown name is kept and
// reported by apply where the generic path reports it.
//
// Whatever the direct path does not take on, the generic path does, by decoding the
// body again from the start (the JSON decoder's in-place unescapes undone first): a
// decoding error (so the error is the generic path's, word for word), context after a
// candidate, and a model or version other than the one resolved (a later duplicate
// field).

// direct is a request's state on the direct path; the zero value is off. Its slices
// keep their capacity across pooled requests.
type direct struct {
	v          *version // the resolved version; nil: off
	model, ver []byte   // what v was resolved from (the peeked fields)
	maxCells   int      // matrix's limit (Config.MaxCells): rows past it are not kept
	rowCells   int      // cells one row counts against maxCells: max(features, outputs)
	ready      bool     // deferred is set (at the first candidate)
	overflow   bool     // rows past maxCells were decoded into scratch; matrix fails
	deferred   []bool   // per column: written by apply (store-backed, or set by the context)
	proto      bool     // the body is protobuf, else JSON
	places     []place  // the learned layout: the first candidate's names, in order
	pre        []byte   // the bytes each place expects before its value
	layoutAt   []int32  // per column, 1 + its place in the layout (0: not in it)
	unknown    span     // the first unknown name (when hasUnknown)
	hasUnknown bool
	// longNumbers: a number too long for one 8-byte word came in a layout run; the
	// request's later runs read numbers of any length (layoutRun's short).
	longNumbers bool
	cells       int   // values counted against decodeLimits.cells not in r's lists
	charged     int64 // matrix bytes taken from the byte budget
	scratch     []float64
	nans        []float64 // a row of NaN, copied into each new row
	undo        []byte    // JSON: the original bytes of strings unescaped in place
	undoAt      []uint32  // their offsets and lengths, in pairs
}

// place is a name of the learned layout: its column, and the bytes that precede its
// value in the body when a later candidate sends it as the first one did (pre[pre:
// pre+npre]; npre 0: none are compared).
//
//   - protobuf: the Feature's tag and length, the name's tag, length and bytes, the
//     value's tag (a Feature without a value has the same bytes but its length and the
//     value's tag);
//   - JSON: the quoted name, then the colon with the white space around it as the
//     first candidate wrote them (`"name":`, `"name": `), when the name is its own
//     bytes in JSON.
//
// The bytes are also kept as the 8-byte words that match compares (w: the first, the
// second, the last; more than 24 bytes: the words between the second and the last are
// read from pre), so that the loop reads them from the place it already holds: fewer
// than 8 bytes are w[0] and the mask of their bytes w[1]; none, w[0] 1 and w[1] 0, which
// no bytes match.
type place struct {
	col       int32 // ≥ 0: written in place; -1 unknown; -2-col deferred
	pre, npre uint32
	w         [3]uint64
}

// errRedo ends a direct decode that the generic path must take over (see above).
var errRedo = errors.New("decode again on the generic path")

// beginDirect turns the direct path on for a body that names model and ver first,
// resolved to v; maxCells is the limit matrix will be called with.
func (r *request) beginDirect(v *version, model, ver []byte, maxCells int) {
	d := &r.dir
	r.m64 = r.m64[:0]
	d.v, d.model, d.ver, d.maxCells = v, model, ver, maxCells
	d.rowCells = max(v.nfeat, v.pred.NumOutputs(true), v.pred.NumOutputs(false), 1)
}

func (d *direct) on() bool { return d.v != nil }

// reset turns the direct path off and drops its views of the body.
func (d *direct) reset() {
	d.v, d.model, d.ver = nil, nil, nil
	d.ready, d.overflow, d.hasUnknown, d.longNumbers = false, false, false, false
	d.unknown, d.cells, d.charged = span{}, 0, 0
	d.places, d.pre = d.places[:0], d.pre[:0]
	d.undo, d.undoAt = d.undo[:0], d.undoAt[:0]
}

func (d *direct) pooledBytes() int {
	return cap(d.deferred) + cap(d.pre) + int(unsafe.Sizeof(place{}))*cap(d.places) + 4*(cap(d.layoutAt)+cap(d.undoAt)) +
		8*(cap(d.scratch)+cap(d.nans)) + cap(d.undo)
}

// resolvedAs tells whether r's decoded model and version are the ones v was resolved from.
func (d *direct) resolvedAs(r *request) bool {
	return bytes.Equal(r.model, d.model) && bytes.Equal(r.version, d.ver)
}

// cellCount is what decodeLimits.cells counts: every decoded value and key.
func (r *request) cellCount() int {
	return len(r.feats) + len(r.context) + len(r.ctxKeys) + len(r.candKeys) + len(r.rows) + len(r.vecVals) + r.dir.cells
}

// redecode undoes a direct decode of r.body and decodes it again with decode on the
// generic path.
func (r *request) redecode(decode func(*request, []byte, decodeLimits) error, lim decodeLimits) error {
	d := &r.dir
	body := r.body
	for i := len(d.undoAt) - 2; i >= 0; i -= 2 { // the last first: they do not overlap
		off, n := d.undoAt[i], d.undoAt[i+1]
		d.undo = d.undo[:len(d.undo)-int(n)]
		copy(body[off:off+n], d.undo[len(d.undo):len(d.undo)+int(n)])
	}
	d.reset()
	r.model, r.version, r.output = nil, nil, outputDefault
	r.context, r.ctxKeys, r.cands, r.feats, r.candKeys = r.context[:0], r.ctxKeys[:0], r.cands[:0], r.feats[:0], r.candKeys[:0]
	r.ids = r.ids[:0]
	r.vecs, r.vecVals = r.vecs[:0], r.vecVals[:0]
	r.dense, r.rows, r.nrows, r.width = false, r.rows[:0], 0, 0
	r.m64 = r.m64[:0]
	return decode(r, body, lim)
}

// saveString records the bytes of the JSON string that starts at b[start] (its
// contents, up to the closing quote or the end) before they are unescaped in place.
func (d *direct) saveString(b []byte, start int) {
	j := start
	for j < len(b) && b[j] != '"' {
		if b[j] == '\\' {
			j++
		}
		j++
	}
	j = min(j, len(b))
	d.undo = append(d.undo, b[start:j]...)
	d.undoAt = append(d.undoAt, uint32(start), uint32(j-start))
}

// setup marks the columns apply writes before the candidates' features: the store's
// and the context's (all of which the decoder has read: context after a candidate is
// redone on the generic path).
func (d *direct) setup(r *request) {
	nf := d.v.nfeat
	d.deferred = slices.Grow(d.deferred[:0], nf)[:nf]
	clear(d.deferred)
	for _, s := range d.v.stored {
		for k := range s.Width {
			d.deferred[s.Column+k] = true
		}
	}
	for _, f := range r.context {
		if col, ok := d.v.cols[string(r.bytes(f.name))]; ok {
			d.deferred[col] = true
		}
	}
	d.layoutAt = growI32(d.layoutAt[:0], nf)
	clear(d.layoutAt)
	d.ready = true
}

// row starts the next candidate's row of r.m64 (filled with NaN) and returns it. Rows
// past d.maxCells are decoded into a scratch row: matrix fails for them.
func (d *direct) row(r *request) ([]float64, error) {
	if !d.ready {
		d.setup(r)
	}
	nf := d.v.nfeat
	var row []float64
	if d.overflow || (len(r.cands)+1)*d.rowCells > d.maxCells {
		d.overflow = true
		d.scratch = growF64(d.scratch[:0], nf)
		row = d.scratch
	} else {
		r.m64 = growF64(r.m64, nf)
		row = r.m64[len(r.m64)-nf:]
		// The matrix is charged to the byte budget as it grows, in steps of 64 rows;
		// settle returns what the request does not use.
		if need := 8 * int64(len(r.m64)); r.budget != nil && need > d.charged {
			step := max(need-d.charged, 8*64*int64(nf))
			if err := r.take(step, "its matrix and scores"); err != nil {
				return nil, err
			}
			d.charged += step
		}
	}
	if len(d.nans) != nf {
		d.nans = growF64(d.nans[:0], nf)
		for i := range d.nans {
			d.nans[i] = math.NaN()
		}
	}
	copy(row, d.nans)
	return row, nil
}

// reserve grows r's candidates and matrix for about n more candidates (an estimate from
// the first one's size), so that a large body's matrix is allocated once: within the
// limits, and within the bytes the request took for its decoding (decodeReserve per
// body byte), so that a small first candidate cannot make it reserve more than the body
// pays for. Beyond that the matrix grows as it fills.
func (d *direct) reserve(r *request, n int, lim decodeLimits) {
	nf := max(d.v.nfeat, 1)
	n = min(n, lim.rows-len(r.cands), d.maxCells/d.rowCells-len(r.cands), decodeReserve*len(r.body)/(8*nf))
	if n <= 0 {
		return
	}
	r.cands = slices.Grow(r.cands, n)
	r.m64 = slices.Grow(r.m64, n*d.v.nfeat)
}

// put writes feature sp (a span of r.body) of value x into row, the row of the
// candidate being decoded, when its name is not the learned layout's name at place p
// (or that name is not written in place), and returns the place the next name is
// expected at. learning: the candidate is the first one, whose names make the layout.
// colon (JSON) is the body's bytes between the name's closing quote and its value: ':'
// and the white space around it, which the place's bytes keep, so that a client that
// writes `"name": 1.5` (Python's json.dumps) is read as fast as one that writes
// `"name":1.5`.
func (d *direct) put(r *request, sp span, x float64, row []float64, p int, learning bool, colon []byte) int {
	name := r.bytes(sp)
	col, ok := d.v.cols[string(name)]
	// A first candidate with more names than the model has columns repeats names or
	// sends unknown ones: past maxPlaces, its names are looked up without being learned,
	// so the layout stays the size of the model, whatever the body.
	if learning && len(d.places) >= d.maxPlaces() {
		learning = false
	}
	if learning {
		pl := place{col: -1, pre: uint32(len(d.pre))}
		if ok {
			pl.col = int32(col)
			if d.deferred[col] {
				pl.col = -2 - pl.col
			}
			if d.layoutAt[col] == 0 {
				d.layoutAt[col] = int32(len(d.places) + 1)
			}
		}
		if pl.col >= 0 {
			switch {
			case d.proto && len(name)+11 < 0x80:
				d.pre = append(d.pre, tagCandidateFeature, byte(len(name)+11), tagFeatureName, byte(len(name)))
				d.pre = append(d.pre, name...)
				d.pre = append(d.pre, tagFeatureValue)
			case !d.proto && rawJSONName(name) && len(colon) <= maxJSONColon:
				d.pre = append(d.pre, '"')
				d.pre = append(d.pre, name...)
				d.pre = append(d.pre, '"')
				d.pre = append(d.pre, colon...)
			}
		}
		pl.npre = uint32(len(d.pre)) - pl.pre
		pl.w = placeWords(d.pre[pl.pre:])
		d.places = append(d.places, pl)
		p = len(d.places)
	}
	switch {
	case !ok:
		if !d.hasUnknown {
			d.unknown, d.hasUnknown = sp, true
		}
		d.cells++
		return p
	case d.deferred[col]:
		r.feats = append(r.feats, feature{name: sp, value: x})
	default:
		row[col] = x
		d.cells++
	}
	if !learning {
		if at := d.layoutAt[col]; at > 0 {
			p = int(at)
		}
	}
	return p
}

// maxJSONColon is the most bytes a place keeps for the ':' and the white space around
// it; a name written with more (pretty-printing of an odd kind) is not learned.
const maxJSONColon = 8

// placeWords returns a place's w for the bytes b it expects (see place).
func placeWords(b []byte) [3]uint64 {
	switch n := len(b); {
	case n == 0:
		return [3]uint64{1, 0, 0} // matches nothing
	case n < 8:
		var w [8]byte
		copy(w[:], b)
		return [3]uint64{binary.LittleEndian.Uint64(w[:]), 1<<(8*n) - 1, 0}
	default:
		return [3]uint64{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[min(8, n-8):]), binary.LittleEndian.Uint64(b[n-8:])}
	}
}

// maxDirectContext is how many protobuf context features or request keys the direct
// path decodes, uncounted, before it hands the body to the generic path, which counts a
// large body first (presize.go).
const maxDirectContext = 1 << 12

// maxListed is how many candidate features or keys the direct path lists before it
// hands the body to the generic path, which counts a large body before it decodes
// (presize.go): a few per candidate and column, as store overrides and entity keys
// take, but not a body built of them.
func (d *direct) maxListed(r *request) int { return 1<<12 + (d.v.nfeat+16)*(len(r.cands)+1) }

// maxPlaces is the most names the learned layout holds: the model's columns, twice,
// for a first candidate that repeats some.
func (d *direct) maxPlaces() int { return 2*d.v.nfeat + 16 }

// rawJSONName tells whether name, written in a JSON string, is its own bytes: no quote,
// backslash or control character, so that the body's raw bytes can be compared with it.
func rawJSONName(name []byte) bool {
	for _, c := range name {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// unknownFeature is the error apply reports for the first unknown candidate feature
// the direct path met (nil when none).
func (d *direct) unknownFeature(r *request, v *version) error {
	if !d.hasUnknown {
		return nil
	}
	return unknownFeature(v, r.bytes(d.unknown))
}

// sameName is string(a) == string(b), in line for names of 8 to 24 bytes (as rankers
// name features), compared as 8-byte words, the last overlapping: the runtime's memequal
// costs a call per name (BenchmarkNamedCandidates).
func sameName(a, b []byte) bool {
	if n := len(a); n == len(b) && n >= 8 && n <= 24 {
		return binary.LittleEndian.Uint64(a) == binary.LittleEndian.Uint64(b) &&
			binary.LittleEndian.Uint64(a[n-8:]) == binary.LittleEndian.Uint64(b[n-8:]) &&
			(n <= 16 || binary.LittleEndian.Uint64(a[8:]) == binary.LittleEndian.Uint64(b[8:]))
	}
	return string(a) == string(b)
}
