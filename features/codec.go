package features

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/predictd/predictd/internal/parsefloat"
)

// codec is the first byte of an encoded list or embedding: how the packed float32 payload
// that follows is compressed. The writer falls back to codecNone when compression does not
// shrink the payload (random-looking embeddings rarely compress), so the tag is per value.
type codec byte

const (
	codecNone   codec = 0
	codecS2     codec = 1
	codecSnappy codec = 2
	codecZstd   codec = 3
	// codecShuffle is snappy over byte-shuffled floats: all first bytes, then all second
	// bytes, and so on (as Blosc does). Lists of small counts or rounded prices share
	// exponent bytes and have zero low bytes, which snappy's 4-byte matches find only once
	// the bytes are grouped: BenchmarkVectorCodec measured 0.55 of the raw size against
	// 0.93 unshuffled.
	codecShuffle codec = 4
)

// defaultCodec is chosen by BenchmarkVectorCodec (docs/benchmarks.md, "Feature store"):
// on realistic lists it compresses best but for zstd, which decodes ~50× slower.
const defaultCodec = codecShuffle

func codecByName(name string) (codec, error) {
	switch name {
	case "":
		return defaultCodec, nil
	case "none":
		return codecNone, nil
	case "s2":
		return codecS2, nil
	case "snappy":
		return codecSnappy, nil
	case "zstd":
		return codecZstd, nil
	case "shuffle-snappy":
		return codecShuffle, nil
	}
	return 0, fmt.Errorf("unknown codec %q (want shuffle-snappy, snappy, s2, zstd or none)", name)
}

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

// zstdCodecs returns shared zstd coders; EncodeAll and DecodeAll are safe for concurrent
// use. The decoder's memory is bounded so that a hostile value cannot make it allocate more
// than one maximal vector.
func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic("BUG: zstd encoder: " + err.Error())
		}
		zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(4*maxVectorLen+1024))
		if err != nil {
			panic("BUG: zstd decoder: " + err.Error())
		}
	})
	return zstdEnc, zstdDec
}

// Value is a typed feature value for EncodeValue and Lookup. Which field holds it depends on
// the feature's type: F for float32/float64, I for int64, S for string, V for list and
// embedding.
type Value struct {
	F float64
	I int64
	S []byte
	V []float32
}

// EncodeValue appends the stored form of v, a value of feature f, to dst.
func (g *Group) EncodeValue(dst []byte, f *Feature, v Value) ([]byte, error) {
	switch f.Type {
	case Float32:
		return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v.F))), nil
	case Float64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.F)), nil
	case Int64:
		return binary.LittleEndian.AppendUint64(dst, uint64(v.I)), nil
	case String:
		return append(dst, v.S...), nil
	case List:
		if len(v.V) > f.Len {
			return dst, fmt.Errorf("%w: feature %q holds at most %d values, got %d", ErrBadValue, f.Name, f.Len, len(v.V))
		}
	case Embedding:
		if len(v.V) != f.Dim {
			return dst, fmt.Errorf("%w: embedding %q has dim %d, got %d values", ErrBadValue, f.Name, f.Dim, len(v.V))
		}
	default:
		panic("BUG: unvalidated feature type " + string(f.Type))
	}
	return appendVector(dst, g.codec, v.V), nil
}

// appendVector appends tag + packed float32s, compressed with c when that is smaller.
func appendVector(dst []byte, c codec, v []float32) []byte {
	raw := make([]byte, 0, 4*len(v))
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	start := len(dst)
	dst = append(dst, byte(c))
	switch c {
	case codecShuffle:
		n := len(v)
		sh := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			sh[i], sh[n+i], sh[2*n+i], sh[3*n+i] = raw[4*i], raw[4*i+1], raw[4*i+2], raw[4*i+3]
		}
		dst = append(dst, s2.EncodeSnappy(nil, sh)...)
	case codecNone:
		return append(dst, raw...)
	case codecS2:
		dst = append(dst, s2.Encode(nil, raw)...)
	case codecSnappy:
		dst = append(dst, s2.EncodeSnappy(nil, raw)...)
	case codecZstd:
		enc, _ := zstdCodecs()
		dst = enc.EncodeAll(raw, dst)
	}
	if len(dst)-start-1 >= len(raw) {
		dst = append(dst[:start], byte(codecNone))
		dst = append(dst, raw...)
	}
	return dst
}

// decodeVector decodes a stored list or embedding into packed float32 bytes, using buf as
// scratch; the result aliases buf or raw and is valid until either changes. shuffled says
// the bytes are grouped by position (read them with float32At). maxLen bounds the element
// count before anything is allocated.
func decodeVector(buf, raw []byte, maxLen int) (out []byte, shuffled bool, err error) {
	out, err = decodeVectorBytes(buf, raw, maxLen)
	return out, err == nil && codec(raw[0]) == codecShuffle, err
}

// float32At returns value k of n packed float32s.
func float32At(p []byte, n, k int, shuffled bool) float32 {
	if shuffled {
		return math.Float32frombits(uint32(p[k]) | uint32(p[n+k])<<8 | uint32(p[2*n+k])<<16 | uint32(p[3*n+k])<<24)
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(p[4*k:]))
}

func decodeVectorBytes(buf, raw []byte, maxLen int) ([]byte, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty vector value", ErrBadValue)
	}
	c, payload := codec(raw[0]), raw[1:]
	var out []byte
	switch c {
	case codecNone:
		out = payload
	case codecS2, codecSnappy, codecShuffle:
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadValue, err)
		}
		if n > 4*maxLen {
			return nil, fmt.Errorf("%w: vector decodes to %d bytes, more than %d values", ErrBadValue, n, maxLen)
		}
		out, err = s2.Decode(buf[:cap(buf)], payload)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadValue, err)
		}
	case codecZstd:
		_, dec := zstdCodecs()
		var err error
		out, err = dec.DecodeAll(payload, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadValue, err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown vector codec tag %d", ErrBadValue, c)
	}
	if len(out)%4 != 0 || len(out) > 4*maxLen {
		return nil, fmt.Errorf("%w: vector payload of %d bytes is not at most %d float32s", ErrBadValue, len(out), maxLen)
	}
	return out, nil
}

// decodeNumeric writes feature f's stored value raw as f.Width() float64s into out. Lists
// shorter than Len are padded with NaN. buf is scratch for decompression; the grown buffer
// is returned for reuse.
func decodeNumeric(f *Feature, raw []byte, out []float64, buf []byte) ([]byte, error) {
	switch f.Type {
	case Float32:
		if len(raw) != 4 {
			return buf, fmt.Errorf("%w: float32 %q has %d bytes, want 4", ErrBadValue, f.Name, len(raw))
		}
		out[0] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw)))
	case Float64:
		if len(raw) != 8 {
			return buf, fmt.Errorf("%w: float64 %q has %d bytes, want 8", ErrBadValue, f.Name, len(raw))
		}
		out[0] = math.Float64frombits(binary.LittleEndian.Uint64(raw))
	case Int64:
		if len(raw) != 8 {
			return buf, fmt.Errorf("%w: int64 %q has %d bytes, want 8", ErrBadValue, f.Name, len(raw))
		}
		out[0] = float64(int64(binary.LittleEndian.Uint64(raw)))
	case List, Embedding:
		w := f.Width()
		if cap(buf) < 4*w {
			buf = make([]byte, 4*w)
		}
		p, shuffled, err := decodeVector(buf, raw, w)
		if err != nil {
			return buf, fmt.Errorf("feature %q: %w", f.Name, err)
		}
		n := len(p) / 4
		if f.Type == Embedding && n != w {
			return buf, fmt.Errorf("%w: embedding %q has %d values, want %d", ErrBadValue, f.Name, n, w)
		}
		for i := 0; i < n; i++ {
			out[i] = float64(float32At(p, n, i, shuffled))
		}
		for i := n; i < w; i++ {
			out[i] = math.NaN()
		}
	default:
		return buf, fmt.Errorf("%w: feature %q of type %s is not numeric", ErrBadValue, f.Name, f.Type)
	}
	return buf, nil
}

// DecodeValue decodes feature f's stored value. The result does not alias raw.
func DecodeValue(f *Feature, raw []byte) (Value, error) {
	switch f.Type {
	case String:
		return Value{S: append([]byte(nil), raw...)}, nil
	case Int64:
		if len(raw) != 8 {
			return Value{}, fmt.Errorf("%w: int64 %q has %d bytes, want 8", ErrBadValue, f.Name, len(raw))
		}
		return Value{I: int64(binary.LittleEndian.Uint64(raw))}, nil
	case Float32, Float64:
		var out [1]float64
		if _, err := decodeNumeric(f, raw, out[:], nil); err != nil {
			return Value{}, err
		}
		return Value{F: out[0]}, nil
	case List, Embedding:
		p, shuffled, err := decodeVector(make([]byte, 4*f.Width()), raw, f.Width())
		if err != nil {
			return Value{}, fmt.Errorf("feature %q: %w", f.Name, err)
		}
		if f.Type == Embedding && len(p) != 4*f.Dim {
			return Value{}, fmt.Errorf("%w: embedding %q has %d values, want %d", ErrBadValue, f.Name, len(p)/4, f.Dim)
		}
		v := make([]float32, len(p)/4)
		for i := range v {
			v[i] = float32At(p, len(v), i, shuffled)
		}
		return Value{V: v}, nil
	}
	return Value{}, fmt.Errorf("%w: feature %q has unknown type %q", ErrBadValue, f.Name, f.Type)
}

// parseCell parses a load-file cell (text) into feature f's Value. Lists and embeddings are
// space-separated numbers; vs is reused for them.
func parseCell(f *Feature, cell string, vs []float32) (Value, error) {
	switch f.Type {
	case Float32:
		x, err := parsefloat.ParseFloat(strings.TrimSpace(cell), 32)
		if err != nil {
			return Value{}, fmt.Errorf("%q: %q is not a float32", f.Name, cell)
		}
		return Value{F: x}, nil
	case Float64:
		x, err := parsefloat.ParseFloat(strings.TrimSpace(cell), 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q: %q is not a float64", f.Name, cell)
		}
		return Value{F: x}, nil
	case Int64:
		x, err := strconv.ParseInt(strings.TrimSpace(cell), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%q: %q is not an int64", f.Name, cell)
		}
		return Value{I: x}, nil
	case String:
		return Value{S: []byte(cell)}, nil
	case List, Embedding:
		vs = vs[:0]
		for _, tok := range strings.Fields(cell) {
			if len(vs) == f.Width() {
				return Value{}, fmt.Errorf("%q: more than %d values", f.Name, f.Width())
			}
			x, err := parsefloat.ParseFloat(tok, 32)
			if err != nil {
				return Value{}, fmt.Errorf("%q: %q is not a number", f.Name, tok)
			}
			vs = append(vs, float32(x))
		}
		if f.Type == Embedding && len(vs) != f.Dim {
			return Value{}, fmt.Errorf("%q: embedding needs %d values, got %d", f.Name, f.Dim, len(vs))
		}
		return Value{V: vs}, nil
	}
	panic("BUG: unvalidated feature type " + string(f.Type))
}
