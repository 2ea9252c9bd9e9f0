package sidecar

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// Presizing. Appending element by element to a slice that ends up holding millions of
// elements allocates every intermediate array too: with Go's growth, several times the
// final slice is allocated and becomes garbage that the process keeps resident until the
// collector and the scavenger return it. For a body of at least presizeMin bytes the
// decoders therefore count first (a byte scan of the container about to be decoded, or a
// walk of the protobuf tags), check the counts against the limits, take the bytes from
// the byte budget, and allocate each slice once at its final size. Smaller bodies skip
// the count: what growth wastes on them is small.
const presizeMin = 256 << 10

// presize is what a container of the body will append: an upper bound for a valid body.
type presize struct {
	cands, feats, candKeys, context, ctxKeys int
	nrows, rows                              int // dense rows and their values
}

// reserve checks the counts against lim, takes their bytes from the byte budget
// (request.reserveDecoded), then grows r's slices to hold them. Nothing is allocated when it fails.
func (n presize) reserve(r *request, lim decodeLimits) error {
	if rows := max(len(r.cands)+n.cands, r.nrows+n.nrows); rows > lim.rows {
		return fmt.Errorf("%w: the body holds %d rows, the limit is %d (--max-candidates)", errTooManyCandidates, rows, lim.rows)
	}
	cells := len(r.feats) + len(r.context) + len(r.ctxKeys) + len(r.candKeys) + len(r.rows) + r.dir.cells
	add := n.feats + n.candKeys + n.context + n.ctxKeys + n.rows
	if cells+add > lim.cells {
		return fmt.Errorf("%w: the body holds %d feature values and keys, the limit is %d (--max-cells)", errTooManyCells, cells+add, lim.cells)
	}
	need := r.decodedBytes() + int64(n.cands)*candidateBytes + int64(n.feats+n.context)*featureBytes +
		int64(n.candKeys+n.ctxKeys)*keyBytes + 8*int64(n.rows)
	if err := r.reserveDecoded(need); err != nil {
		return err
	}
	r.cands = slices.Grow(r.cands, n.cands)
	r.feats = slices.Grow(r.feats, n.feats)
	r.candKeys = slices.Grow(r.candKeys, n.candKeys)
	r.context = slices.Grow(r.context, n.context)
	r.ctxKeys = slices.Grow(r.ctxKeys, n.ctxKeys)
	r.rows = slices.Grow(r.rows, n.rows)
	return nil
}

// countJSON counts what the JSON container (object or array) at b[i] holds, to its
// matching close or the end of b:
//
//   - members: the members of an object, or the elements of an array;
//   - feats and keys: members of the objects that are the "features" and "keys" members
//     of its elements (a candidates array);
//   - values: elements of the arrays that are its elements (a rows array).
//
// Strings are skipped; an escaped member name is not recognized, which only makes a
// count smaller, and the slices then grow as they are appended to.
func countJSON(b []byte, i int) (members, feats, keys, values int) {
	depth := 0
	parent := 0 // at depth 3: 1 under "features", 2 under "keys"
	opened := 0 // the depth of a container that holds no element yet (0: none)
	for ; i < len(b); i++ {
		c := b[i]
		switch jsonClass[c] {
		case jsonSpace:
			continue
		case jsonPlain:
			if opened == 0 {
				continue // inside a number or literal, or one that counts nothing
			}
		}
		switch c {
		case '}', ']':
			depth--
			opened = 0
			if depth == 0 {
				return
			}
			continue
		}
		// c starts or continues a value at depth: the first element of a container
		// opened there counts.
		if opened == depth && depth > 0 {
			switch depth {
			case 1:
				members++
			case 2:
				values++
			}
			opened = 0
		}
		switch c {
		case '"':
			j := skipJSONString(b, i+1)
			if depth == 2 {
				switch string(b[i+1 : min(j, len(b))]) {
				case "features":
					parent = 1
				case "keys":
					parent = 2
				default:
					parent = 0
				}
			}
			i = j
		case '{', '[':
			depth++
			opened = depth
		case ',':
			switch depth {
			case 1:
				members++
			case 2:
				values++
			}
		case ':':
			if depth == 3 {
				switch parent {
				case 1:
					feats++
				case 2:
					keys++
				}
			}
		}
	}
	return
}

// Byte classes for countJSON.
const (
	jsonPlain = iota // part of a number or a literal
	jsonSpace
	jsonStructural // " { } [ ] , :
)

var jsonClass = func() (t [256]uint8) {
	for _, c := range " \t\n\r" {
		t[c] = jsonSpace
	}
	for _, c := range `"{}[],:` {
		t[c] = jsonStructural
	}
	return t
}()

// skipJSONString returns the offset of the quote that closes the string whose first
// byte is b[i], or len(b).
func skipJSONString(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		j := i + q
		// The quote is escaped when an odd number of backslashes precede it.
		k := j
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j
		}
		i = j + 1
	}
}

// countProto counts what a protobuf PredictRequest body holds; it stops at the first
// malformed field, leaving the error to the decoder.
func countProto(b []byte) presize {
	var n presize
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return n
		}
		b = b[k:]
		k = protowire.ConsumeFieldValue(num, typ, b)
		if k < 0 {
			return n
		}
		v := b[:k]
		b = b[k:]
		if typ != protowire.BytesType {
			continue
		}
		m, _ := protowire.ConsumeBytes(v)
		switch num {
		case wire.RequestContext:
			n.context++
		case wire.RequestKeys:
			n.ctxKeys++
		case wire.RequestCandidates:
			n.cands++
			countCandidate(m, &n)
		case wire.RequestRows:
			n.nrows++
			walkProto(m, func(num protowire.Number, typ protowire.Type, v []byte) {
				if num != wire.RowValues {
					return
				}
				if typ == protowire.Fixed64Type {
					n.rows++
				} else if typ == protowire.BytesType {
					p, _ := protowire.ConsumeBytes(v)
					n.rows += len(p) / 8
				}
			})
		}
	}
	return n
}

// countCandidate counts a Candidate's features and keys into n. A feature of less than
// 128 bytes, as every encoder writes it, is stepped over by its one-byte length.
func countCandidate(b []byte, n *presize) {
	for len(b) > 0 {
		if len(b) >= 2 && b[0] == tagCandidateFeature && b[1] < 0x80 && int(b[1]) <= len(b)-2 {
			n.feats++
			b = b[2+int(b[1]):]
			continue
		}
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return
		}
		b = b[k:]
		if k = protowire.ConsumeFieldValue(num, typ, b); k < 0 {
			return
		}
		b = b[k:]
		switch num {
		case wire.CandidateFeatures:
			n.feats++
		case wire.CandidateKeys:
			n.candKeys++
		}
	}
}

// walkProto calls f with each field of message b, stopping at the first malformed one.
func walkProto(b []byte, f func(protowire.Number, protowire.Type, []byte)) {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return
		}
		b = b[k:]
		k = protowire.ConsumeFieldValue(num, typ, b)
		if k < 0 {
			return
		}
		f(num, typ, b[:k])
		b = b[k:]
	}
}
