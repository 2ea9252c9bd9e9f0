package jsonnum

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/predictd/predictd/internal/parsefloat"
)

// jsonNumber is RFC 8259's grammar: what Parse must accept, whole.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)

// check compares Parse with parsefloat.ParseFloat (strconv.ParseFloat, long numbers
// read right) on s: the same length accepted (the
// grammar's longest prefix; none when a '.' or exponent without digits follows it), and
// for it the same bits and the same range error.
func check(t testing.TB, s string) {
	t.Helper()
	v, n, ok := Parse([]byte(s))
	tok := jsonNumber.FindString(s)
	if rest := s[len(tok):]; tok != "" && rest != "" {
		// A fraction or exponent without digits makes the number malformed, not shorter.
		if rest[0] == '.' && !strings.ContainsAny(tok, ".eE") || rest[0]|0x20 == 'e' && !strings.ContainsAny(tok, "eE") {
			tok = ""
		}
	}
	if n != len(tok) {
		t.Fatalf("Parse(%q) read %d bytes, the number is %q", s, n, tok)
	}
	if tok == "" {
		if ok {
			t.Fatalf("Parse(%q) = ok, want no number", s)
		}
		return
	}
	want, err := parsefloat.ParseFloat(tok, 64)
	if math.Float64bits(v) != math.Float64bits(want) || ok != (err == nil) {
		t.Fatalf("Parse(%q) = %v (%#x) ok=%v, strconv: %v (%#x) err=%v", s, v, math.Float64bits(v), ok, want,
			math.Float64bits(want), err)
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "1", "-1", "0.5", "1e0", "1E+2", "1e-2", "123456789012345678", "9007199254740993",
		"0.1", "0.2", "0.3", "3.141592653589793", "2.718281828459045", "1.7976931348623157e308",
		"1.7976931348623158e308", "1.7976931348623159e308", "2e308", "-2e308", "1e309", "4.9e-324",
		"5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324", "2.2250738585072011e-308",
		"2.2250738585072012e-308", "2.2250738585072014e-308", "1e-400", "-1e-400", "1e-342", "1e-343",
		"0.000000000000000000000000000000000000000000001", "1e23", "8.98846567431158e307",
		"9007199254740992", "9007199254740993e0", "18446744073709551615", "18446744073709551616",
		"12345678901234567890123", "0.12345678901234567890123", "1.00000000000000000000000001",
		"7.2057594037927933e16", "1e100000000000000000000", "1e-100000000000000000000",
		"0e999999", "-0.0e-5", "100000000000000000000000", "4503599627370496.5", "4503599627370497.5",
		"1.5e-323", "2.5e-323", "123.456e7", "1,", "1]", "1}", "1 ",
		// not numbers, or numbers followed by more than the grammar takes
		"", "-", "+1", ".5", "1.", "1.e5", "1e", "1e+", "01", "00", "-01", "0x10", "Inf", "NaN",
		"1.5.5", "1e5e5", "--1",
	} {
		check(t, s)
	}
	// Over 800 digits before the point, which strconv.ParseFloat alone misreads
	// ("1" and 850 zeros, e-850: 1e-51): the exact value.
	for _, s := range []string{"1" + strings.Repeat("0", 850) + "e-850", "-1000" + strings.Repeat("0", 797) + "e-797,"} {
		check(t, s)
		if v, _, ok := Parse([]byte(s)); !ok || math.Abs(v) != 1000 && math.Abs(v) != 1 {
			t.Errorf("%.20s… (%d bytes): %v", s, len(s), v)
		}
	}
}

var suffixes = []string{",", "]", "}", " ", "\n", ",\"a\":1", ".5", "e5", "-", "/", ":", "\x00", "\xff"}

// TestParseRandom: shortest round-trip forms of random float64 bits (the form encoders
// write), 17-digit forms, and random digit strings with random exponents, all
// subnormal and boundary ranges included; and plain forms followed by what a body has
// after a number.
func TestParseRandom(t *testing.T) {
	n := 300_000
	if testing.Short() {
		n = 30_000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		check(t, strconv.FormatFloat(f, 'g', -1, 64))
		// What follows a number in a body: the 8-digit steps must stop at it.
		check(t, strconv.FormatFloat(f, 'f', -1, 64)+suffixes[rng.IntN(len(suffixes))])
		check(t, strconv.FormatFloat(f, 'e', 16, 64))
		check(t, strconv.FormatFloat(f, 'e', rng.IntN(20), 64))
		var b strings.Builder
		for range 1 + rng.IntN(20) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		digits := strings.TrimLeft(b.String(), "0")
		if digits == "" {
			digits = "0"
		}
		check(t, digits+"e"+strconv.Itoa(rng.IntN(700)-360))
		check(t, "0."+b.String()+"e"+strconv.Itoa(rng.IntN(700)-360))
		// As in a body, with bytes after the number, so the fraction's 8-byte steps
		// read past its end: shortest forms of float64 and float32 values, and fractions
		// with leading zeros and up to 20 digits.
		next := bodyNext[rng.IntN(len(bodyNext))]
		check(t, strconv.FormatFloat(f, 'g', -1, 64)+next)
		check(t, strconv.FormatFloat(float64(float32(rng.NormFloat64())), 'g', -1, 64)+next)
		check(t, strconv.FormatFloat(rng.NormFloat64(), 'f', rng.IntN(22), 64)+next)
		check(t, "-0."+b.String()+next)
		check(t, digits+"."+b.String()+next)
	}
}

// bodyNext is what follows a number in a request body.
var bodyNext = []string{`,"user_ctr_01_7d":0.5`, `},{"id":"c2","features":{"a":1`, `]}`, "   ,\n", `e5,"x":1`, `.5,"x":1`, "\x00\xff1234567"}

// TestShortestFormsStayFast: no shortest round-trip form of a float64 or float32 (the
// text encoders write, at most 17 significant digits, leading zeros of a fraction not
// among them) goes to strconv, in a body or at its end; 20-digit forms do.
func TestShortestFormsStayFast(t *testing.T) {
	calls := 0
	slowParse = func(tok []byte) (float64, int, bool) { calls++; return slow(tok) }
	defer func() { slowParse = slow }()
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100_000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		for _, s := range []string{
			strconv.FormatFloat(f, 'g', -1, 64),
			strconv.FormatFloat(f*1e-4, 'g', -1, 64) + `,"x":1`,
			strconv.FormatFloat(rng.Float64()*1e-3, 'g', -1, 64) + `,"x":1`,
			strconv.FormatFloat(float64(float32(rng.Float64()*1e-5)), 'f', -1, 64) + `,"x":1`,
			strconv.FormatFloat(float64(float32(rng.NormFloat64())), 'f', -1, 32) + "}",
		} {
			check(t, s)
			if calls > 0 {
				t.Fatalf("%q went to strconv", s)
			}
		}
	}
	check(t, "0.00012345678901234567890,")
	if calls != 1 {
		t.Fatalf("a 20-digit fraction: %d calls to strconv, want 1", calls)
	}
}

// FuzzParse: on any input Parse reads what RFC 8259's grammar takes and returns what
// strconv.ParseFloat returns for it, bit for bit, with the same range error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "-1.5e-3", "5e-324", "1.7976931348623157e308", "123456789012345678901",
		"0.1", "1e23", "2.2250738585072011e-308", "9007199254740993", "1e-400", "1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}
