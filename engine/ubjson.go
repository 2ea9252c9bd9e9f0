package engine

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// UBJSON (Universal Binary JSON) is the binary form of JSON that XGBoost 2.x saves models
// in by default (save_model("*.ubj")). Each value starts with a one-byte type marker:
//
//	Z null, T true, F false, i int8, U uint8, I int16, l int32, L int64, d float32,
//	D float64 (numbers big-endian), S string (an integer length, then the bytes),
//	[ array, { object.
//
// An object holds key/value pairs up to '}', a key being a string without its 'S'
// marker. An array holds values up to ']', or, after "#" and an integer count, exactly
// that many values and no ']', or, after "$" T "#" count, that many values of type T
// written without their markers (XGBoost's typed arrays: "[$d#L..." for float32 data).
// An object may likewise carry "#" count. Non-finite floats are stored as their bits.

// IsUBJSON reports whether data looks like a UBJSON document: an object whose first key
// starts with an integer marker (or an object count). A JSON object continues with
// whitespace, '"' or '}' instead.
func IsUBJSON(data []byte) bool {
	if len(data) < 2 || data[0] != '{' {
		return false
	}
	switch data[1] {
	case 'i', 'U', 'I', 'l', 'L', '#', '$':
		return true
	}
	return false
}

// ubjReader is a pull parser over an in-memory UBJSON document, with the methods of
// jsonReader that decodeXGBModel needs (xgbReader). After the first error every method is
// a no-op and r.err holds the error, positioned by byte offset.
type ubjReader struct {
	b   []byte
	i   int
	err error
	// implied is the marker of the next value when it is an element of a typed array
	// ("[$T#n"), whose values are written without markers; 0 otherwise.
	implied byte
}

func (r *ubjReader) fail(format string, args ...any) {
	if r.err != nil {
		return
	}
	r.err = fmt.Errorf("offset %d: %s", min(r.i, len(r.b)), fmt.Sprintf(format, args...))
	r.i = len(r.b)
}

func (r *ubjReader) finish() error {
	if r.err == nil && r.i != len(r.b) {
		r.fail("unexpected data after the model")
	}
	return r.err
}

// byte1 reads one byte, or fails with want in the message.
func (r *ubjReader) byte1(want string) byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.fail("unexpected end of input, want %s", want)
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

// marker returns the type marker of the next value.
func (r *ubjReader) marker() byte {
	if m := r.implied; m != 0 {
		r.implied = 0
		return m
	}
	return r.byte1("a value")
}

// peekMarker returns the marker of the next value without consuming it.
func (r *ubjReader) peekMarker() byte {
	if r.implied != 0 {
		return r.implied
	}
	if r.err != nil || r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// fixed returns the next n bytes.
func (r *ubjReader) fixed(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.i < n {
		r.fail("unexpected end of input in %s", what)
		return nil
	}
	p := r.b[r.i : r.i+n]
	r.i += n
	return p
}

// ubjSize is the payload size of a fixed-size marker, or -1.
func ubjSize(m byte) int {
	switch m {
	case 'i', 'U':
		return 1
	case 'I':
		return 2
	case 'l', 'd':
		return 4
	case 'L', 'D':
		return 8
	}
	return -1
}

// intPayload reads the payload of an integer marker.
func (r *ubjReader) intPayload(m byte) (int64, bool) {
	p := r.fixed(ubjSize(m), "a number")
	if p == nil {
		return 0, false
	}
	switch m {
	case 'i':
		return int64(int8(p[0])), true
	case 'U':
		return int64(p[0]), true
	case 'I':
		return int64(int16(binary.BigEndian.Uint16(p))), true
	case 'l':
		return int64(int32(binary.BigEndian.Uint32(p))), true
	default: // 'L'
		return int64(binary.BigEndian.Uint64(p)), true
	}
}

// number reads a numeric value: its integer value when it is an integer, or its float
// value (isFloat) for d and D.
func (r *ubjReader) number() (iv int64, fv float64, isFloat, ok bool) {
	switch m := r.marker(); m {
	case 'i', 'U', 'I', 'l', 'L':
		iv, ok = r.intPayload(m)
		return iv, float64(iv), false, ok
	case 'd':
		p := r.fixed(4, "a float32")
		if p == nil {
			return 0, 0, true, false
		}
		return 0, float64(math.Float32frombits(binary.BigEndian.Uint32(p))), true, true
	case 'D':
		p := r.fixed(8, "a float64")
		if p == nil {
			return 0, 0, true, false
		}
		return 0, math.Float64frombits(binary.BigEndian.Uint64(p)), true, true
	default:
		r.back(m)
		r.unexpected(m, "a number")
		return 0, 0, false, false
	}
}

// back steps back over a marker just read (for the position of an error message).
func (r *ubjReader) back(m byte) {
	if r.err == nil && m != 0 && r.i > 0 && r.b[r.i-1] == m {
		r.i--
	}
}

func (r *ubjReader) unexpected(m byte, want string) {
	if r.err != nil {
		return
	}
	r.fail("unexpected marker %q, want %s", m, want)
}

// length reads a non-negative integer (a string length or a count) of at most limit.
func (r *ubjReader) length(what string, limit int) int {
	m := r.byte1(what)
	if r.err != nil {
		return 0
	}
	if ubjSize(m) < 0 || m == 'd' || m == 'D' {
		r.i--
		r.unexpected(m, "an integer "+what)
		return 0
	}
	v, ok := r.intPayload(m)
	if !ok {
		return 0
	}
	if v < 0 || v > int64(limit) {
		r.fail("%s %d: want 0..%d", what, v, limit)
		return 0
	}
	return int(v)
}

// key reads an object key: a string without its 'S' marker.
func (r *ubjReader) key() string {
	n := r.length("key length", math.MaxInt)
	return string(r.fixed(n, "a key"))
}

func (r *ubjReader) str() string {
	if r.err != nil {
		return ""
	}
	if m := r.marker(); m != 'S' {
		r.back(m)
		r.unexpected(m, "a string")
		return ""
	}
	n := r.length("string length", math.MaxInt)
	return string(r.fixed(n, "a string"))
}

// container reads the header of an array or object after its opening marker: count is
// the element count, or -1 when the container ends with close; typ is the element marker
// of a typed array, or 0.
func (r *ubjReader) container(open byte) (count int, typ byte) {
	if r.err != nil {
		return 0, 0
	}
	if m := r.marker(); m != open {
		r.back(m)
		r.unexpected(m, map[byte]string{'[': "an array", '{': "an object"}[open])
		return 0, 0
	}
	if r.i < len(r.b) && r.b[r.i] == '$' {
		r.i++
		typ = r.byte1("the type of a typed container")
		switch {
		case r.err != nil:
			return 0, 0
		case open == '{':
			r.i--
			r.fail("typed objects are not supported")
			return 0, 0
		case ubjSize(typ) < 0 && typ != 'S' && typ != '[' && typ != '{':
			// A typed array of T, F or Z would hold values of no size: any count fits.
			r.i--
			r.unexpected(typ, "a number, string or container type for a typed array")
			return 0, 0
		}
		if r.i >= len(r.b) || r.b[r.i] != '#' {
			r.fail("typed array without a count")
			return 0, 0
		}
	}
	if r.i < len(r.b) && r.b[r.i] == '#' {
		r.i++
		n := r.length("count", math.MaxInt)
		// Every element takes at least one byte (a marker, or a typed payload).
		limit := len(r.b) - r.i
		if s := ubjSize(typ); s > 0 {
			limit /= s
		}
		if r.err == nil && n > limit {
			r.fail("count %d: want 0..%d (the bytes left)", n, limit)
			return 0, 0
		}
		return n, typ
	}
	return -1, 0
}

func (r *ubjReader) object(field func(key string)) {
	count, _ := r.container('{')
	if r.err != nil {
		return
	}
	for n := 0; r.more(count, n, '}'); n++ {
		field(r.key())
	}
}

// more says whether a container holds an element after its first n: by its count when
// it has one, else until its closing byte, which it consumes.
func (r *ubjReader) more(count, n int, end byte) bool {
	if r.err != nil {
		return false
	}
	if count >= 0 {
		return n < count
	}
	if r.i < len(r.b) && r.b[r.i] == end {
		r.i++
		return false
	}
	return true
}

func (r *ubjReader) array(elem func()) {
	count, typ := r.container('[')
	if r.err != nil {
		return
	}
	for n := 0; r.more(count, n, ']'); n++ {
		r.implied = typ
		start := r.i
		elem()
		r.implied = 0
		if r.err == nil && r.i == start && typ == 0 {
			r.fail("array element of no size")
		}
	}
}

// scalar reads a string, or a number as its decimal text.
func (r *ubjReader) scalar() string {
	if r.peekMarker() == 'S' {
		return r.str()
	}
	iv, fv, isFloat, ok := r.number()
	switch {
	case !ok:
		return ""
	case isFloat:
		return strconv.FormatFloat(fv, 'g', -1, 64)
	}
	return strconv.FormatInt(iv, 10)
}

func (r *ubjReader) skip(depth int) {
	if depth > maxJSONDepth {
		r.fail("UBJSON nested deeper than %d levels", maxJSONDepth)
		return
	}
	switch m := r.peekMarker(); m {
	case '{':
		r.object(func(string) { r.skip(depth + 1) })
	case '[':
		r.array(func() { r.skip(depth + 1) })
	case 'S':
		r.str()
	case 'Z', 'T', 'F':
		r.marker()
	case 0:
		r.marker() // reports the end of input
	default:
		r.number()
	}
}

func (r *ubjReader) strings() []string {
	out := []string{}
	r.array(func() { out = append(out, r.str()) })
	return out
}

func (r *ubjReader) bools() []bool {
	out := []bool{}
	r.array(func() {
		switch m := r.peekMarker(); m {
		case 'T', 'F':
			r.marker()
			out = append(out, m == 'T')
		default:
			v := r.integer(64)
			if r.err == nil && v != 0 && v != 1 {
				r.fail("%d: want 0, 1, true or false", v)
			}
			out = append(out, v == 1)
		}
	})
	return out
}

// integer reads an integer value that fits in bits bits.
func (r *ubjReader) integer(bits int) int64 {
	start := r.i
	iv, _, isFloat, ok := r.number()
	if !ok {
		return 0
	}
	if isFloat {
		r.i = start
		r.fail("a float where an int%d is wanted", bits)
		return 0
	}
	if bits < 64 && (iv < -1<<(bits-1) || iv >= 1<<(bits-1)) {
		r.i = start
		r.fail("%d does not fit an int%d", iv, bits)
		return 0
	}
	return iv
}

// typedArray reports whether the next value is a typed array of marker typ, without
// consuming anything.
func (r *ubjReader) typedArray(typ byte) bool {
	return r.err == nil && r.implied == 0 && len(r.b)-r.i >= 3 &&
		r.b[r.i] == '[' && r.b[r.i+1] == '$' && r.b[r.i+2] == typ
}

func (r *ubjReader) f32s() []float32 {
	if r.typedArray('d') {
		count, _ := r.container('[')
		p := r.fixed(4*count, "a float32 array")
		if r.err != nil {
			return nil
		}
		out := make([]float32, count)
		for i := range out {
			out[i] = math.Float32frombits(binary.BigEndian.Uint32(p[4*i:]))
		}
		return out
	}
	var out []float32
	r.array(func() {
		start := r.i
		iv, fv, isFloat, _ := r.number()
		if !isFloat {
			fv = float64(iv)
		}
		if r.err == nil && !math.IsInf(fv, 0) && math.IsInf(float64(float32(fv)), 0) {
			r.i = start
			r.fail("%v is not a float32", fv)
		}
		out = append(out, float32(fv))
	})
	return out
}

func (r *ubjReader) i32s() []int32 {
	if r.typedArray('l') {
		count, _ := r.container('[')
		p := r.fixed(4*count, "an int32 array")
		if r.err != nil {
			return nil
		}
		out := make([]int32, count)
		for i := range out {
			out[i] = int32(binary.BigEndian.Uint32(p[4*i:]))
		}
		return out
	}
	var out []int32
	r.array(func() { out = append(out, int32(r.integer(32))) })
	return out
}

func (r *ubjReader) i64s() []int64 {
	switch {
	case r.typedArray('L'):
		count, _ := r.container('[')
		p := r.fixed(8*count, "an int64 array")
		if r.err != nil {
			return nil
		}
		out := make([]int64, count)
		for i := range out {
			out[i] = int64(binary.BigEndian.Uint64(p[8*i:]))
		}
		return out
	case r.typedArray('l'):
		count, _ := r.container('[')
		p := r.fixed(4*count, "an int32 array")
		if r.err != nil {
			return nil
		}
		out := make([]int64, count)
		for i := range out {
			out[i] = int64(int32(binary.BigEndian.Uint32(p[4*i:])))
		}
		return out
	}
	var out []int64
	r.array(func() { out = append(out, r.integer(64)) })
	return out
}
