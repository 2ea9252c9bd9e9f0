// Package jsonnum parses JSON numbers from a byte slice into float64, scanning and
// converting in one pass, with the result strconv.ParseFloat gives for the same text:
// bit for bit, the same accept/reject (FuzzParse), and the exact value where strconv
// misreads a number of more than 800 digits (internal/parsefloat).
//
// strconv.ParseFloat needs a string (the scanner had already scanned the token to
// find its end) and falls back to a slow big-decimal algorithm when Eisel-Lemire
// declines, as it does for every subnormal: "5e-324" costs it tens of microseconds, so a
// body full of them would cost seconds of CPU. Parse converts with Clinger's fast path
// or fast_float's Eisel-Lemire variant (github.com/fastfloat/fast_float, which handles
// subnormals), and calls strconv (through parsefloat) only for a mantissa of more than
// 19 significant digits, which a shortest round-trip float64 never needs.
//
// AppendFloat writes a float64 as strconv.AppendFloat with 'g' and precision -1 does,
// byte for byte, in about half its time: the scores of a JSON response.
package jsonnum

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unsafe"

	"github.com/predictd/predictd/internal/parsefloat"
)

const (
	minPow10 = -342 // below it, any 19-digit mantissa rounds to zero
	maxPow10 = 308  // above it, to infinity
	maxExp   = 1 << 20
)

// exact holds the powers of ten a float64 represents exactly: Clinger's fast path.
var exact = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// Parse reads the JSON number at the start of b (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?
// ([eE][+-]?[0-9]+)?) and returns its value and length. n is 0 when b does not start
// with a number; a number beyond the float64 range returns ±Inf with ok false (as
// strconv.ParseFloat reports ErrRange). Parse reads only b, and does not keep it.
func Parse(b []byte) (v float64, n int, ok bool) {
	i := 0
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var (
		w     uint64 // the significant digits, at most 19
		nd    int    // how many w holds
		exp10 int    // w × 10^exp10 is the value
		many  bool   // more than 19 significant digits: strconv decides
	)
	start := i
	if i < len(b) && b[i] == '0' {
		i++
	} else {
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if nd < 19 {
				w = w*10 + uint64(b[i]-'0')
				nd++
			} else {
				many = true
				exp10++
			}
		}
		if i == start {
			return 0, 0, false
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		f := i
		// Leading zeros of a value below 1 are not significant: skipped first, so that the
		// steps below count only significant digits in nd.
		if w == 0 {
			for i < len(b) && b[i] == '0' {
				i++
				exp10--
			}
		}
		// Up to eight fraction digits per step without a branch per digit: the digit run
		// at the front of the next 8 bytes is counted from a mask and converted at once.
		ended := false
		for i+8 <= len(b) && nd <= 19-8 {
			c := binary.LittleEndian.Uint64(b[i:])
			k := DigitRun(c)
			if k == 0 {
				ended = true
				break
			}
			w = w*pow10[k] + LeadingDigitsValue(c, k)
			nd += k
			exp10 -= k
			i += k
			if k < 8 {
				ended = true
				break
			}
		}
		for ; !ended && i < len(b) && b[i]-'0' < 10; i++ {
			// Eight digits at once once the leading zeros are behind (fast_float's
			// loop): most feature values carry 15–17 digits.
			for w != 0 && nd <= 19-8 && i+8 <= len(b) {
				c := binary.LittleEndian.Uint64(b[i:])
				if !EightDigits(c) {
					break
				}
				w = w*100000000 + EightDigitsValue(c)
				nd += 8
				exp10 -= 8
				i += 8
			}
			if i >= len(b) || b[i]-'0' >= 10 {
				break
			}
			switch d := uint64(b[i] - '0'); {
			case w == 0 && d == 0:
				exp10-- // a leading zero: not significant
			case nd < 19:
				w = w*10 + d
				nd++
				exp10--
			default:
				many = true
			}
		}
		if i == f {
			return 0, 0, false
		}
	}
	if i < len(b) && b[i]|0x20 == 'e' {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		e, f := 0, i
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if e < maxExp { // beyond it the value is 0 or ±Inf anyway
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == f {
			return 0, 0, false
		}
		if eneg {
			e = -e
		}
		exp10 += e
	}
	if many {
		return slowParse(b[:i])
	}
	if w <= 1<<53 && exp10 >= -22 && exp10 <= 22 {
		// Clinger's fast path, as in convert, here without the call: most values take it.
		v, ok = float64(w), true
		if exp10 < 0 {
			v /= exact[-exp10]
		} else {
			v *= exact[exp10]
		}
	} else {
		v, ok = Convert(w, exp10)
	}
	if neg {
		v = -v
	}
	return v, i, ok
}

// EightDigits tells whether the 8 bytes of c (little-endian) are all ASCII digits.
func EightDigits(c uint64) bool {
	return ((c+0x4646464646464646)|(c-0x3030303030303030))&0x8080808080808080 == 0
}

// pow10 holds 10^k for the digit runs of LeadingDigitsValue.
var pow10 = [...]uint64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// DigitRun is how many of the 8 bytes of c (little-endian: b[i] in the low byte) are
// ASCII digits before the first that is not, 0 to 8. Each byte's flag is the EightDigits
// test's; a flag can be wrong only above the first non-digit byte (a borrow or carry
// from it), and only the lowest flag is read.
func DigitRun(c uint64) int {
	t := ((c + 0x4646464646464646) | (c - 0x3030303030303030)) & 0x8080808080808080
	return bits.TrailingZeros64(t) >> 3
}

// LeadingDigitsValue is the value of the first k (0 to 8) bytes of c, ASCII digits: c
// shifted so they are the last k of eight, the bytes before them '0' (k = 0: zero).
func LeadingDigitsValue(c uint64, k int) uint64 {
	s := uint(64 - 8*k)
	return EightDigitsValue(c<<s | 0x3030303030303030>>(64-s))
}

// EightDigitsValue is the value of the 8 ASCII digits in c, the first in the low byte
// (fast_float's parse_eight_digits_unrolled).
func EightDigitsValue(c uint64) uint64 {
	const (
		mask = 0x000000FF000000FF
		mul1 = 0x000F424000000064 // 100 + (1000000 << 32)
		mul2 = 0x0000271000000001 // 1 + (10000 << 32)
	)
	c -= 0x3030303030303030
	c = c*10 + c>>8
	return uint64(uint32((c&mask*mul1 + (c>>16)&mask*mul2) >> 32))
}

// slowParse is slow; a test counts its calls.
var slowParse = slow

// slow parses tok, a valid JSON number of more than 19 significant digits, with
// parsefloat (strconv's, long numbers read right); unsafe.String avoids a copy
// (ParseFloat keeps no reference to it).
func slow(tok []byte) (float64, int, bool) {
	v, err := parsefloat.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
	return v, len(tok), err == nil
}

// Convert returns w × 10^q rounded to the nearest float64 (ties to even); ok is false
// when it overflows (then ±Inf as strconv gives). w must be the number's exact
// significant digits (at most 19 of them), as Parse gathers them.
func Convert(w uint64, q int) (float64, bool) {
	if w == 0 {
		return 0, true
	}
	// Clinger: both factors exact, so the one rounding of the product or quotient is
	// the correctly rounded result.
	if w <= 1<<53 && q >= -22 && q <= 22 {
		if q < 0 {
			return float64(w) / exact[-q], true
		}
		return float64(w) * exact[q], true
	}
	if q < minPow10 {
		return 0, true
	}
	if q > maxPow10 {
		return math.Inf(1), false
	}
	f := math.Float64frombits(eiselLemire(w, q))
	return f, !math.IsInf(f, 0)
}

// eiselLemire is fast_float's compute_float for float64 (include/fast_float/
// decimal_to_binary.h): for an exact 19-digit w the 128-bit product with pow5 always
// decides the rounding (fast_float's script/mushtak_lemire.py proves it), subnormals
// included. It returns the float64's bits, +Inf's on overflow.
func eiselLemire(w uint64, q int) uint64 {
	const (
		mantBits = 52
		minExp   = -1023
		infPow   = 0x7FF
	)
	lz := bits.LeadingZeros64(w)
	w <<= lz
	idx := 2 * (q - minPow10)
	hi, lo := bits.Mul64(w, pow5[idx])
	// The mantissa takes the top 55 bits of hi; when the bits below them are all ones,
	// a carry from the next word could change them: take it in.
	const precisionMask = uint64(0xFFFFFFFFFFFFFFFF) >> (mantBits + 3)
	if hi&precisionMask == precisionMask {
		hi2, _ := bits.Mul64(w, pow5[idx+1])
		lo += hi2
		if hi2 > lo {
			hi++
		}
	}
	upper := int(hi >> 63)
	shift := upper + 64 - mantBits - 3
	m := hi >> shift
	// ((152170 + 65536) × q) >> 16 is floor(log2(10^q)), for |q| ≤ 1233.
	p2 := (((152170+65536)*q)>>16 + 63) + upper - lz - minExp
	if p2 <= 0 { // subnormal
		if -p2+1 >= 64 {
			return 0
		}
		m >>= -p2 + 1
		m += m & 1 // round half up: an exact tie cannot occur this far down
		m >>= 1
		if m < 1<<mantBits {
			return m
		}
		return m&^(1<<mantBits) | 1<<mantBits // rounded up into the smallest normal
	}
	// A tie rounds to even: an exact product (low word ≤ 1) exactly half way, which
	// can only happen for q in [-4, 23].
	if lo <= 1 && q >= -4 && q <= 23 && m&3 == 1 && m<<shift == hi {
		m &^= 1
	}
	m += m & 1
	m >>= 1
	if m >= 2<<mantBits {
		m = 1 << mantBits
		p2++
	}
	m &^= 1 << mantBits
	if p2 >= infPow {
		return infPow << mantBits
	}
	return uint64(p2)<<mantBits | m
}
