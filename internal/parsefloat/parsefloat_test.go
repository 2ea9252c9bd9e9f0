package parsefloat

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// exact is the float64 nearest the decimal number s (ties to even), from its exact
// rational value; ok is false where s is not one or its exponent is too large to build.
func exact(s string) (float64, bool) {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		if e, err := strconv.Atoi(s[i+1:]); err != nil || e > 5000 || e < -5000 {
			return 0, false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false
	}
	f, _ := r.Float64()
	if strings.HasPrefix(s, "-") && f == 0 {
		f = math.Copysign(0, -1)
	}
	return f, true
}

// TestLong: numbers of hundreds to thousands of digits, the point anywhere, zeros
// leading, trailing or throughout, read as their exact value rounded once; strconv
// alone misreads some of them.
func TestLong(t *testing.T) {
	fixed := []string{
		"1" + strings.Repeat("0", 850) + "e-850",
		"1000" + strings.Repeat("0", 797) + "e-797",
		"1" + strings.Repeat("0", 800) + "e-800",
		"-1" + strings.Repeat("0", 900) + ".5e-900",
		"0." + strings.Repeat("0", 850) + "1e851",
		"1." + strings.Repeat("0", 850) + "1",
		strings.Repeat("9", 1000),
		strings.Repeat("0", 1000),
		"-" + strings.Repeat("0", 1000) + ".0",
		strings.Repeat("1", 900) + "e-1200",
		"2." + strings.Repeat("0", 850) + "1e-324",
	}
	misread := 0
	for _, s := range fixed {
		want, _ := exact(s)
		got, err := ParseFloat(s, 64)
		if (err != nil) != math.IsInf(want, 0) || math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("%.40s…(%d bytes): %v (error %t), want %v", s, len(s), got, err != nil, want)
		}
		if v, _ := strconv.ParseFloat(s, 64); math.Float64bits(v) != math.Float64bits(want) {
			misread++
		}
	}
	if misread == 0 {
		t.Errorf("strconv reads every fixed case right: the workaround is no longer needed")
	}
	rng := rand.New(rand.NewPCG(8, 800))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
			if rng.IntN(3) == 0 {
				b[i] = '0'
			}
		}
		return string(b)
	}
	for range 3000 {
		s := digits(1 + rng.IntN(1200))
		if rng.IntN(2) == 0 {
			s += "." + digits(rng.IntN(1200))
		}
		if rng.IntN(2) == 0 {
			s += "e" + strconv.Itoa(rng.IntN(2400)-1200)
		}
		if rng.IntN(2) == 0 {
			s = "-" + s
		}
		want, ok := exact(s)
		if !ok {
			continue
		}
		for _, bits := range []int{64, 32} {
			got, err := ParseFloat(s, bits)
			w := want
			if bits == 32 {
				r, _ := new(big.Rat).SetString(s)
				f, _ := r.Float32()
				w = float64(f)
				if strings.HasPrefix(s, "-") && w == 0 {
					w = math.Copysign(0, -1)
				}
			}
			inf := math.IsInf(w, 0)
			if math.Float64bits(got) != math.Float64bits(w) || (err != nil) != inf {
				t.Fatalf("%.60s…(%d bytes), %d bits: %v (error %t), want %v", s, len(s), bits, got, err != nil, w)
			}
		}
	}
}

// TestShortAndOther: what strconv reads as it is (short numbers, its other forms, bad
// text) gives strconv's result and error, naming the text given.
func TestShortAndOther(t *testing.T) {
	long := strings.Repeat("1", 900)
	for _, s := range []string{"1.5", "-0", "1e400", "inf", "NaN", "0x1p-2", "", "abc",
		long + "x", long + "e", long + "e+", "+" + long, long + "e999999999999999999999", "." + long, long + ".", "0x" + long} {
		got, err := ParseFloat(s, 64)
		want, werr := strconv.ParseFloat(s, 64)
		if s == long+"." || s == "+"+long || s == "."+long {
			// Long decimals: the exact value, whatever strconv makes of them.
			want, _ = exact(strings.TrimSuffix(s, "."))
			werr = nil
			if math.IsInf(want, 0) {
				werr = strconv.ErrRange
			}
		}
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) || (err == nil) != (werr == nil) {
			t.Errorf("%.40q: %v (error %t), want %v (error %t)", s, got, err != nil, want, werr != nil)
		}
		if ne, ok := err.(*strconv.NumError); err != nil && (!ok || ne.Num != s) {
			t.Errorf("%.40q: error %v does not name the text", s, err)
		}
	}
}

// FuzzParseFloat: any text reads as strconv reads it, or, where it is a decimal number,
// as its exact value rounded once; digits with the point at p, zeros padded on both
// sides and an exponent make the long numbers strconv misreads.
func FuzzParseFloat(f *testing.F) {
	f.Add("1", 1, 850, -850, false)
	f.Add("5", 0, 900, 3, true)
	f.Add("123456789", 4, 400, -300, false)
	f.Fuzz(func(t *testing.T, digits string, p, pad, exp int, neg bool) {
		if pad < 0 || pad > 3000 || exp < -2000 || exp > 2000 {
			return
		}
		for _, s := range []string{digits, func() string {
			p := min(max(p, 0), len(digits))
			s := strings.Repeat("0", pad) + digits[:p] + "." + digits[p:] + strings.Repeat("0", pad) + "e" + strconv.Itoa(exp)
			if neg {
				s = "-" + s
			}
			return s
		}()} {
			v, err := ParseFloat(s, 64)
			if want, ok := exact(s); ok && strings.Trim(s, "-0123456789.eE+") == "" {
				if math.Float64bits(v) != math.Float64bits(want) || (err != nil) != math.IsInf(want, 0) {
					t.Fatalf("%.60q (%d bytes): %v (error %t), want %v", s, len(s), v, err != nil, want)
				}
			} else if len(s) <= maxDigits {
				w, werr := strconv.ParseFloat(s, 64)
				if math.Float64bits(v) != math.Float64bits(w) && !(math.IsNaN(v) && math.IsNaN(w)) || (err == nil) != (werr == nil) {
					t.Fatalf("%q: %v %v, strconv %v %v", s, v, err, w, werr)
				}
			}
		}
	})
}
