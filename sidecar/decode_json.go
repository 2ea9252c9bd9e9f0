package sidecar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/predictd/predictd/internal/parsefloat"
	"github.com/predictd/predictd/sidecar/jsonnum"
)

// errBadRequest is wrapped by every decoding error.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// decodeLimits bound what one request may decode into memory, checked as each element is
// appended, so an oversized request fails before it allocates rather than after.
type decodeLimits struct {
	// rows: the most candidates or dense rows (Config.MaxCandidates).
	rows int
	// cells: the most decoded values, counting every named feature, context feature,
	// entity key and dense value (Config.MaxCells).
	cells int
	// presizeAt: bodies of at least this many bytes are counted before they are decoded
	// (presize.go); 0: presizeMin.
	presizeAt int
	// plain: decode with the generic paths only (strconv for numbers, the object
	// callback for features, protowire for every protobuf field): the reference the
	// fuzz targets compare the fast paths with. Never set in serving.
	plain bool
}

// presizes tells whether a body of n bytes is counted before it is decoded.
func (lim decodeLimits) presizes(n int) bool {
	if lim.presizeAt == 0 {
		return n >= presizeMin
	}
	return n >= lim.presizeAt
}

var errTooManyCells = errors.New("too many values")

// row fails when r already holds lim.rows rows, before one more is appended.
func (lim decodeLimits) row(n int) error {
	if n >= lim.rows {
		return fmt.Errorf("%w: more than %d rows, the limit is %d (--max-candidates)", errTooManyCandidates, n, lim.rows)
	}
	return nil
}

// cell fails when r already holds lim.cells values, before one more is appended.
func (lim decodeLimits) cell(r *request) error {
	if n := r.cellCount(); n >= lim.cells {
		return fmt.Errorf("%w: more than %d feature values and keys, the limit is %d (--max-cells)", errTooManyCells, n, lim.cells)
	}
	return nil
}

// decodeJSON decodes a JSON prediction request from body into r, within lim. It scans
// the bytes directly (no reflection, no maps) and unescapes strings in place, so body
// must be writable and r's byte slices point into it. Unknown fields, wrong types and
// trailing data are errors. With r.dir on, candidates are decoded into the matrix
// (decode_direct.go).
//
// On this project's bodies it is about as fast as fastjson and 4–6× faster than
// encoding/json (BenchmarkDecodeJSON). Over fastjson it keeps: the limits checked as
// each value is appended (fastjson builds the whole body's value tree first), error
// messages with the byte offset, and no copy of the body.
func decodeJSON(r *request, body []byte, lim decodeLimits) error {
	if len(body) > maxDecodeBody {
		return fmt.Errorf("%w: a body of %d bytes, the most a request may have is %d", errTooManyCells, len(body), maxDecodeBody)
	}
	r.body = body
	if lim.plain {
		r.dir.reset()
	}
	err := decodeJSONBody(r, body, lim)
	if r.dir.on() && (err != nil || !r.dir.resolvedAs(r)) {
		return r.redecode(decodeJSON, lim)
	}
	return err
}

func decodeJSONBody(r *request, body []byte, lim decodeLimits) error {
	r.dir.proto = false
	s := jsonScanner{b: body, lim: lim}
	if r.dir.on() {
		s.undo = &r.dir
	}
	err := s.request(r)
	r.labels = r.labels || s.labels
	if err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.b) {
		return s.errf("unexpected data after the request object")
	}
	return nil
}

type jsonScanner struct {
	b        []byte
	i        int
	lim      decodeLimits
	inVector bool    // reading a vector's elements: an array there is an error
	undo     *direct // on the direct path: where strings unescaped in place are saved
	labels   bool    // a string value (a category label) was read
}

func (s *jsonScanner) errf(format string, args ...any) error {
	return fmt.Errorf("%w: invalid JSON at byte %d: %s", errBadRequest, s.i, fmt.Sprintf(format, args...))
}

func (s *jsonScanner) ws() { s.i = jsonSkipWS(s.b, s.i) }

// peek skips whitespace and returns the next byte (0 at the end).
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) expect(c byte) error {
	if s.peek() != c {
		return s.errf("want %q, found %s", c, s.found())
	}
	s.i++
	return nil
}

// found describes the next token for an error message.
func (s *jsonScanner) found() string {
	switch c := s.peek(); c {
	case 0:
		return "end of input"
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return "a number"
		}
		return strconv.QuoteRune(rune(c))
	}
}

// object iterates over an object's members, calling member with each key; member must
// consume the value.
func (s *jsonScanner) object(what string, member func(key []byte) error) error {
	if s.peek() != '{' {
		return s.errf("%s: want an object, found %s", what, s.found())
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	if err := s.member(what, member); err != nil {
		return err
	}
	return s.objectRest(what, member)
}

// member reads an object's member at its name: the name, the colon, then value's
// reading of the value.
func (s *jsonScanner) member(what string, value func(key []byte) error) error {
	if s.peek() != '"' {
		return s.errf("%s: want a member name, found %s", what, s.found())
	}
	k, err := s.str()
	if err != nil {
		return err
	}
	if err := s.expect(':'); err != nil {
		return err
	}
	return value(k)
}

// objectRest goes on with an object after one of its members, as object's loop does.
func (s *jsonScanner) objectRest(what string, member func(key []byte) error) error {
	for {
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errf("%s: want ',' or '}', found %s", what, s.found())
		}
		if err := s.member(what, member); err != nil {
			return err
		}
	}
}

// array iterates over an array's elements; elem must consume each one.
func (s *jsonScanner) array(what string, elem func(i int) error) error {
	if s.peek() != '[' {
		return s.errf("%s: want an array, found %s", what, s.found())
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errf("%s: want ',' or ']', found %s", what, s.found())
		}
	}
}

// str reads a string, unescaping it in place: the result aliases s.b. UTF-8 is
// validated only for a string with a byte above 0x7F (names and ids are ASCII).
func (s *jsonScanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.errf("want a string, found %s", s.found())
	}
	s.i++
	start := s.i
	var high byte
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		high |= c
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			if high >= 0x80 && !utf8.Valid(s.b[start:i]) {
				return nil, s.errf("string is not valid UTF-8")
			}
			return s.b[start:i], nil
		case c == '\\':
			s.i = i
			if s.undo != nil {
				s.undo.saveString(s.b, start)
			}
			return s.unescape(start, i)
		default:
			s.i = i
			return nil, s.errf("control character in a string")
		}
	}
	s.i = len(s.b)
	return nil, s.errf("unterminated string")
}

// unescape continues a string at s.b[r] (a backslash), writing the decoded bytes from
// s.b[start:w]; escapes are never shorter than what they decode to, so w <= r.
func (s *jsonScanner) unescape(start, r int) ([]byte, error) {
	w := r
	for r < len(s.b) {
		c := s.b[r]
		switch {
		case c == '"':
			s.i = r + 1
			if !utf8.Valid(s.b[start:w]) {
				return nil, s.errf("string is not valid UTF-8")
			}
			return s.b[start:w], nil
		case c < 0x20:
			s.i = r
			return nil, s.errf("control character in a string")
		case c != '\\':
			s.b[w] = c
			w++
			r++
			continue
		}
		if r+1 >= len(s.b) {
			break
		}
		e := s.b[r+1]
		r += 2
		switch e {
		case '"', '\\', '/':
			s.b[w] = e
		case 'b':
			s.b[w] = '\b'
		case 'f':
			s.b[w] = '\f'
		case 'n':
			s.b[w] = '\n'
		case 'r':
			s.b[w] = '\r'
		case 't':
			s.b[w] = '\t'
		case 'u':
			r1, ok := hex4(s.b, r)
			if !ok {
				s.i = r
				return nil, s.errf(`bad \u escape`)
			}
			r += 4
			ru := rune(r1)
			if utf16.IsSurrogate(ru) {
				ru = utf8.RuneError
				if r+6 <= len(s.b) && s.b[r] == '\\' && s.b[r+1] == 'u' {
					if r2, ok := hex4(s.b, r+2); ok {
						if d := utf16.DecodeRune(rune(r1), rune(r2)); d != utf8.RuneError {
							ru = d
							r += 6
						}
					}
				}
			}
			w += utf8.EncodeRune(s.b[w:], ru)
			continue
		default:
			s.i = r - 1
			return nil, s.errf("bad escape \\%c", e)
		}
		w++
	}
	s.i = len(s.b)
	return nil, s.errf("unterminated string")
}

func hex4(b []byte, i int) (uint16, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var v uint16
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(c)
	}
	return v, true
}

// numToken scans a JSON number and returns its bytes.
func (s *jsonScanner) numToken() ([]byte, bool) {
	s.ws()
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// value reads a feature value: a number, null for missing (NaN), true or false (1 or
// 0, as LightGBM and XGBoost read a boolean column), or, for a named scalar feature, a
// string: a category label, boxed in a NaN (labels.go) and looked up once the model is
// known. Numbers are parsed by jsonnum, in the same pass that finds their end;
// lim.plain parses them with strconv.ParseFloat instead, the reference the fuzz targets
// compare with.
func (s *jsonScanner) value(what string, name []byte) (float64, error) {
	c := s.peek()
	switch c {
	case 'n':
		if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
			s.i += 4
			return math.NaN(), nil
		}
	case 't':
		if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "true" {
			s.i += 4
			return 1, nil
		}
	case 'f':
		if s.i+5 <= len(s.b) && string(s.b[s.i:s.i+5]) == "false" {
			s.i += 5
			return 0, nil
		}
	case '"':
		if name != nil && !s.inVector {
			return s.label(what, name)
		}
	}
	if c != '-' && (c < '0' || c > '9') {
		if c == '[' && name != nil && !s.inVector {
			return 0, errArrayValue
		}
		return 0, s.errf("%s: want a number, a boolean or null, found %s", valueName(what, name), s.found())
	}
	if s.lim.plain {
		return s.valuePlain(what, name)
	}
	v, n, ok := jsonnum.Parse(s.b[s.i:])
	if n == 0 {
		return 0, s.errf("%s: malformed number", valueName(what, name))
	}
	s.i += n
	if !ok {
		return 0, s.errf("%s: number %s is out of the float64 range", valueName(what, name), s.b[s.i-n:s.i])
	}
	return v, nil
}

// label reads a string value, a category label, and returns it boxed (labels.go).
func (s *jsonScanner) label(what string, name []byte) (float64, error) {
	str, err := s.str()
	if err != nil {
		return 0, err
	}
	if len(str) > maxLabelBytes {
		return 0, s.errf("%s: a label of %d bytes; category labels are at most %d", valueName(what, name), len(str), maxLabelBytes)
	}
	s.labels = true
	return boxLabel(span{off: uint32(cap(s.b) - cap(str)), n: uint32(len(str))}), nil
}

// errArrayValue is value's answer for an array where a named feature's number goes: a
// vector sent whole, which the caller reads with vector. It allocates nothing, so the
// scalar path keeps no extra test.
var errArrayValue = errors.New("an array value")

// valuePlain is value's number with numToken and strconv.ParseFloat.
func (s *jsonScanner) valuePlain(what string, name []byte) (float64, error) {
	tok, ok := s.numToken()
	if !ok {
		return 0, s.errf("%s: malformed number", valueName(what, name))
	}
	// The token is a valid JSON number, which ParseFloat accepts; unsafe.String avoids
	// a copy (ParseFloat keeps no reference to its argument).
	v, err := parsefloat.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
	if err != nil {
		return 0, s.errf("%s: number %s is out of the float64 range", valueName(what, name), tok)
	}
	return v, nil
}

func valueName(what string, name []byte) string {
	if name == nil {
		return what
	}
	return what + " " + strconv.Quote(string(name))
}

// strOrNum reads a string, or a number kept as its text (so "version": 2 works).
func (s *jsonScanner) strOrNum(what string) ([]byte, error) {
	if s.peek() == '"' {
		return s.str()
	}
	if tok, ok := s.numToken(); ok {
		return tok, nil
	}
	return nil, s.errf("%s: want a string, found %s", what, s.found())
}

func (s *jsonScanner) request(r *request) error {
	haveCands, haveRows := false, false
	var seen uint8
	once := func(bit uint8, k []byte) error {
		if seen&bit != 0 {
			return s.errf("field %q appears twice", k)
		}
		seen |= bit
		return nil
	}
	err := s.object("request", func(k []byte) error {
		var err error
		switch string(k) {
		case "context":
			err = once(1, k)
		case "keys":
			err = once(2, k)
		case "candidates":
			err = once(4, k)
		case "rows":
			err = once(8, k)
		}
		if err != nil {
			return err
		}
		switch string(k) {
		case "model":
			if s.peek() != '"' {
				return s.errf("model: want a string, found %s", s.found())
			}
			r.model, err = s.str()
		case "version":
			if s.peek() == 'n' && s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
				s.i += 4
				return nil
			}
			r.version, err = s.strOrNum("version")
		case "output":
			var o []byte
			if s.peek() != '"' {
				return s.errf("output: want \"raw\" or \"transformed\", found %s", s.found())
			}
			if o, err = s.str(); err != nil {
				return err
			}
			return r.setOutput(o)
		case "context":
			if r.dir.on() && len(r.cands) > 0 {
				return errRedo // written before the candidates by apply: the generic path
			}
			if err := s.presize(r, func(m, _, _, _ int) presize { return presize{context: m} }); err != nil {
				return err
			}
			return s.object("context", func(name []byte) error {
				if err := s.lim.cell(r); err != nil {
					return err
				}
				v, err := s.value("context feature", name)
				if err == errArrayValue {
					return s.vector(r, "context feature", name, -1)
				}
				r.context = append(r.context, feature{name: r.spanOf(name), value: v})
				return err
			})
		case "keys":
			if err := s.presize(r, func(m, _, _, _ int) presize { return presize{ctxKeys: m} }); err != nil {
				return err
			}
			return s.keys(r, &r.ctxKeys, "keys")
		case "candidates":
			haveCands = true
			if r.dir.on() {
				return s.candidatesDirect(r)
			}
			if err := s.presize(r, func(m, f, k, _ int) presize { return presize{cands: m, feats: f, candKeys: k} }); err != nil {
				return err
			}
			return s.array("candidates", func(i int) error {
				if err := s.lim.row(len(r.cands)); err != nil {
					return err
				}
				return s.candidate(r)
			})
		case "rows":
			haveRows = true
			if err := s.presize(r, func(m, _, _, v int) presize { return presize{nrows: m, rows: v} }); err != nil {
				return err
			}
			return s.rows(r)
		default:
			return s.errf("unknown field %q (want model, version, context, keys, candidates, rows, output)", k)
		}
		return err
	})
	if err != nil {
		return err
	}
	return r.finishDecode(haveCands, haveRows)
}

// presize counts the container at the next token (countJSON) in a body of at least
// presizeMin bytes and reserves what counts says it holds.
func (s *jsonScanner) presize(r *request, what func(members, feats, keys, values int) presize) error {
	if !s.lim.presizes(len(s.b)) {
		return nil
	}
	if c := s.peek(); c != '{' && c != '[' {
		return nil // the decoder reports the type
	}
	return what(countJSON(s.b, s.i)).reserve(r, s.lim)
}

func (s *jsonScanner) keys(r *request, dst *[]key, what string) error {
	return s.object(what, func(name []byte) error {
		if err := s.lim.cell(r); err != nil {
			return err
		}
		v, err := s.strOrNum(what)
		*dst = append(*dst, key{name: r.spanOf(name), value: r.spanOf(v)})
		return err
	})
}

func (s *jsonScanner) candidate(r *request) error {
	c := candidate{f0: uint32(len(r.feats)), k0: uint32(len(r.candKeys))}
	err := s.object("candidate", func(k []byte) error {
		switch string(k) {
		case "id":
			id, err := s.strOrNum("id")
			c.id = r.idSpan(id)
			return err
		case "features":
			return s.features(r)
		case "keys":
			return s.keys(r, &r.candKeys, "candidate keys")
		default:
			return s.errf("candidate: unknown field %q (want id, features, keys)", k)
		}
	})
	c.f1, c.k1 = uint32(len(r.feats)), uint32(len(r.candKeys))
	r.cands = append(r.cands, c)
	return err
}

// features reads a candidate's features: object and its member callback written out
// as one loop, since on a named request this loop is most of the decoding. lim.plain
// takes the generic object path, which the fuzz targets compare with.
func (s *jsonScanner) features(r *request) error {
	member := func(name []byte) error {
		if err := s.lim.cell(r); err != nil {
			return err
		}
		v, err := s.value("feature", name)
		if err == errArrayValue {
			return s.vector(r, "feature", name, int32(len(r.cands)))
		}
		r.feats = append(r.feats, feature{name: r.spanOf(name), value: v})
		return err
	}
	if s.lim.plain {
		return s.object("features", member)
	}
	if s.peek() != '{' {
		return s.errf("features: want an object, found %s", s.found())
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.errf("features: want a member name, found %s", s.found())
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := s.lim.cell(r); err != nil {
			return err
		}
		v, err := s.value("feature", name)
		if err != nil {
			if err != errArrayValue {
				return err
			}
			err = s.vector(r, "feature", name, int32(len(r.cands)))
			if err != nil {
				return err
			}
		} else {
			r.feats = append(r.feats, feature{name: r.spanOf(name), value: v})
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errf("features: want ',' or '}', found %s", s.found())
		}
	}
}

// vector reads a vector feature sent whole, an array of numbers or nulls, for candidate
// row (-1: the context). Its length is checked against the model in apply.
func (s *jsonScanner) vector(r *request, what string, name []byte, row int32) error {
	v0 := len(r.vecVals)
	s.inVector = true
	defer func() { s.inVector = false }()
	err := s.array(valueName(what, name), func(int) error {
		if err := s.lim.cell(r); err != nil {
			return err
		}
		x, err := s.value(what, name)
		r.vecVals = append(r.vecVals, x)
		return err
	})
	r.vecs = append(r.vecs, vector{name: r.spanOf(name), row: row, v0: uint32(v0), v1: uint32(len(r.vecVals))})
	return err
}

func (s *jsonScanner) rows(r *request) error {
	return s.array("rows", func(i int) error {
		if err := s.lim.row(r.nrows); err != nil {
			return err
		}
		n0 := len(r.rows)
		err := s.array("row", func(int) error {
			if err := s.lim.cell(r); err != nil {
				return err
			}
			v, err := s.value("rows", nil)
			r.rows = append(r.rows, v)
			return err
		})
		if err != nil {
			return err
		}
		return r.addRow(i, len(r.rows)-n0)
	})
}

// addRow checks that every dense row has the same width.
func (r *request) addRow(i, width int) error {
	if r.nrows == 0 {
		r.width = width
	} else if width != r.width {
		return badRequest("rows[%d] has %d values but rows[0] has %d", i, width, r.width)
	}
	r.nrows++
	return nil
}

func (r *request) setOutput(o []byte) error {
	switch string(o) {
	case "", "transformed":
		r.output = outputTransformed
		if len(o) == 0 {
			r.output = outputDefault
		}
	case "raw":
		r.output = outputRaw
	default:
		return badRequest("output %q: want \"raw\" or \"transformed\"", o)
	}
	return nil
}

func (r *request) finishDecode(haveCands, haveRows bool) error {
	if len(r.model) == 0 {
		return badRequest("model: missing (name the model to score)")
	}
	if haveCands && haveRows {
		return badRequest("send either candidates or rows, not both")
	}
	r.dense = haveRows
	return nil
}

// candidatesDirect reads the candidates array on the direct path (decode_direct.go).
// A large body is not counted first (presize): the first candidate's size gives the
// estimate its matrix is reserved with.
func (s *jsonScanner) candidatesDirect(r *request) error {
	start := s.i
	return s.array("candidates", func(i int) error {
		if err := s.lim.row(len(r.cands)); err != nil {
			return err
		}
		if err := s.candidateDirect(r); err != nil {
			return err
		}
		if i == 0 && s.lim.presizes(len(s.b)) {
			r.dir.reserve(r, (len(s.b)-s.i)/max(s.i-start, 1)+1, s.lim)
		}
		return nil
	})
}

// candidateDirect is candidate on the direct path: its features go to its matrix row.
func (s *jsonScanner) candidateDirect(r *request) error {
	row, err := r.dir.row(r)
	if err != nil {
		return err
	}
	c := candidate{f0: uint32(len(r.feats)), k0: uint32(len(r.candKeys))}
	p := 0
	member := func(k []byte) error {
		switch string(k) {
		case "id":
			id, err := s.strOrNum("id")
			c.id = r.idSpan(id)
			return err
		case "features":
			return s.featuresDirect(r, row, &p)
		case "keys":
			// Counted first in a large body, as the candidates array is on the generic
			// path.
			if err := s.presize(r, func(m, _, _, _ int) presize { return presize{candKeys: m} }); err != nil {
				return err
			}
			return s.keys(r, &r.candKeys, "candidate keys")
		default:
			return s.errf("candidate: unknown field %q (want id, features, keys)", k)
		}
	}
	if j, id, ok := candidatePrefix(s.b, s.i); ok {
		// The members that follow the features, if any, as the generic loop reads them.
		c.id = r.idSpan(id)
		s.i = j
		if err = s.featuresDirect(r, row, &p); err == nil {
			err = s.objectRest("candidate", member)
		}
	} else {
		err = s.object("candidate", member)
	}
	c.f1, c.k1 = uint32(len(r.feats)), uint32(len(r.candKeys))
	r.cands = append(r.cands, c)
	return err
}

// candidatePrefix reads the opening of a candidate as encoders write it,
// `{"id":"ID","features":` with no space and an id of printable ASCII without escapes,
// at b[i:]. It returns where the features object starts and the id; not ok (nothing
// read) for any other opening, which the generic object loop reads.
func candidatePrefix(b []byte, i int) (int, []byte, bool) {
	const (
		open = `{"id":"`
		feat = `","features":`
	)
	if len(b)-i < len(open)+len(feat)+1 || string(b[i:i+len(open)]) != open {
		return 0, nil, false
	}
	start := i + len(open)
	j := start
	for ; j < len(b); j++ {
		if c := b[j]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			break
		}
	}
	if len(b)-j < len(feat)+1 || string(b[j:j+len(feat)]) != feat {
		return 0, nil, false
	}
	return j + len(feat), b[start:j], true
}

// featuresDirect is features on the direct path: each value is written into row, the
// candidate's row of the matrix. A member whose name is the learned layout's at place
// *p is recognized by its raw bytes up to the value (the quoted name and the colon,
// spaced as the first candidate spaced them), and its number parsed there; anything
// else takes the generic member path.
func (s *jsonScanner) featuresDirect(r *request, row []float64, p *int) error {
	if s.peek() != '{' {
		return s.errf("features: want an object, found %s", s.found())
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	d := &r.dir
	learning := len(r.cands) == 0
	left := s.lim.cells - r.cellCount() // values that may still be decoded
	b, pre, places := s.b, d.pre, d.places
	var num runNum
	for {
		if s.i < len(b) && b[s.i] != '"' {
			s.ws()
		}
		// The run of members in the layout's order (layoutRun), then what ended it.
		if left <= 0 { // at the limit, unless left was stale
			left = s.lim.cells - r.cellCount()
		}
		// At the limit, the member takes the generic path, which fails it there.
		if k := *p; k < len(places) && left > 0 {
			k0 := k
			lim := min(len(places), k+left)
			i, end := s.i, runMember
			if !d.longNumbers {
				// wordRun takes the members whose numbers fit its word; at one it does
				// not read, layoutRun reads that one member (its places end there), and
				// the loop comes back here after it.
				if i, k = wordRun(b, i, places[:lim], pre, row, k); k > k0 && b[i] == ',' {
					end = runValue
				} else {
					lim = k + 1
				}
			}
			if end != runValue {
				i, k, end = layoutRun(b, i, places[:lim], pre, row, k, &num, !d.longNumbers)
			}
			d.cells += k - k0
			left -= k - k0
			s.i, *p = i, k
			if end == runNumber { // placed here, it goes on as after the run's own values
				d.longNumbers = d.longNumbers || num.long
				pl := &places[k]
				at := s.i + int(pl.npre)
				if v, n, ok := num.value(b, at); ok && n > 0 {
					row[pl.col] = v
					d.cells++
					left--
					s.i, *p, end = at+n, k+1, runValue
				}
			}
			switch end {
			case runValue:
				if s.i < len(b) && b[s.i] == ',' {
					s.i++
					continue
				}
				if err := s.featureEnd(); err != nil || b[s.i-1] == '}' {
					return err
				}
				continue
			}
		}
		if s.peek() != '"' {
			return s.errf("features: want a member name, found %s", s.found())
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		q := s.i // past the name's closing quote
		if err := s.expect(':'); err != nil {
			return err
		}
		s.ws()
		at := s.i // the value: b[q:at] is the ':' and the white space around it
		if left <= 0 {
			if err := s.lim.cell(r); err != nil {
				return err
			}
		}
		left--
		v, err := s.value("feature", name)
		if err != nil {
			if err != errArrayValue {
				return err
			}
			if err := s.vector(r, "feature", name, int32(len(r.cands))); err != nil {
				return err
			}
			left = s.lim.cells - r.cellCount()
		} else {
			*p = d.put(r, r.spanOf(name), v, row, *p, learning, b[q:at])
			if len(r.feats) > d.maxListed(r) {
				return errRedo // uncounted: the generic path counts first
			}
		}
		if err := s.featureEnd(); err != nil || b[s.i-1] == '}' {
			return err
		}
	}
}

// runNum is a number of 16 to 19 digits, without an exponent, that layoutRun read and
// left to its caller to convert: the value is ±w / 10^e, and it ends at end (0: the
// number is one for jsonnum.Parse).
type runNum struct {
	w    uint64
	e    int
	neg  uint64
	end  int
	long bool // a number too long for one word, read by a short run
}

// value reads the number of a runNumber at b[j:]: the one n read (end > 0), else
// one for jsonnum.Parse. It returns the value, its length and whether it is one.
func (n *runNum) value(b []byte, j int) (float64, int, bool) {
	if n.end == 0 {
		return jsonnum.Parse(b[j:])
	}
	v, ok := jsonnum.Convert(n.w, -n.e)
	return math.Float64frombits(math.Float64bits(v) | n.neg<<63), n.end - j, ok
}

// runEnd is why layoutRun stopped.
type runEnd uint8

const (
	runMember runEnd = iota // at a member it did not read: the generic member path's
	runValue                // just past a value, not followed by the next member
	runNumber               // at a member of the layout whose number it did not read
)

// layoutRun reads the members of a features object at b[i:] while each is the learned
// layout's next one, from place k on: its bytes up to the value compared with the
// place's (the quoted name and the colon, spaced as learned), its number parsed, the
// value written to its column of row. It returns the position, the next place and why
// it stopped; the values it placed are the places it passed. A run stays within one
// object: it goes on only past `,"` and while places remain, so the caller bounds the
// values a run may place (--max-cells) by the places it gives it.
//
// It is a function of its own, called once per run (once per candidate when the
// candidates list their features alike), and it calls nothing, so that its live values
// stay in registers: around a call (a number parser, a byte comparison) Go's register
// allocator saves them to the stack where they are computed, on every member, not only
// on the members that make the call.
//
// The common value, at most 15 digits with or without a fraction and no exponent
// ("37.45", "-0.0123", "0.579999983"), is read here: its digits are the exact integer
// w < 2^53, and the value w / 10^e is one correctly rounded division (Clinger), as
// jsonnum.Parse computes it; null is NaN. Any other number (more digits, an exponent, a
// leading zero) ends the run with runNumber at its member, for the caller to read with
// jsonnum.Parse and go on; a value that is neither ends it with runMember.
//
// short reads the digits from one 8-byte word instead of a byte at a time: a number
// whose digits and '.' fit in 7 bytes ("37.45", "0.5", "12": what clients that round
// send) costs no branch per digit, and a longer one ends the run with runNumber and
// num.long, after which the caller runs with short off for the rest of the request
// (float32 values as "0.579999983", float64 ones of 17 digits). In process, per named
// feature (BenchmarkNamedStages), against the digit-at-a-time reading alone: two-decimal
// values of one or two integer digits, 14.5–15.5 → 12.1–12.9 ns (the count that varies
// from value to value is what the word saves: the byte loop's exit mispredicts); ones
// that are all "-0.38"-like, whose loop a branch predictor learns, 13.6–14.6 → 14.5–15.6
// (the word's mask and shifts stand between a number and where the next member starts);
// long values 3–5% slower. Two functions, one per kind, would not share the name
// comparison, and a call for it costs more than the choice.
func layoutRun(b []byte, i int, places []place, pre []byte, row []float64, k int, num *runNum, short bool) (int, int, runEnd) {
	base := unsafe.Pointer(unsafe.SliceData(b))
	for {
		pl := &places[k]
		n := int(pl.npre)
		j := i + n
		// The bytes up to the value, as 8-byte words. 8 bytes past them (the value and
		// what follows it) keep every load in the body; only the last member of a body
		// lacks them, and takes the generic path.
		if j+8 > len(b) {
			return i, k, runMember
		}
		c := load64(base, i)
		if n < 8 {
			if c&pl.w[1] != pl.w[0] {
				return i, k, runMember
			}
		} else if c != pl.w[0] || load64(base, j-8) != pl.w[2] || n > 16 && load64(base, i+8) != pl.w[1] {
			return i, k, runMember
		} else if n > 24 {
			for o := 16; o < n-8; o += 8 {
				if load64(base, i+o) != binary.LittleEndian.Uint64(pre[int(pl.pre)+o:]) {
					return i, k, runMember
				}
			}
		}
		var v float64
		q := j
		// The sign without a branch: values of both signs come in no order. It is
		// kept as ±1.0, in a floating-point register: the loop's integer registers
		// are all taken, and one more value among them sent the digits' sum to the
		// stack.
		var neg int
		if b[q] == '-' {
			neg = 1
		}
		sign := exactSign[neg]
		q += neg
		// Each reading ends with its own null and not-a-number cases: one shared tail
		// behind an "ok" flag measured 5–10% slower per feature (BenchmarkNamedStages).
		if short {
			// The number from the 8 bytes at q alone, where DigitRun counts the leading
			// digits from a mask and LeadingDigitsValue converts them at once, the '.'
			// taken out: a short number ("37.45", "0.5", "12") costs no branch per
			// digit, whose count varies from value to value. One that reaches the
			// word's end is Parse's, and sets num.long.
			var x uint64
			k1 := 0
			if q+8 <= len(b) {
				x = load64(base, q)
				k1 = jsonnum.DigitRun(x)
			}
			if uint(k1-1) < 7 && (x&0xff != '0' || k1 == 1) {
				var w uint64
				e, full := 0, false // fraction digits; the number fills the word
				if t := x >> (8 * k1); byte(t) != '.' {
					w = jsonnum.LeadingDigitsValue(x, k1)
					q += k1
				} else {
					e = jsonnum.DigitRun(t >> 8)
					lo := uint64(1)<<(8*k1) - 1
					w = jsonnum.LeadingDigitsValue(x&lo|(x>>8)&^lo, k1+e)
					q += k1 + 1 + e
					full = k1+e == 7
				}
				// Unless full, b[q] is the byte after the digits, within the word.
				if full || b[q]|0x20 == 'e' || b[q-1] == '.' {
					num.end, num.long = 0, full
					return i, k, runNumber
				}
				v = float64(int64(w)) / exact10[e] * sign // ×(±1) is exact
			} else if string(b[j:j+4]) == "null" {
				v, q = math.NaN(), j+4
			} else if q > j || k1 > 0 {
				num.end, num.long = 0, k1 == 8
				return i, k, runNumber
			} else {
				return i, k, runMember
			}
		} else {
			p0 := q
			var w int64
			for lim := min(len(b), p0+20); q < lim && b[q]-'0' < 10; q++ {
				w = w*10 + int64(b[q]-'0')
			}
			nd := q - p0
			if nd > 0 && (b[p0] != '0' || nd == 1) {
				e := 0
				if q < len(b) && b[q] == '.' {
					q++
					f0 := q
					// A long fraction 8 digits a step (the test is one branch, taken
					// alike by values of one kind), then digit by digit.
					for q+8 <= len(b) && q-f0 < 16 {
						c := load64(base, q)
						if !jsonnum.EightDigits(c) {
							break
						}
						w = w*1e8 + int64(jsonnum.EightDigitsValue(c))
						q += 8
					}
					for lim := min(len(b), f0+20); q < lim && b[q]-'0' < 10; q++ {
						w = w*10 + int64(b[q]-'0')
					}
					e = q - f0
					nd += e
				}
				if (q == p0+nd || e > 0) && nd <= 19 && (q == len(b) || b[q]|0x20 != 'e') {
					if nd > 15 { // 16 to 19 digits: w exact in 64 bits, for Convert
						num.w, num.e, num.neg, num.end = uint64(w), e, math.Float64bits(sign)>>63, q
						return i, k, runNumber
					}
					v = float64(w) / exact10[e&15] * sign // ×(±1) is exact
				} else {
					num.end = 0
					return i, k, runNumber
				}
			} else if string(b[j:j+4]) == "null" {
				v, q = math.NaN(), j+4
			} else if q > j { // a sign or digits: a number for Parse, or not a number
				num.end = 0
				return i, k, runNumber
			} else {
				return i, k, runMember
			}
		}
		row[pl.col] = v
		k++
		i = q
		if i+1 >= len(b) || b[i] != ',' || b[i+1] != '"' || k == len(places) {
			return i, k, runValue
		}
		i++
	}
}

// wordRunGo is layoutRun for the members whose value is a number of at most 7 bytes
// followed by ',' ("37.45,", "-0.38,", "12,", and null): what clients that round send,
// on every member of a candidate but its last. It reads them from place k on, as
// layoutRun does, and stops at the first member it does not read (i at its first byte),
// or after a value (i at the ',' after it) not followed by a member's '"' (at once, or
// after one space: Python's ", ") or past the last place; it returns the position and
// the next place, and the values it placed are the places it passed. What it does not
// read, featuresDirect reads as before (layoutRun, its loop past white space, the
// generic member path), with the same result. featuresDirect calls it as wordRun: on amd64 the same loop in assembly
// (wordrun_amd64.s), elsewhere and with the purego build tag this one.
//
// The number's shape comes from two searches of the word at the value, for the first ','
// and the first '.', not from counting its digits: the ',' is where the next member
// starts, and the number is the bytes before it, moved to the word's top with '0's
// below them, the '-' made a '0' and the '.' taken out, so that one test says they are
// all digits and one conversion gives the integer. That is fewer instructions a member
// than layoutRun's reading, which counts the digits before the '.' and then those after
// it, and it has no branch that depends on the value's shape. It is a function of its
// own and calls nothing (the ',' search alone, put in front of layoutRun's reading
// inside layoutRun, measured 4% faster than layoutRun; this, 11%). Go still saves a
// dozen of its values to the stack on every member, which the assembly does not. In
// process, per named feature (BenchmarkNamedStages, the three alternated, medians of
// six runs): two-decimal values 14.0 ns with layoutRun alone, 12.5 with this, 10.2
// with the assembly; see docs/benchmarks.md ("The comma first").
func wordRunGo(b []byte, i int, places []place, pre []byte, row []float64, k int) (int, int) {
	base := unsafe.Pointer(unsafe.SliceData(b))
	for {
		pl := &places[k]
		n := int(pl.npre)
		j := i + n
		if j+8 > len(b) {
			return i, k
		}
		// The name's bytes compared as layoutRun and protoRun compare them, written out
		// in each: as a function (a method of place) it costs the inliner 133 against
		// its budget of 80, and a call saves the loop's values to the stack.
		c := load64(base, i)
		if n < 8 {
			if c&pl.w[1] != pl.w[0] {
				return i, k
			}
		} else if c != pl.w[0] || load64(base, j-8) != pl.w[2] || n > 16 && load64(base, i+8) != pl.w[1] {
			return i, k
		} else if n > 24 {
			for o := 16; o < n-8; o += 8 {
				if load64(base, i+o) != binary.LittleEndian.Uint64(pre[int(pl.pre)+o:]) {
					return i, k
				}
			}
		}
		x := load64(base, j)
		// The first ',' and the first '.' of the word: the lowest flag of the
		// zero-byte test on x^',,,,' is exact (a borrow sets flags only above a zero
		// byte); 8 when there is none.
		cx, dx := x^0x2c2c2c2c2c2c2c2c, x^0x2e2e2e2e2e2e2e2e
		end := bits.TrailingZeros64((cx-0x0101010101010101)&^cx&0x8080808080808080) >> 3
		dot := bits.TrailingZeros64((dx-0x0101010101010101)&^dx&0x8080808080808080) >> 3
		var neg uint
		if byte(x) == '-' {
			neg = 1
		}
		// The number's bytes moved to the word's top, '0's below them, its '-' made a
		// '0' and its '.' taken out: the eight digits of its integer w.
		sh := uint(64-8*end) & 63
		y := (x<<sh | 0x3030303030303030>>(uint(8*end)&63)) + uint64(3*neg)<<sh
		// Without a branch (integers and decimals come in no order): md is -1 when the
		// number has a '.', else 0; e is its fraction's digits, lead where its integer
		// digits end.
		md := (dot - end) >> 63
		e, lead := (end-dot-1)&md, end+(dot-end)&md
		lo := uint64(1)<<((uint(8*dot)+sh)&63) - 1 // the bytes below the '.'
		y = y&^uint64(md) | (y&^(lo<<8|0xff)|(y&lo)<<8|'0')&uint64(md)
		// A number of JSON's grammar: a digit at least before the '.' and after it,
		// no leading zero; ending at the comma, within the word (end < 8).
		if end == 8 || !jsonnum.EightDigits(y) || e == 0 && md != 0 || lead <= int(neg) ||
			byte(x>>(8*neg&63)) == '0' && lead > int(neg)+1 {
			// Or null (a missing value: NaN), which here costs no return.
			if uint32(x) != 'n'|'u'<<8|'l'<<16|'l'<<24 || end != 4 {
				return i, k
			}
			row[pl.col] = math.NaN()
		} else {
			// w < 10^7 and 10^e are exact: the quotient is the correctly rounded
			// value, and ×(±1) is exact.
			row[pl.col] = float64(int64(jsonnum.EightDigitsValue(y))) / exact10[e&15] * exactSign[neg&1]
		}
		k++
		i = j + end
		// The next member: its '"' after the ',', or after ", " (Python's json.dumps).
		if k == len(places) || i+2 >= len(b) {
			return i, k
		}
		sp := 1
		if b[i+1] == ' ' {
			sp = 2
		}
		if b[i+sp] != '"' {
			return i, k
		}
		i += sp
	}
}

// load64 is the 8 bytes at base+off, little-endian, without the bounds checks and
// slice arithmetic of binary.LittleEndian.Uint64(b[off:]) (eight instructions around
// each load, several loads a member): each use in layoutRun follows a check that
// off+8 is within the body.
func load64(base unsafe.Pointer, off int) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, off))[:])
}

// exactSign is the sign of a number without ('+') and with a '-'.
var exactSign = [2]float64{1, -1}

// exact10 holds 10^0 to 10^15, each exact in a float64 (layoutRun's division).
var exact10 = [16]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// featureEnd reads the ',' or '}' after a feature.
func (s *jsonScanner) featureEnd() error {
	switch s.peek() {
	case ',', '}':
		s.i++
		return nil
	default:
		return s.errf("features: want ',' or '}', found %s", s.found())
	}
}
