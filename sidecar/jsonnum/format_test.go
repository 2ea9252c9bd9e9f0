package jsonnum

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// checkFormat fails t unless AppendFloat writes what strconv writes for v.
func checkFormat(t testing.TB, v float64) {
	t.Helper()
	want := strconv.AppendFloat([]byte("x"), v, 'g', -1, 64)
	if got := AppendFloat([]byte("x"), v); string(got) != string(want) {
		t.Fatalf("AppendFloat(%#016x) = %q, strconv %q", math.Float64bits(v), got[1:], want[1:])
	}
}

func TestAppendFloat(t *testing.T) {
	special := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 0.5, 1.5, 9, 10, 99, 100,
		1e-5, 1e-4, 9.999999999999999e-5, 0.0001, 0.001, 123456, 999999, 1e6, 999999.5,
		1234567, 1e21, 1e22, 1e23, 5e-324, 1e-323, 2.2250738585072014e-308,
		2.225073858507201e-308, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.Inf(1), math.Inf(-1), math.NaN(), 1 << 53, 1<<53 + 2, 0.3, 2.0 / 3,
		0.07345212345678901, 37.45, -0.376382291, 1e100, 1e-100, 1e300, 1e-300}
	for _, v := range special {
		checkFormat(t, v)
	}
	// Every power of two (Dragonbox's asymmetric interval), its neighbours, and each
	// power of ten near the %e/%f boundaries and the table's ends.
	for e := -1074; e <= 1023; e++ {
		v := math.Ldexp(1, e)
		checkFormat(t, v)
		checkFormat(t, math.Nextafter(v, 0))
		checkFormat(t, math.Nextafter(v, math.Inf(1)))
	}
	for k := -324; k <= 308; k++ {
		v, _ := strconv.ParseFloat("1e"+strconv.Itoa(k), 64)
		for _, w := range []float64{v, math.Nextafter(v, 0), math.Nextafter(v, math.Inf(1)), 3 * v, 7.5 * v} {
			if !math.IsInf(w, 0) {
				checkFormat(t, w)
			}
		}
	}
	// Subnormals one by one at the bottom, then every exponent through random mantissas
	// and random bit patterns.
	for m := uint64(1); m < 5000; m++ {
		checkFormat(t, math.Float64frombits(m))
	}
	r := rand.New(rand.NewPCG(7, 11))
	for e := uint64(0); e < 0x7ff; e++ {
		for range 100 {
			checkFormat(t, math.Float64frombits(e<<52|r.Uint64()>>12|r.Uint64()&(1<<63)))
		}
	}
	n := 1_000_000
	if testing.Short() {
		n = 200_000
	}
	for range n {
		checkFormat(t, math.Float64frombits(r.Uint64()))
	}
	// Values as a model answers: probabilities and scores of few and many digits.
	for range n / 4 {
		p := r.Float64()
		checkFormat(t, p)
		checkFormat(t, float64(float32(p)))
		checkFormat(t, math.Round(p*1e4)/1e4)
		checkFormat(t, (p-0.5)*math.Pow(10, float64(r.IntN(14)-7)))
	}
}

// TestBoxPowers: boxPow's φ for every k Dragonbox asks of float64s equals the value it
// is defined as, 10^k normalised to 128 bits and truncated, plus one unless exact (Go's
// internal/strconv computes it so from its own table), computed here with math/big.
func TestBoxPowers(t *testing.T) {
	one := big.NewInt(1)
	lim := new(big.Int).Lsh(one, 128)
	mask := new(big.Int).Sub(new(big.Int).Lsh(one, 64), one)
	kmin := 2 - ((1023 - 52) * 78913 >> 18) // the largest float64's
	kmax := 2 - ((-1074 * 78913) >> 18)     // the smallest subnormal's
	for k := kmin - 2; k <= kmax; k++ {
		// 10^k × 2^s in [2^127, 2^128), truncated; exact when 10^k × 2^s is an integer.
		num, den := big.NewInt(1), big.NewInt(1)
		if k >= 0 {
			num.Exp(big.NewInt(10), big.NewInt(int64(k)), nil)
		} else {
			den.Exp(big.NewInt(10), big.NewInt(int64(-k)), nil)
		}
		for new(big.Int).Quo(num, den).Cmp(new(big.Int).Rsh(lim, 1)) < 0 {
			num.Lsh(num, 1)
		}
		for new(big.Int).Quo(num, den).Cmp(lim) >= 0 {
			den.Lsh(den, 1)
		}
		want, rem := new(big.Int).QuoRem(num, den, new(big.Int))
		inexact := rem.Sign() != 0
		if inexact {
			want.Add(want, one)
		}
		hi, lo := new(big.Int).Rsh(want, 64).Uint64(), new(big.Int).And(want, mask).Uint64()
		if inexact && lo == 0 { // boxPow's φ.lo++, as Go's, does not carry
			t.Fatalf("k=%d: the rounded-up power carries into the high word", k)
		}
		φ, _ := boxPow(k, 0)
		if φ.hi != hi || φ.lo != lo {
			t.Fatalf("k=%d: boxPow %#x %#x, want %#x %#x", k, φ.hi, φ.lo, hi, lo)
		}
	}
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, 0.1, 5e-324, math.MaxFloat64, 1e6, 1e-5, 123.456} {
		f.Add(math.Float64bits(v))
	}
	f.Fuzz(func(t *testing.T, b uint64) {
		checkFormat(t, math.Float64frombits(b))
	})
}
