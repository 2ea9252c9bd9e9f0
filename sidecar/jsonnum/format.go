package jsonnum

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// AppendFloat appends v as strconv.AppendFloat(dst, v, 'g', -1, 64) does, byte for
// byte: the shortest decimal that parses back to v, in %e form when its exponent is
// below -4 or at least 6 (TestAppendFloat, FuzzAppendFloat). A response carries one
// such number per candidate and score.
//
// The digits come from Dragonbox as strconv computes them (shortest follows Go's
// internal/strconv ftoadbox.go, Copyright The Go Authors, BSD-style license, itself
// after github.com/jk-jeon/dragonbox's simple_dragonbox.h), with the powers of ten from
// Parse's table. What differs is the text: Dragonbox is a third of strconv's time, the
// rest writing the digits to a buffer and laying out the %e or %f form from it; here
// the digits are written once, where they end up: 24–28 ns a number against strconv's
// 37–72 (BenchmarkAppendFloat). NaN and the infinities go to strconv.
func AppendFloat(dst []byte, v float64) []byte {
	b := math.Float64bits(v)
	e := int(b>>52) & 0x7ff
	m := b & (1<<52 - 1)
	if e == 0x7ff {
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	if b>>63 != 0 {
		dst = append(dst, '-')
	}
	var q uint64
	var x int
	switch {
	case e != 0:
		q, x = shortest(m|1<<52, e-1075, false)
	case m != 0: // subnormal
		q, x = shortest(m, 1-1075, true)
	default:
		return append(dst, '0')
	}
	return appendDecimal(dst, q, x)
}

// shortest is Dragonbox for float64 (dboxFtoa64 in Go's internal/strconv, whose
// comments cite the paper's algorithms): the shortest q × 10^x in the rounding interval
// of mant × 2^exp, the one nearest to it among those, as strconv chooses it.
func shortest(mant uint64, exp int, denorm bool) (q uint64, x int) {
	if mant == 1<<52 && !denorm {
		// A power of two: its interval is wider below than above (Algorithm 5.6).
		k0 := -((exp*631305 - 261663) >> 21) // -⌊log10(2^exp) − log10(4/3)⌋
		φ, β := boxPow(k0, exp)
		xi := (φ.hi - φ.hi>>54) >> (64 - 52 - 1 - β)
		zi := (φ.hi + φ.hi>>53) >> (64 - 52 - 1 - β)
		if exp != 2 && exp != 3 {
			xi++
		}
		q := zi / 10
		if xi <= q*10 {
			q, zeros := trimZeros(q)
			return q, -k0 + 1 + zeros
		}
		yru := (φ.hi>>(64-52-2-β) + 1) / 2
		if exp == -77 && yru%2 != 0 {
			yru--
		} else if yru < xi {
			yru++
		}
		return yru, -k0
	}

	// κ = 2 for float64 (Algorithm 5.2).
	const (
		p10κ  = 100
		p10κ1 = 1000
	)
	k0 := -((exp * 78913) >> 18) // -⌊log10(2^exp)⌋
	φ, β := boxPow(2+k0, exp)
	zi, exact := boxMul(uint64(mant*2+1)<<β, φ)
	s, r := zi/p10κ1, uint32(zi%p10κ1)
	δi := uint32(φ.hi >> (64 - 1 - β))
	if r < δi {
		if r != 0 || !exact || mant%2 == 0 {
			s, zeros := trimZeros(s)
			return s, -k0 + 1 + zeros
		}
		s--
		r = p10κ * 10
	} else if r == δi {
		parity, exact := boxParity(mant*2-1, φ, β)
		if parity || (exact && mant%2 == 0) {
			s, zeros := trimZeros(s)
			return s, -k0 + 1 + zeros
		}
	}
	// Algorithm 5.4.
	D := r + p10κ/2 - δi/2
	t, ρ := D/p10κ, D%p10κ
	yru := 10*s + uint64(t)
	if ρ == 0 {
		parity, exact := boxParity(mant*2, φ, β)
		if parity != ((D-p10κ/2)%2 != 0) || exact && yru%2 != 0 {
			yru--
		}
	}
	return yru, -k0
}

type u128 struct{ hi, lo uint64 }

// boxPow is Dragonbox's φ̃k, 10^k in 128 bits rounded up (exact for 0 ≤ k ≤ 55), and β
// for the binary exponent e. Parse's table holds 5^k, which has 10^k's bits: rounded up
// for -27 ≤ k < 0 and exact up to 5^55, as Dragonbox needs; truncated elsewhere, where
// Dragonbox takes the truncation plus one (TestBoxPowers checks every k against
// math/big).
func boxPow(k, e int) (φ u128, β int) {
	i := 2 * (k - minPow10)
	φ = u128{pow5[i], pow5[i+1]}
	if k < -27 || k > 55 {
		φ.lo++
	}
	return φ, e + (k*108853)>>15 // e + ⌊log2(10^k)⌋
}

// boxMul returns the integer part of the 192-bit u × φ's top 128 bits, and whether
// its fraction is zero.
func boxMul(u uint64, φ u128) (uint64, bool) {
	hi, lo := bits.Mul64(u, φ.hi)
	t, _ := bits.Mul64(u, φ.lo)
	lo, c := bits.Add64(lo, t, 0)
	return hi + c, lo == 0
}

// boxParity returns the parity of the integer part of mant2 × φ scaled by β, and
// whether its fraction is zero.
func boxParity(mant2 uint64, φ u128, β int) (parity, exact bool) {
	h, l := bits.Mul64(mant2, φ.lo)
	hi := mant2*φ.hi + h
	parity = (hi>>(64-β))&1 != 0
	exact = hi<<β|l>>(64-β) == 0
	return parity, exact
}

// trimZeros removes x's trailing decimal zeros, returning what is left and how many
// it removed: the division by 10^n tested with multiplicative inverses, as
// internal/strconv does.
func trimZeros(x uint64) (uint64, int) {
	const (
		div1e8m  = 0xc767074b22e90e21
		div1e8le = math.MaxUint64 / 100000000
		div1e4m  = 0xd288ce703afb7e91
		div1e4le = math.MaxUint64 / 10000
		div1e2m  = 0x8f5c28f5c28f5c29
		div1e2le = math.MaxUint64 / 100
		div1e1m  = 0xcccccccccccccccd
		div1e1le = math.MaxUint64 / 10
	)
	p := 0
	for d := bits.RotateLeft64(x*div1e8m, -8); d <= div1e8le; d = bits.RotateLeft64(x*div1e8m, -8) {
		x = d
		p += 8
	}
	if d := bits.RotateLeft64(x*div1e4m, -4); d <= div1e4le {
		x = d
		p += 4
	}
	if d := bits.RotateLeft64(x*div1e2m, -2); d <= div1e2le {
		x = d
		p += 2
	}
	if d := bits.RotateLeft64(x*div1e1m, -1); d <= div1e1le {
		x = d
		p++
	}
	return x, p
}

// pow10u64 holds 10^i for the digit count.
var pow10u64 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
	1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// pairs holds "00" to "99" as little-endian 16-bit words, stored two digits at a time.
var pairs = func() (p [100]uint16) {
	for i := range p {
		p[i] = uint16('0'+i/10) | uint16('0'+i%10)<<8
	}
	return p
}()

// maxFloatLen bounds the text of a float64: "-1.2345678901234567e-308".
const maxFloatLen = 24

// appendDecimal appends q × 10^x (q > 0, at most 17 digits) as strconv's 'g' form
// with the shortest precision lays it out: %e for a decimal exponent below -4 or of 6
// and more, else %f with as many fraction digits as q has below the point. The
// digits are written once, where they end up, or one place to the right of it, and
// the few before the point moved over.
func appendDecimal(dst []byte, q uint64, x int) []byte {
	nd := (bits.Len64(q) * 1233) >> 12
	if q >= pow10u64[nd] {
		nd++
	}
	n0 := len(dst)
	dst = slices.Grow(dst, maxFloatLen)
	t := (*[maxFloatLen]byte)(dst[n0 : n0+maxFloatLen])
	dp := nd + x // digits before the point
	e := dp - 1  // the decimal exponent
	if e < -4 || e >= 6 {
		putDigits(t[1:nd+1], q) // d.ddd: the first digit moved before the point
		t[0] = t[1]
		n := 1
		if nd > 1 {
			t[1] = '.'
			n = nd + 1
		}
		t[n], t[n+1] = 'e', '+'
		if e < 0 {
			t[n+1] = '-'
			e = -e
		}
		switch {
		case e < 10:
			t[n+2], t[n+3] = '0', byte('0'+e)
			n += 4
		case e < 100:
			binary.LittleEndian.PutUint16(t[n+2:], pairs[e])
			n += 4
		default:
			t[n+2] = byte('0' + e/100)
			binary.LittleEndian.PutUint16(t[n+3:], pairs[e%100])
			n += 5
		}
		return dst[:n0+n]
	}
	switch {
	case dp <= 0: // 0.000ddd
		copy(t[:], "0.000")
		putDigits(t[2-dp:2-dp+nd], q)
		return dst[:n0+2-dp+nd]
	case dp < nd: // dd.ddd
		putDigits(t[1:nd+1], q)
		for i := range dp {
			t[i] = t[i+1]
		}
		t[dp] = '.'
		return dst[:n0+nd+1]
	}
	copy(t[nd:], "00000") // ddd000
	putDigits(t[:nd], q)
	return dst[:n0+dp]
}

// putDigits writes q's decimal digits into d, which has their count: eight at a time
// as two independent halves of four, each two pairs.
func putDigits(d []byte, q uint64) {
	i := len(d)
	for q >= 1e8 {
		lo := uint32(q % 1e8)
		q /= 1e8
		h, l := lo/1e4, lo%1e4
		w := uint64(pairs[h/100]) | uint64(pairs[h%100])<<16 | uint64(pairs[l/100])<<32 | uint64(pairs[l%100])<<48
		binary.LittleEndian.PutUint64(d[i-8:i], w)
		i -= 8
	}
	lo := uint32(q)
	for lo >= 100 {
		binary.LittleEndian.PutUint16(d[i-2:i], pairs[lo%100])
		lo /= 100
		i -= 2
	}
	if lo >= 10 {
		binary.LittleEndian.PutUint16(d[i-2:i], pairs[lo])
		return
	}
	d[i-1] = byte('0' + lo)
}
