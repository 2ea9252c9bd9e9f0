package sidecar

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"

	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeProto decodes a protobuf PredictRequest (api/predict.proto, field numbers from
// api/wire) from body into r with protowire, field by field: no generated types, no
// reflection, no per-candidate allocation (over 4× faster than proto.Unmarshal on 100
// named candidates, BenchmarkDecodeProto). r's byte slices point into body. Unknown fields are skipped, as protobuf
// requires for forward compatibility; malformed wire data and wrong wire types are
// errors. lim is checked before each element is appended. With r.dir on, candidates are
// decoded into the matrix (decode_direct.go).
func decodeProto(r *request, body []byte, lim decodeLimits) error {
	if len(body) > maxDecodeBody {
		return fmt.Errorf("%w: a body of %d bytes, the most a request may have is %d", errTooManyCells, len(body), maxDecodeBody)
	}
	r.body = body
	if lim.plain {
		r.dir.reset()
	}
	err := decodeProtoBody(r, body, lim)
	if r.dir.on() && (err != nil || !r.dir.resolvedAs(r)) {
		return r.redecode(decodeProto, lim)
	}
	return err
}

func decodeProtoBody(r *request, body []byte, lim decodeLimits) error {
	r.dir.proto = true
	// A large body is counted first (presize), but on the direct path, where no feature
	// is listed and the first candidate's size gives the estimate the matrix is reserved
	// with: a pass over the body's candidates costs a cache miss each. Dense rows are
	// counted at the first row, context and keys beyond a few thousand decode on the
	// generic path.
	if lim.presizes(len(body)) && !r.dir.on() {
		if err := countProto(body).reserve(r, lim); err != nil {
			return err
		}
	}
	haveCands, haveRows := false, false
	for len(body) > 0 {
		num, typ, n := consumeTag(body)
		if n < 0 {
			return protoErr("PredictRequest", n)
		}
		body = body[n:]
		var err error
		switch num {
		case wire.RequestModel, wire.RequestVersion, wire.RequestOutput:
			var s []byte
			if s, body, err = protoString(body, typ, "PredictRequest"); err != nil {
				return err
			}
			switch num {
			case wire.RequestModel:
				r.model = s
			case wire.RequestVersion:
				r.version = s
			case wire.RequestOutput:
				if err := r.setOutput(s); err != nil {
					return err
				}
			}
		case wire.RequestContext:
			if r.dir.on() && (len(r.cands) > 0 || len(r.context) >= maxDirectContext) {
				return errRedo // written before the candidates by apply, or uncounted
			}
			var m []byte
			if m, body, err = protoMessage(body, typ, "PredictRequest.context"); err != nil {
				return err
			}
			f, vec, err := decodeFeature(r, m, &lim, -1)
			if err != nil {
				return err
			}
			if vec {
				continue
			}
			if err := lim.cell(r); err != nil {
				return err
			}
			r.context = append(r.context, f)
		case wire.RequestCandidates:
			haveCands = true
			var m []byte
			if m, body, err = protoMessage(body, typ, "PredictRequest.candidates"); err != nil {
				return err
			}
			if err := lim.row(len(r.cands)); err != nil {
				return err
			}
			if !r.dir.on() {
				if err := decodeCandidate(r, m, lim); err != nil {
					return err
				}
				continue
			}
			if err := decodeCandidateDirect(r, m, lim); err != nil {
				return err
			}
			if len(r.cands) == 1 && lim.presizes(len(r.body)) {
				r.dir.reserve(r, len(body)/max(len(r.body)-len(body), 1)+1, lim)
			}
		case wire.RequestRows:
			if !haveRows && r.dir.on() && lim.presizes(len(r.body)) {
				// Dense rows on the direct path, which counted no body first: now.
				if err := countProto(r.body).reserve(r, lim); err != nil {
					return err
				}
			}
			haveRows = true
			var m []byte
			if m, body, err = protoMessage(body, typ, "PredictRequest.rows"); err != nil {
				return err
			}
			if err := lim.row(r.nrows); err != nil {
				return err
			}
			n0 := len(r.rows)
			if err := decodeRow(r, m, lim); err != nil {
				return err
			}
			if err := r.addRow(r.nrows, len(r.rows)-n0); err != nil {
				return err
			}
		case wire.RequestKeys:
			if r.dir.on() && len(r.ctxKeys) >= maxDirectContext {
				return errRedo // uncounted: the generic path counts first
			}
			var m []byte
			if m, body, err = protoMessage(body, typ, "PredictRequest.keys"); err != nil {
				return err
			}
			k, err := decodeKey(r, m)
			if err != nil {
				return err
			}
			if err := lim.cell(r); err != nil {
				return err
			}
			r.ctxKeys = append(r.ctxKeys, k)
		default:
			if body, err = protoSkip(body, num, typ, "PredictRequest"); err != nil {
				return err
			}
		}
	}
	return r.finishDecode(haveCands, haveRows)
}

// Tag bytes of the fields the named fast paths read (field number << 3 | wire type).
const (
	tagCandidateID      = byte(wire.CandidateID)<<3 | byte(protowire.BytesType)
	tagCandidateFeature = byte(wire.CandidateFeatures)<<3 | byte(protowire.BytesType)
	tagFeatureName      = byte(wire.FeatureName)<<3 | byte(protowire.BytesType)
	tagFeatureValue     = byte(wire.FeatureValue)<<3 | byte(protowire.Fixed64Type)
)

// addCandidateFeature decodes one Feature message m of the candidate being decoded (the
// next in r.cands): a vector goes to r's vectors (decodeFeature), a scalar counts as a cell
// and joins r.feats.
func addCandidateFeature(r *request, m []byte, lim *decodeLimits) error {
	f, vec, err := decodeFeature(r, m, lim, int32(len(r.cands)))
	if err != nil || vec {
		return err
	}
	if err := lim.cell(r); err != nil {
		return err
	}
	r.feats = append(r.feats, f)
	return nil
}

func decodeCandidate(r *request, b []byte, lim decodeLimits) error {
	c := candidate{f0: uint32(len(r.feats)), k0: uint32(len(r.candKeys))}
	for len(b) > 0 {
		// A feature of less than 128 bytes, as every encoder writes it: its tag and
		// one-byte length read here rather than through protowire.
		if len(b) >= 2 && b[0] == tagCandidateFeature && b[1] < 0x80 && int(b[1]) <= len(b)-2 && !lim.plain {
			m := b[2 : 2+int(b[1])]
			b = b[2+int(b[1]):]
			if err := addCandidateFeature(r, m, &lim); err != nil {
				return err
			}
			continue
		}
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protoErr("Candidate", n)
		}
		b = b[n:]
		var (
			m   []byte
			err error
		)
		switch num {
		case wire.CandidateID:
			var id []byte
			if id, b, err = protoString(b, typ, "Candidate.id"); err != nil {
				return err
			}
			c.id = r.idSpan(id)
		case wire.CandidateFeatures:
			if m, b, err = protoMessage(b, typ, "Candidate.features"); err != nil {
				return err
			}
			if err := addCandidateFeature(r, m, &lim); err != nil {
				return err
			}
		case wire.CandidateKeys:
			if m, b, err = protoMessage(b, typ, "Candidate.keys"); err != nil {
				return err
			}
			k, err := decodeKey(r, m)
			if err != nil {
				return err
			}
			if err := lim.cell(r); err != nil {
				return err
			}
			r.candKeys = append(r.candKeys, k)
		default:
			if b, err = protoSkip(b, num, typ, "Candidate"); err != nil {
				return err
			}
		}
	}
	c.f1, c.k1 = uint32(len(r.feats)), uint32(len(r.candKeys))
	r.cands = append(r.cands, c)
	return nil
}

// decodeCandidateDirect is decodeCandidate on the direct path (decode_direct.go): the
// candidate's features go to its row of the matrix. A feature in the form every encoder
// writes whose name is the learned layout's at the expected place is read in place; any
// other takes decodeFeature and the layout's map lookup.
func decodeCandidateDirect(r *request, b []byte, lim decodeLimits) error {
	d := &r.dir
	row, err := d.row(r)
	if err != nil {
		return err
	}
	c := candidate{f0: uint32(len(r.feats)), k0: uint32(len(r.candKeys))}
	learning := len(r.cands) == 0
	left := lim.cells - r.cellCount() // values that may still be decoded
	p := 0                            // the learned place the next name is expected at
	// feature decodes Feature m the generic way and writes it.
	feature := func(m []byte) error {
		f, vec, err := decodeFeature(r, m, &lim, int32(len(r.cands)))
		if err != nil {
			return err
		}
		if vec {
			left = lim.cells - r.cellCount()
			return nil
		}
		if left <= 0 {
			if err := lim.cell(r); err != nil {
				return err
			}
		}
		left--
		p = d.put(r, f.name, f.value, row, p, learning, nil)
		if len(r.feats) > d.maxListed(r) {
			return errRedo // uncounted: the generic path counts first
		}
		return nil
	}
	for len(b) > 0 {
		// The id as encoders write it (a length under 128) without the field loop; an
		// id that is not valid UTF-8 takes it, for its error.
		if len(b) >= 2 && b[0] == tagCandidateID && b[1] < 0x80 && int(b[1]) <= len(b)-2 {
			if id := b[2 : 2+int(b[1])]; validUTF8(id) {
				c.id = r.idSpan(id)
				b = b[2+int(b[1]):]
				continue
			}
		}
		// d.pre, as d.places, grows while the first candidate is read: read both here.
		pre := d.pre
		// A run of features sent as the first candidate sent them (protoRun), as many
		// as the limit allows; then the member that ended it, below.
		if p < len(d.places) {
			if left <= 0 { // at the limit, unless left was stale
				left = lim.cells - r.cellCount()
			}
			if left > 0 {
				used, k := protoRun(b, d.places[:min(len(d.places), p+left)], pre, row, p)
				if k > p {
					d.cells += k - p
					left -= k - p
					p, b = k, b[used:]
					continue
				}
			}
		}
		// A feature the layout expects here, sent without a value (missing): the same
		// name, the lengths 9 bytes shorter. (With a value it is protoRun's, above; at
		// the limit, the generic path's, which fails it there.)
		if p < len(d.places) {
			pl := &d.places[p]
			n := int(pl.npre)
			if n > 0 && n-1 <= len(b) && b[0] == tagCandidateFeature && int(b[1]) == n-3 &&
				sameName(b[2:n-1], pre[pl.pre+2:pl.pre+pl.npre-1]) {
				if left <= 0 {
					if err := lim.cell(r); err != nil {
						return err
					}
				}
				left--
				row[pl.col] = math.NaN()
				d.cells++
				p++
				b = b[n-1:]
				continue
			}
		}
		if len(b) >= 2 && b[0] == tagCandidateFeature && b[1] < 0x80 && int(b[1]) <= len(b)-2 {
			m := b[2 : 2+int(b[1])]
			b = b[2+int(b[1]):]
			if err := feature(m); err != nil {
				return err
			}
			continue
		}
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protoErr("Candidate", n)
		}
		b = b[n:]
		var m []byte
		switch num {
		case wire.CandidateID:
			var id []byte
			if id, b, err = protoString(b, typ, "Candidate.id"); err != nil {
				return err
			}
			c.id = r.idSpan(id)
		case wire.CandidateFeatures:
			if m, b, err = protoMessage(b, typ, "Candidate.features"); err != nil {
				return err
			}
			if err := feature(m); err != nil {
				return err
			}
		case wire.CandidateKeys:
			if m, b, err = protoMessage(b, typ, "Candidate.keys"); err != nil {
				return err
			}
			k, err := decodeKey(r, m)
			if err != nil {
				return err
			}
			if err := lim.cell(r); err != nil {
				return err
			}
			if len(r.candKeys) >= d.maxListed(r) {
				return errRedo // uncounted: the generic path counts first
			}
			r.candKeys = append(r.candKeys, k)
			left--
		default:
			if b, err = protoSkip(b, num, typ, "Candidate"); err != nil {
				return err
			}
		}
	}
	c.f1, c.k1 = uint32(len(r.feats)), uint32(len(r.candKeys))
	r.cands = append(r.cands, c)
	return nil
}

// decodeFeature reads a Feature, b a subslice of r.body; an absent value is missing
// (NaN). Unless lim.plain, the form every encoder writes (a name under 128 bytes, then
// the value or none) is read in place; anything else takes the field loop. A Feature
// with values is a vector: it is appended to r.vecs for candidate row (-1: the
// context) and vec is true.
func decodeFeature(r *request, b []byte, lim *decodeLimits, row int32) (f feature, vec bool, err error) {
	f = feature{value: math.NaN()}
	if len(b) >= 2 && b[0] == tagFeatureName && b[1] < 0x80 && !lim.plain {
		n := 2 + int(b[1])
		switch {
		case len(b) == n+9 && b[n] == tagFeatureValue:
			f.value = protoDouble(binary.LittleEndian.Uint64(b[n+1:]))
		case len(b) != n:
			n = 0 // not the usual form
		}
		if n > 0 && validUTF8(b[2:n]) {
			f.name = r.spanOf(b[2:n])
			return f, false, nil
		}
		f.value = math.NaN()
	}
	v0, hasValue, hasLabel := len(r.vecVals), false, false
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return f, false, protoErr("Feature", n)
		}
		b = b[n:]
		switch num {
		case wire.FeatureName:
			var name []byte
			if name, b, err = protoString(b, typ, "Feature.name"); err != nil {
				return f, false, err
			}
			f.name = r.spanOf(name)
		case wire.FeatureValue:
			if typ != protowire.Fixed64Type {
				return f, false, badRequest("protobuf Feature.value: wire type %d, want a double", typ)
			}
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return f, false, protoErr("Feature.value", n)
			}
			f.value, b, hasValue = protoDouble(v), b[n:], true
		case wire.FeatureLabel:
			var label []byte
			if label, b, err = protoString(b, typ, "Feature.label"); err != nil {
				return f, false, err
			}
			if len(label) > maxLabelBytes {
				return f, false, badRequest("protobuf Feature.label: %d bytes; category labels are at most %d", len(label), maxLabelBytes)
			}
			f.value, hasLabel, r.labels = boxLabel(r.spanOf(label)), true, true
		case wire.FeatureValues:
			vec = true
			if b, err = decodeDoubles(r, b, typ, *lim, "Feature.values"); err != nil {
				return f, false, err
			}
		default:
			if b, err = protoSkip(b, num, typ, "Feature"); err != nil {
				return f, false, err
			}
		}
	}
	if hasValue && hasLabel {
		return f, false, badRequest("protobuf Feature %q: both value and label (send one)", r.bytes(f.name))
	}
	if !vec {
		return f, false, nil
	}
	if hasValue {
		return f, false, badRequest("protobuf Feature %q: both value and values (send a number or a vector, not both)", r.bytes(f.name))
	}
	if hasLabel {
		return f, false, badRequest("protobuf Feature %q: both label and values (send a label or a vector, not both)", r.bytes(f.name))
	}
	r.vecs = append(r.vecs, vector{name: f.name, row: row, v0: uint32(v0), v1: uint32(len(r.vecVals))})
	return f, true, nil
}

// decodeDoubles appends one field of a repeated double (packed, or a single fixed64)
// to r.vecVals, within lim.cells, and returns the rest of b.
func decodeDoubles(r *request, b []byte, typ protowire.Type, lim decodeLimits, what string) ([]byte, error) {
	switch typ {
	case protowire.BytesType:
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return b, protoErr(what, n)
		}
		if len(p)%8 != 0 {
			return b, badRequest("protobuf %s: packed length %d is not a multiple of 8", what, len(p))
		}
		if len(p) > 0 {
			if c := r.cellCount() + len(p)/8; c > lim.cells {
				return b, fmt.Errorf("%w: %d feature values and keys, the limit is %d (--max-cells)", errTooManyCells, c, lim.cells)
			}
		}
		r.vecVals = growF64(r.vecVals, len(p)/8)
		dst := r.vecVals[len(r.vecVals)-len(p)/8:]
		for i := range dst {
			dst[i] = protoDouble(binary.LittleEndian.Uint64(p[8*i:]))
		}
		return b[n:], nil
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return b, protoErr(what, n)
		}
		if err := lim.cell(r); err != nil {
			return b, err
		}
		r.vecVals = append(r.vecVals, protoDouble(v))
		return b[n:], nil
	default:
		return b, badRequest("protobuf %s: wire type %d, want packed doubles", what, typ)
	}
}

// decodeKey reads a Key, b a subslice of r.body.
func decodeKey(r *request, b []byte) (key, error) {
	var k key
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return k, protoErr("Key", n)
		}
		b = b[n:]
		var (
			s   []byte
			err error
		)
		switch num {
		case wire.KeyName:
			s, b, err = protoString(b, typ, "Key.name")
			k.name = r.spanOf(s)
		case wire.KeyValue:
			s, b, err = protoString(b, typ, "Key.value")
			k.value = r.spanOf(s)
		default:
			b, err = protoSkip(b, num, typ, "Key")
		}
		if err != nil {
			return k, err
		}
	}
	return k, nil
}

// decodeRow appends a Row's values (packed, or one per field) to r.rows.
func decodeRow(r *request, b []byte, lim decodeLimits) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protoErr("Row", n)
		}
		b = b[n:]
		if num != wire.RowValues {
			var err error
			if b, err = protoSkip(b, num, typ, "Row"); err != nil {
				return err
			}
			continue
		}
		switch typ {
		case protowire.BytesType:
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protoErr("Row.values", n)
			}
			b = b[n:]
			if len(p)%8 != 0 {
				return badRequest("protobuf Row.values: packed length %d is not a multiple of 8", len(p))
			}
			if len(p) > 0 {
				if n := r.cellCount() + len(p)/8; n > lim.cells {
					return fmt.Errorf("%w: %d feature values and keys, the limit is %d (--max-cells)", errTooManyCells, n, lim.cells)
				}
			}
			r.rows = growF64(r.rows, len(p)/8)
			dst := r.rows[len(r.rows)-len(p)/8:]
			for i := range dst {
				dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[8*i:]))
			}
		case protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return protoErr("Row.values", n)
			}
			if err := lim.cell(r); err != nil {
				return err
			}
			b = b[n:]
			r.rows = append(r.rows, math.Float64frombits(v))
		default:
			return badRequest("protobuf Row.values: wire type %d, want packed doubles", typ)
		}
	}
	return nil
}

// growF64 extends s by n elements, reusing capacity.
func growF64(s []float64, n int) []float64 {
	if len(s)+n > cap(s) {
		t := make([]float64, len(s), max(2*cap(s), len(s)+n))
		copy(t, s)
		s = t
	}
	return s[:len(s)+n]
}

// validUTF8 is utf8.Valid with the ASCII names of features tested 8 bytes at a time
// in line: a call to utf8.Valid costs more than the test on a 10–20 byte name.
func validUTF8(b []byte) bool {
	const high = 0x8080808080808080
	var acc uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		acc |= binary.LittleEndian.Uint64(b[i:])
	}
	if i < len(b) {
		if len(b) >= 8 {
			acc |= binary.LittleEndian.Uint64(b[len(b)-8:]) // the tail, overlapping
		} else {
			for _, c := range b[i:] {
				acc |= uint64(c)
			}
		}
	}
	return acc&high == 0 || utf8.Valid(b)
}

func protoString(b []byte, typ protowire.Type, what string) ([]byte, []byte, error) {
	if typ != protowire.BytesType {
		return nil, b, badRequest("protobuf %s: wire type %d, want a string", what, typ)
	}
	s, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, b, protoErr(what, n)
	}
	if !utf8.Valid(s) {
		return nil, b, badRequest("protobuf %s: string is not valid UTF-8", what)
	}
	return s, b[n:], nil
}

func protoMessage(b []byte, typ protowire.Type, what string) ([]byte, []byte, error) {
	if typ != protowire.BytesType {
		return nil, b, badRequest("protobuf %s: wire type %d, want a message", what, typ)
	}
	m, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, b, protoErr(what, n)
	}
	return m, b[n:], nil
}

func protoSkip(b []byte, num protowire.Number, typ protowire.Type, what string) ([]byte, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return b, protoErr(what, n)
	}
	return b[n:], nil
}

func protoErr(what string, n int) error {
	return badRequest("malformed protobuf in %s: %v", what, protowire.ParseError(n))
}

// consumeTag is protowire.ConsumeTag that also rejects field numbers above
// protowire.MaxValidNumber, as the generated decoder does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire's errCodeFieldNumber: "invalid field number"
	}
	return num, typ, n
}

// protoRun reads the Features at b while each is the learned layout's next one, from
// place k on: its bytes up to the value (the Feature's tag and length, the name's tag,
// length and bytes, the value's tag) compared with the place's as 8-byte words, the
// double after them written to its column of row. It returns the bytes it read and the
// next place; the values it placed are the places it passed, and the caller bounds them
// by the places it gives. It calls nothing, for the reason layoutRun does not
// (decode_json.go), and stops at anything else: a Feature without a value, another
// name, another field.
func protoRun(b []byte, places []place, pre []byte, row []float64, k int) (int, int) {
	base := unsafe.Pointer(unsafe.SliceData(b))
	i := 0
run:
	for k < len(places) {
		pl := &places[k]
		n := int(pl.npre)
		if i+n+8 > len(b) {
			break
		}
		c := load64(base, i)
		if n < 8 {
			if c&pl.w[1] != pl.w[0] {
				break
			}
		} else if c != pl.w[0] || load64(base, i+n-8) != pl.w[2] || n > 16 && load64(base, i+8) != pl.w[1] {
			break
		} else if n > 24 {
			for o := 16; o < n-8; o += 8 {
				if load64(base, i+o) != binary.LittleEndian.Uint64(pre[int(pl.pre)+o:]) {
					break run
				}
			}
		}
		row[pl.col] = protoDouble(load64(base, i+n))
		k++
		i += n + 8
	}
	return i, k
}
