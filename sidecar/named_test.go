package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/api/wire"
	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// plainLimits are fuzzLimits on the generic paths only (decodeLimits.plain).
var plainLimits = func() decodeLimits { l := fuzzLimits; l.plain = true; return l }()

// sameDecoded fails unless a and b hold the same request: every element, name bytes and
// value bits alike.
func sameDecoded(t *testing.T, a, b *request) { t.Helper(); sameDecodedBut(t, a, b, true) }

// sameDecodedBut is sameDecoded, comparing the candidates' features only when feats is
// set (the direct path writes them into the matrix instead).
func sameDecodedBut(t *testing.T, a, b *request, feats bool) {
	t.Helper()
	featList := func(r *request, fs []feature) string {
		var s strings.Builder
		for _, f := range fs {
			fmt.Fprintf(&s, "%q=%#x ", r.bytes(f.name), math.Float64bits(f.value))
		}
		return s.String()
	}
	keys := func(r *request, ks []key) string {
		var s strings.Builder
		for _, k := range ks {
			fmt.Fprintf(&s, "%q=%q ", r.bytes(k.name), r.bytes(k.value))
		}
		return s.String()
	}
	rows := func(r *request) string {
		var s strings.Builder
		for _, v := range r.rows {
			fmt.Fprintf(&s, "%#x ", math.Float64bits(v))
		}
		return fmt.Sprintf("%d×%d %s", r.nrows, r.width, s.String())
	}
	cands := func(r *request) string {
		var s strings.Builder
		for i, c := range r.cands {
			fs := ""
			if feats {
				fs = featList(r, r.feats[c.f0:c.f1])
			}
			fmt.Fprintf(&s, "%q[%s|%s] ", r.id(i), fs, keys(r, r.candKeys[c.k0:c.k1]))
		}
		return s.String()
	}
	vecs := func(r *request) string {
		var s strings.Builder
		for _, v := range r.vecs {
			fmt.Fprintf(&s, "%d:%q=[", v.row, r.bytes(v.name))
			for _, x := range r.vecVals[v.v0:v.v1] {
				fmt.Fprintf(&s, "%#x ", math.Float64bits(x))
			}
			s.WriteString("] ")
		}
		return s.String()
	}
	for _, c := range []struct{ what, a, b string }{
		{"model", string(a.model), string(b.model)},
		{"version", string(a.version), string(b.version)},
		{"output", fmt.Sprint(a.output), fmt.Sprint(b.output)},
		{"context", featList(a, a.context), featList(b, b.context)},
		{"keys", keys(a, a.ctxKeys), keys(b, b.ctxKeys)},
		{"candidates", cands(a), cands(b)},
		{"rows", rows(a), rows(b)},
		{"vectors", vecs(a), vecs(b)},
	} {
		if c.a != c.b {
			t.Fatalf("%s: fast paths %s, generic paths %s", c.what, c.a, c.b)
		}
	}
}

// decodeBoth decodes data with the fast and the generic paths (each on its own copy,
// as the JSON decoder unescapes in place) and fails unless both give the same request
// or the same error. It returns the fast one (nil after an error).
func decodeBoth(t *testing.T, data []byte, decode func(*request, []byte, decodeLimits) error) *request {
	t.Helper()
	// Tight limits: the fast paths count cells their own way, and must fail where the
	// generic paths fail, with the same error.
	for _, lim := range []decodeLimits{{rows: 3, cells: 7, presizeAt: math.MaxInt}, {rows: 2, cells: 4, presizeAt: 1}} {
		f, p := getRequest(), getRequest()
		ferr := decode(f, append([]byte(nil), data...), lim)
		lim.plain = true
		perr := decode(p, append([]byte(nil), data...), lim)
		if fmt.Sprint(ferr) != fmt.Sprint(perr) {
			t.Fatalf("limits %+v: fast paths: %v; generic paths: %v; body %q", lim, ferr, perr, data)
		}
		putRequest(f)
		putRequest(p)
	}
	fast, plain := getRequest(), getRequest()
	t.Cleanup(func() { putRequest(plain) })
	ferr := decode(fast, append([]byte(nil), data...), fuzzLimits)
	perr := decode(plain, append([]byte(nil), data...), plainLimits)
	if fmt.Sprint(ferr) != fmt.Sprint(perr) {
		t.Fatalf("fast paths: %v; generic paths: %v; body %q", ferr, perr, data)
	}
	if ferr != nil {
		putRequest(fast)
		return nil
	}
	sameDecoded(t, fast, plain)
	t.Cleanup(func() { putRequest(fast) })
	return fast
}

// claimsVersion loads the demo model in a registry and returns its version.
func claimsVersion(t testing.TB) *version {
	t.Helper()
	return servedVersion(t, Config{ModelFS: examples.Models()}, "claims")
}

// servedVersion loads cfg's repository in a server and returns model's serving version,
// released and the server closed when the test ends.
func servedVersion(t testing.TB, cfg Config, model string) *version {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Reload()
	v, err := s.reg.acquire([]byte(model), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.release)
	return v
}

// sameAssembled writes r's features for v through the learned layout and through a
// map lookup per name, and fails unless both give the same matrix (bit for bit) or the
// same error.
func sameAssembled(t *testing.T, r *request, v *version) {
	t.Helper()
	if r.dense || len(r.cands)*v.nfeat > 1<<20 {
		return
	}
	none := func(int) error { return nil }
	var ms [2][]float64
	var errs [2]error
	for i, plain := range []bool{false, true} {
		m64, err := r.matrix(v, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		errs[i] = r.writeFeatures(v, m64, plain, none)
		ms[i] = slices.Clone(m64)
	}
	if fmt.Sprint(errs[0]) != fmt.Sprint(errs[1]) {
		t.Fatalf("learned layout: %v; map: %v", errs[0], errs[1])
	}
	if errs[0] != nil {
		return
	}
	for i := range ms[0] {
		if math.Float64bits(ms[0][i]) != math.Float64bits(ms[1][i]) {
			t.Fatalf("row %d column %d: learned layout %v, map %v", i/v.nfeat, i%v.nfeat, ms[0][i], ms[1][i])
		}
	}
}

// namedSeeds are candidates in the shapes the learned layout meets: one order for all,
// features left out, other orders, repeated names, unknown names late, escaped names.
var namedSeeds = []string{
	// Python's json.dumps: ", " and ": ", learned with the names; a member written
	// otherwise than the first candidate wrote it.
	`{"model": "claims", "candidates": [{"features": {"VehBrand": 1, "Area": 2.5, "Density": 3}}, {"features": {"VehBrand": 37.45, "Area": -0.5, "Density": null}}, {"features": {"VehBrand":7, "Area" : 1.5,"Density": 2}}]}`,
	// Short numbers read from one word, a 7-digit integer, then one too long for it (the
	// runs after it read any length); a '.' without digits after a short run.
	`{"model":"claims","candidates":[{"features":{"VehBrand":1,"Area":2,"Density":3}},{"features":{"VehBrand":37.45,"Area":-0.5,"Density":1234567}},{"features":{"VehBrand":1.234567,"Area":99.99,"Density":7}},{"features":{"VehBrand":0.5,"Area":1,"Density":2}},{"features":{"VehBrand":3,"Area":4,"Density":5}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":1,"Area":2,"Density":3}},{"features":{"VehBrand":37.45,"Area":-0.5,"Density":12}},{"features":{"VehBrand":37.,"Area":1,"Density":2}},{"features":{"VehBrand":3,"Area":4,"Density":5}}]}`,
	`{"model":"claims","candidates":[{"id":"a","features":{"VehBrand":6,"VehPower":3.5,"Area":null}},{"features":{"VehBrand":1,"VehPower":2e-3,"Area":4}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":6,"VehPower":3,"Area":1}},{"features":{"VehBrand":1,"Area":4}},{"features":{"Area":4,"VehBrand":2,"VehPower":7}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":6,"VehBrand":3}},{"features":{"VehBrand":1,"VehBrand":5e-324,"Density":1.7976931348623157e308}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":6}},{"features":{"VehBrand":1,"Nope":2}}]}`,
	`{"model":"claims","candidates":[{"features":{"Veh\u0042rand":6,"Region":0.1}},{"features":{"VehBrand":1,"Region":123456789012345678901234}}]}`,
	`{"model":"claims","context":{"Area":2},"candidates":[{},{"features":{"Area":1}},{"features":{"DrivAge":-0,"Area":1e400}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":1.}}]}`,
	`{"model":"claims","candidates":[{"features":{"VehBrand":-}}]}`,
	`{"model":"claims","rows":[[1,2.5,-3e-7,null]]}`,
	// Vectors sent whole, among scalars, in the context and in candidates.
	`{"model":"claims","context":{"Area":[1,2],"Region":3},"candidates":[{"features":{"VehBrand":6,"emb":[1,null,-2.5e3],"Area":1}},{"features":{"VehBrand":1,"emb":[0,0,0]}}]}`,
	`{"model":"claims","candidates":[{"features":{"emb":[ 1 , 2 ]}},{"features":{"VehBrand":[],"Area":4}}]}`,
	`{"model":"claims","candidates":[{"features":{"emb":[[1]]}}]}`,
	`{"model":"claims","candidates":[{"features":{"emb":["a"]}}]}`,
	`{"model":"claims","candidates":[{"features":{"emb":[1,]}}]}`,
	`{"model":"claims","context":{"emb":[1e400]}}`,
	// Missing values where the first candidate sent numbers, and the other way round.
	`{"model":"claims","candidates":[{"features":{"VehBrand":6,"Area":1,"Region":null}},{"features":{"VehBrand":null,"Area":null,"Region":2}},{"features":{"Area":2,"VehBrand":null}}]}`,
	// The direct path's hand-overs to the generic path: context after candidates, another
	// model or a version after them, an error after escapes unescaped in place.
	`{"model":"claims","candidates":[{"features":{"Area":1,"VehBrand":2}}],"context":{"Area":3}}`,
	`{"model":"claims","candidates":[{"id":"a\"b","features":{"Are\u0061":1}}],"model":"claims2"}`,
	`{"model":"claims","candidates":[{"id":"x\ny","features":{"Area":1}},{"features":{"Area":"\t"}}]}`,
	`{"model":"claims","version":"1","candidates":[{"features":{"Area":1}}],"version":"2"}`,
	`{"model":"claims","context":{"Region":4},"candidates":[{"features":{"Region":1,"Area":2,"Nope":3}},{"features":{"Area":2,"Region":null}},{"features":{"Nope":1}}]}`,
	`{"model":"claims","candidates":[{"features":{"Area":1},"features":{"Area":2,"Region":3}},{"features":{"Region":5,"Area":6}}]}`,
	// Candidates opened as encoders write them (candidatePrefix), then what may follow.
	`{"model":"claims","candidates":[{"id":"c1","features":{"Area":1,"Region":2}},{"id":"c2","features":{"Area":3,"Region":4},"keys":{"k":"v"}},{"id":"","features":{"Area":5},"id":"c3"}]}`,
	`{"model":"claims","candidates":[{"id":"c1","features":{"Area":1}} ,{"id":"c\u00e9","features":{"Area":2}},{"id":"é","features":{"Area":3}},{"id":7,"features":{"Area":4}}]}`,
}

// TestCandidatePrefix: candidates whose opening the direct path reads without the
// object loop (`{"id":"…","features":`), and every near miss of it, decode as on the
// generic path: the same ids, matrix and errors.
func TestCandidatePrefix(t *testing.T) {
	v := claimsVersion(t)
	for _, c := range []string{
		`{"id":"c1","features":{"Area":1,"Region":2}}`,
		`{"id":"","features":{"Area":1}}`,
		`{"id":"` + strings.Repeat("x", 300) + `","features":{"Area":1}}`,
		`{"id":"c1","features":{}}`,
		`{"id":"c1","features":{"Area":1},"keys":{"k":"v"}}`,
		`{"id":"c1","features":{"Area":1} , "keys" : {"k":"v"} }`,
		`{"id":"c1","features":{"Area":1},"id":"c2"}`,
		`{"id":"c1","features":{"Area":1},"features":{"Region":3}}`,
		`{"id":"c1","features":{"Area":1},"nope":1}`,
		`{"id":"c1","features":{"Area":1},}`,
		`{"id":"c1","features":{"Area":1}`,
		`{"id":"c1","features":[1]}`,
		`{"id":"c1","features":null}`,
		`{"id":"c1","features":`,
		`{"id":"c1","features"`,
		`{"id":"c1","feature":{"Area":1}}`,
		`{"id":"c1", "features":{"Area":1}}`,
		`{"id": "c1","features":{"Area":1}}`,
		` {"id":"c1","features":{"Area":1}}`,
		`{"id":"c\"1","features":{"Area":1}}`,
		`{"id":"c\u00e91","features":{"Area":1}}`,
		"{\"id\":\"c\x01\",\"features\":{\"Area\":1}}",
		"{\"id\":\"c\x7f\",\"features\":{\"Area\":1}}",
		"{\"id\":\"é\",\"features\":{\"Area\":1}}",
		"{\"id\":\"\xff\",\"features\":{\"Area\":1}}",
		`{"id":12,"features":{"Area":1}}`,
		`{"id":"c1"}`,
		`{"id":"c1","keys":{"k":"v"},"features":{"Area":1}}`,
		`{"features":{"Area":1},"id":"c1"}`,
	} {
		for _, body := range []string{
			`{"model":"claims","candidates":[` + c + `]}`,
			`{"model":"claims","candidates":[{"id":"a","features":{"Area":1,"Region":2}},` + c + `,{"id":"b","features":{"Area":3,"Region":4}}]}`,
			`{"model":"claims","candidates":[` + c, // the body ends inside
		} {
			sameDirect(t, []byte(body), decodeJSON, v)
		}
	}
}

// FuzzNamedFastPathsJSON: the JSON decoder's fast paths (jsonnum numbers, the
// inlined features loop, ASCII strings) decode any body to exactly what the generic
// paths (strconv, the object callback) decode, or fail with the same error; the
// learned layout assembles the same matrix as a map lookup per name, or fails the same;
// and the direct path (candidates decoded into the matrix) gives the same matrix, bit
// for bit, and the same request otherwise, or the same error.
func FuzzNamedFastPathsJSON(f *testing.F) {
	for _, s := range namedSeeds {
		f.Add([]byte(s))
	}
	v := claimsVersion(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if r := decodeBoth(t, data, decodeJSON); r != nil {
			sameAssembled(t, r, v)
		}
		sameDirect(t, data, decodeJSON, v)
	})
}

// namedClaims is a compact claims request of n candidates, candidate c's features the
// members members(c) (each its text, `"name":value`).
func namedClaims(n int, members func(c int) []string) []byte {
	cands := make([]string, n)
	for c := range cands {
		cands[c] = `{"features":{` + strings.Join(members(c), ",") + `}}`
	}
	return []byte(`{"model":"claims","candidates":[` + strings.Join(cands, ",") + `]}`)
}

// threeCandidates is a claims request of three candidates, each with one features member
// per name, member(candidate, place, name) its text.
func threeCandidates(names []string, member func(c, j int, name string) string) []byte {
	return namedClaims(3, func(c int) []string {
		ms := make([]string, len(names))
		for j, name := range names {
			ms[j] = member(c, j, name)
		}
		return ms
	})
}

// pythonSeparators is a compact JSON body (no strings holding ',' or ':') as Python's
// json.dumps writes it by default: ", " between members and elements, ": " after names.
func pythonSeparators(body []byte) []byte {
	return []byte(strings.NewReplacer(",", ", ", ":", ": ").Replace(string(body)))
}

// randomDigits is n random ASCII digits.
func randomDigits(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	return string(b)
}

// TestLayoutRunNumbers: values of every shape around the limits of layoutRun's own
// number reading (15 digits, a leading zero, a fraction without digits, an exponent
// after a fraction, a sign alone, what follows the number) decode on the direct path,
// in candidates that follow the learned layout, as on the generic path: the same matrix
// bit for bit, or the same error.
func TestLayoutRunNumbers(t *testing.T) {
	v := claimsVersion(t)
	rng := rand.New(rand.NewPCG(17, 71))
	digits := func(n int) string { return randomDigits(rng, n) }
	number := func() string {
		var s string
		if rng.IntN(3) == 0 {
			s = "-"
		}
		switch rng.IntN(8) {
		case 0:
			s += "0"
		case 1:
			s += "0" + digits(rng.IntN(3)) // a leading zero: invalid past one digit
		default:
			s += string(rune('1'+rng.IntN(9))) + digits(rng.IntN(21)) // up to 21 digits
		}
		if rng.IntN(4) != 0 {
			s += "." + digits(rng.IntN(19))
		}
		if rng.IntN(6) == 0 {
			s += []string{"e", "E", "e-", "e+"}[rng.IntN(4)] + digits(rng.IntN(4))
		}
		return s
	}
	after := []string{",", ",", ",", " ,", "}", " }", "x", ".5,", "e,"}
	names := []string{"VehBrand", "Area", "Density", "DrivAge"}
	for range 10000 {
		body := threeCandidates(names, func(c, j int, name string) string {
			m := fmt.Sprintf("%q:%s", name, number())
			if c == 2 && j == 1 {
				m += after[rng.IntN(len(after))] + `"Region":1` // a run ended oddly
			}
			return m
		})
		sameDirect(t, body, decodeJSON, v)
	}
	// Fixed values at the limits, in the third candidate's run, and a body that ends in
	// the number (cut short).
	for _, x := range []string{"-", "-0", "-0.0", "0", "0.", "1.e5", "00", "1234567890123456789",
		"12345678901234567890", "9223372036854775807", "9223372036854775808", "18446744073709551615",
		"18446744073709551616", "123456789012345.6", "1234567890123456.7", "0.1234567890123456789",
		"0.12345678901234567890", "9007199254740993", "-9007199254740993.0", "1e5", "1.5E-3", "null", "nul", `"a"`} {
		body := `{"model":"claims","candidates":[{"features":{"VehBrand":1,"Area":2}},` +
			`{"features":{"VehBrand":3,"Area":4}},{"features":{"VehBrand":5,"Area":` + x
		sameDirect(t, []byte(body+"}}]}"), decodeJSON, v)
		sameDirect(t, []byte(body), decodeJSON, v)
	}
}

// TestPythonSeparators: a body as Python's json.dumps writes it by default (", " and
// ": ") is read by the runs as a compact one is: the places learn the ": " with each
// name, wordRun goes on past ", ", and the matrix is the generic path's, bit for bit.
func TestPythonSeparators(t *testing.T) {
	v := claimsVersion(t)
	names := v.pred.FeatureNames()
	rng := rand.New(rand.NewPCG(3, 4))
	body := pythonSeparators(namedClaims(4, func(int) []string {
		var members []string
		for _, name := range names {
			members = append(members, fmt.Sprintf("%q:%.2f", name, rng.Float64()*100))
		}
		return members
	}))
	sameDirect(t, body, decodeJSON, v)

	r := getRequest()
	defer putRequest(r)
	r.beginDirect(v, []byte(v.model), nil, fuzzLimits.cells)
	r.body = append([]byte(nil), body...)
	if err := decodeJSONBody(r, r.body, fuzzLimits); err != nil {
		t.Fatalf("the direct path stopped (%v) on %s", err, body)
	}
	d := &r.dir
	for k, name := range names {
		if got, want := string(d.pre[d.places[k].pre:][:d.places[k].npre]), `"`+name+`": `; got != want {
			t.Fatalf("place %d learned %q, want %q", k, got, want)
		}
	}
	// The second candidate's members, all but the last (before '}'), in one run.
	at := strings.Index(string(body), `{"features": {`) + 1
	at += strings.Index(string(body[at:]), `{"features": {`) + len(`{"features": {`)
	row := make([]float64, len(names))
	if i, k := wordRun(body, at, d.places, d.pre, row, 0); k != len(names)-1 || body[i] != '"' {
		t.Fatalf("wordRun read %d members of %d, stopping at %q", k, len(names), body[i:min(len(body), i+20)])
	}
}

// TestLayoutRunShortNumbers: numbers that fit in 8 bytes with the byte after them
// (layoutRun reads them from one word) and their near misses — a number that reaches
// the word's end, a leading zero, a fraction without digits, an exponent, a sign alone —
// in the candidates after the first (which teaches the layout): the direct path gives
// the generic path's matrix bit for bit, or its error, and reads every valid body to its
// end itself (no decode again on the generic path).
func TestLayoutRunShortNumbers(t *testing.T) {
	v := claimsVersion(t)
	rng := rand.New(rand.NewPCG(23, 32))
	digits := func(n int) string { return randomDigits(rng, n) }
	names := []string{"VehBrand", "Area", "Density", "DrivAge"}
	check := func(numbers []string, valid bool) {
		t.Helper()
		k, long := 0, false
		body := threeCandidates(names, func(c, j int, name string) string {
			// The first candidate's values are read on the generic path, to learn the
			// layout, and the last candidate's last one too (its member lacks the 8
			// bytes after it): the values under test are in the middle.
			x := "1"
			if c == 1 || c == 2 && j < len(names)-1 {
				x = numbers[k%len(numbers)]
				k++
				// Too long for one word: its digits and '.' fill 8 bytes.
				mant, _, _ := strings.Cut(strings.TrimPrefix(x, "-"), "e")
				mant, _, _ = strings.Cut(mant, "E")
				long = long || len(mant) >= 8
			}
			return fmt.Sprintf("%q:%s", name, x)
		})
		sameDirect(t, body, decodeJSON, v)
		if valid {
			r := getRequest()
			defer putRequest(r)
			r.beginDirect(v, []byte(v.model), nil, fuzzLimits.cells)
			r.body = append([]byte(nil), body...)
			if err := decodeJSONBody(r, r.body, fuzzLimits); err != nil {
				t.Fatalf("the direct path stopped (%v) on %s", err, body)
			}
			// The runs after a long number read numbers of any length.
			if r.dir.longNumbers != long {
				t.Fatalf("longNumbers %v after %s", r.dir.longNumbers, body)
			}
		}
	}
	for range 20000 {
		// Valid: a sign or none, 1 to 8 integer digits, a fraction of 1 to 7 digits
		// or none, now and then an exponent: within the word, at its end and past it.
		var s string
		if rng.IntN(3) == 0 {
			s = "-"
		}
		if n := rng.IntN(9); n == 0 {
			s += "0"
		} else {
			s += string(rune('1'+rng.IntN(9))) + digits(rng.IntN(n))
		}
		if rng.IntN(5) != 0 {
			s += "." + digits(1+rng.IntN(7))
		}
		if rng.IntN(8) == 0 {
			s += []string{"e", "E", "e-", "e+"}[rng.IntN(4)] + digits(1+rng.IntN(2))
		}
		check([]string{s, "37.45", s, "0.5"}, true)
	}
	for _, x := range []string{"37.45", "0.5", "0", "-0", "-0.0", "100", "7", "1234567", "12345678", "1.23456",
		"1.234567", "123456.7", "1234567.8", "0.000001", "-1.5", "99.99", "1.5e3", "1e5", "12E-2", "9.9e+1",
		"null", "-0.38", "-9.5", "-123456", " 1", "1 ", "12 ", "0.5\n"} {
		check([]string{x}, true)
	}
	// Invalid, or not a number: the same error as the generic path. Each is sent at
	// every member, and at the first alone (a candidate's last member, before '}', is
	// read apart from the others).
	for _, x := range []string{"37.", "37.e5", "05", "-05.5", "00", "-", "-.5", ".5", "1.5e", "1e", "37.45.", "nul",
		`"a"`, "1.5x", "1x", "+1", "0x10", "1.2.3", "--1", "1-2", "-0-", "null1", "nullx", "1..2", "0.-5", "-00",
		"1.5.", "\"1\"", "tru", "9a0"} {
		check([]string{x}, false)
		check([]string{x, "1", "1", "1"}, false)
	}
}

// FuzzNamedFastPathsProto: the same for the protobuf decoder's fast paths (features
// read in place, their names checked 8 bytes at a time).
func FuzzNamedFastPathsProto(f *testing.F) {
	for _, s := range namedSeeds {
		var req predictpb.PredictRequest
		if err := jsonToProto([]byte(s), &req); err == nil {
			f.Add(mustMarshal(f, &req))
		}
	}
	v := claimsVersion(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if r := decodeBoth(t, data, decodeProto); r != nil {
			sameAssembled(t, r, v)
		}
		sameDirect(t, data, decodeProto, v)
	})
}

// assembled decodes data into r and assembles its matrix for v as a request is served
// (matrix, then apply; no feature store), within lim. direct: on the direct path, as
// for a body that names v's model first; else on the generic paths (lim.plain).
func assembled(r *request, data []byte, decode func(*request, []byte, decodeLimits) error, v *version,
	lim decodeLimits, direct bool) ([]float64, error) {
	if direct {
		r.beginDirect(v, []byte(v.model), nil, lim.cells)
	} else {
		lim.plain = true
	}
	if err := decode(r, data, lim); err != nil {
		return nil, err
	}
	m64, err := r.matrix(v, lim.cells)
	if err != nil {
		return nil, err
	}
	return m64, r.apply(v, m64, time.Time{})
}

// sameDirect fails unless data, decoded on the direct path for v and assembled, gives
// the matrix the generic paths give (bit for bit) and the same request otherwise, or
// the same error, at tight limits too.
func sameDirect(t *testing.T, data []byte, decode func(*request, []byte, decodeLimits) error, v *version) {
	t.Helper()
	for _, lim := range []decodeLimits{fuzzLimits, {rows: 3, cells: 30, presizeAt: math.MaxInt}, {rows: 2, cells: 12, presizeAt: 1}} {
		d, g := getRequest(), getRequest()
		dm, derr := assembled(d, append([]byte(nil), data...), decode, v, lim, true)
		gm, gerr := assembled(g, append([]byte(nil), data...), decode, v, lim, false)
		if fmt.Sprint(derr) != fmt.Sprint(gerr) {
			t.Fatalf("limits %+v: direct path: %v; generic paths: %v; body %q", lim, derr, gerr, data)
		}
		if derr == nil {
			if len(dm) != len(gm) {
				t.Fatalf("limits %+v: direct path: %d values; generic paths: %d; body %q", lim, len(dm), len(gm), data)
			}
			for i := range dm {
				if math.Float64bits(dm[i]) != math.Float64bits(gm[i]) {
					t.Fatalf("limits %+v: row %d column %d: direct path %v, generic paths %v; body %q", lim, i/v.nfeat, i%v.nfeat, dm[i], gm[i], data)
				}
			}
			sameDecodedBut(t, d, g, false)
		}
		putRequest(d)
		putRequest(g)
	}
}

// jsonToProto converts a request decoded from JSON to its protobuf form, for seeds.
func jsonToProto(js []byte, out *predictpb.PredictRequest) error {
	r := getRequest()
	defer putRequest(r)
	if err := decodeJSON(r, append([]byte(nil), js...), fuzzLimits); err != nil {
		return err
	}
	feat := func(f feature) *predictpb.Feature {
		p := &predictpb.Feature{Name: string(r.bytes(f.name))}
		if !math.IsNaN(f.value) {
			p.Value = proto.Float64(f.value)
		}
		return p
	}
	out.Model = string(r.model)
	vec := func(row int32) (fs []*predictpb.Feature) {
		for _, v := range r.vecs {
			if v.row == row {
				fs = append(fs, &predictpb.Feature{Name: string(r.bytes(v.name)), Values: r.vecVals[v.v0:v.v1]})
			}
		}
		return fs
	}
	for _, f := range r.context {
		out.Context = append(out.Context, feat(f))
	}
	out.Context = append(out.Context, vec(-1)...)
	for i, c := range r.cands {
		pc := &predictpb.Candidate{Id: string(r.id(i))}
		for _, f := range r.feats[c.f0:c.f1] {
			pc.Features = append(pc.Features, feat(f))
		}
		pc.Features = append(pc.Features, vec(int32(i))...)
		out.Candidates = append(out.Candidates, pc)
	}
	if r.dense {
		for i := range r.nrows {
			out.Rows = append(out.Rows, &predictpb.Row{Values: r.rows[i*r.width : (i+1)*r.width]})
		}
	}
	return nil
}

// TestNamedFastPaths runs the fuzz seeds, and bodies in every shape the learned layout
// handles, through both paths.
func TestNamedFastPaths(t *testing.T) {
	v := claimsVersion(t)
	names := slices.Clone(v.names)
	var bodies []string
	bodies = append(bodies, namedSeeds...)
	// Candidates that each send a rotated, then reversed, then thinned order of the names.
	for shape := range 4 {
		bodies = append(bodies, string(namedClaims(6, func(i int) []string {
			ns := slices.Clone(names)
			switch shape {
			case 1:
				ns = append(ns[i%len(ns):], ns[:i%len(ns)]...)
			case 2:
				if i%2 == 1 {
					slices.Reverse(ns)
				}
			case 3:
				ns = slices.DeleteFunc(ns, func(n string) bool { return (len(n)+i)%3 == 0 })
			}
			members := make([]string, len(ns))
			for j, n := range ns {
				members[j] = fmt.Sprintf("%q:%d.%d", n, i, j)
			}
			return members
		})))
	}
	for _, s := range bodies {
		if r := decodeBoth(t, []byte(s), decodeJSON); r != nil {
			sameAssembled(t, r, v)
		}
		sameDirect(t, []byte(s), decodeJSON, v)
		var req predictpb.PredictRequest
		if err := jsonToProto([]byte(s), &req); err == nil {
			pb := mustMarshal(t, &req)
			if r := decodeBoth(t, pb, decodeProto); r != nil {
				sameAssembled(t, r, v)
			}
			sameDirect(t, pb, decodeProto, v)
		}
	}
}

// TestNamedDirect: the direct path keeps a body that names its model first, writing no
// candidate feature to a list unless the context sets its column, and hands the others
// to the generic path: context after candidates, another model or version after them,
// a decoding error (after strings unescaped in place, which are restored).
func TestNamedDirect(t *testing.T) {
	v := claimsVersion(t)
	// both: protobuf too (jsonToProto keeps the model, context and candidates, in
	// field order).
	f := func(body string, ver string, keep bool, lists int, both bool) {
		t.Helper()
		for _, proto := range []bool{false, true} {
			data, decode := []byte(body), decodeJSON
			if proto && !both {
				continue
			}
			if proto {
				var req predictpb.PredictRequest
				if err := jsonToProto(data, &req); err != nil {
					continue
				}
				data, decode = mustMarshal(t, &req), decodeProto
			}
			r := getRequest()
			var vb []byte
			if ver != "" {
				vb = []byte(ver)
			}
			r.beginDirect(v, []byte("claims"), vb, 1<<30)
			err := decode(r, data, fuzzLimits)
			if keep != r.dir.on() || keep && len(r.feats) != lists || !keep && err == nil && len(r.feats) == 0 {
				t.Errorf("%s (protobuf %v): error %v, direct path kept %v with %d features listed; want kept %v with %d",
					body, proto, err, r.dir.on(), len(r.feats), keep, lists)
			}
			putRequest(r)
		}
	}
	f(`{"model":"claims","candidates":[{"features":{"Area":1,"Region":2}},{"features":{"Region":3,"Area":4}}]}`, "", true, 0, true)
	f(`{"model":"claims","version":"1","candidates":[{"features":{"Area":1}}]}`, "1", true, 0, false)
	f(`{"model":"claims","context":{"Area":1},"candidates":[{"features":{"Area":1,"Region":2}},{"features":{"Area":4}}]}`, "", true, 2, true)
	f(`{"model":"claims","candidates":[{"features":{"Area":1}}],"context":{"Area":1}}`, "", false, 0, false)
	f(`{"model":"claims","candidates":[{"features":{"Area":1}}],"model":"other"}`, "", false, 0, false)
	f(`{"model":"claims","candidates":[{"features":{"Area":1}}],"version":"1"}`, "", false, 0, false)
	f(`{"model":"claims","candidates":[{"id":"\u0041","features":{"Are\u0061":1}}],"version":"1"}`, "", false, 0, false)
	// A decoding error after an escape: the generic path's error, on the restored body.
	body := []byte(`{"model":"claims","candidates":[{"id":"a\u0041","features":{"Are\u0061":1}},{"features":{"Area":x}}]}`)
	r, g := getRequest(), getRequest()
	defer putRequest(r)
	defer putRequest(g)
	r.beginDirect(v, []byte("claims"), nil, 1<<30)
	derr := decodeJSON(r, append([]byte(nil), body...), fuzzLimits)
	gerr := decodeJSON(g, append([]byte(nil), body...), fuzzLimits)
	if derr == nil || fmt.Sprint(derr) != fmt.Sprint(gerr) {
		t.Errorf("direct path: %v; generic path: %v", derr, gerr)
	}
}

// TestNamedUnknownFeature: a name the model lacks is the unknown_feature error naming
// it, whether it comes first, in a later candidate that follows the learned layout, or
// in place of a learned name.
func TestNamedUnknownFeature(t *testing.T) {
	v := claimsVersion(t)
	f := func(body, want string) {
		t.Helper()
		r := getRequest()
		defer putRequest(r)
		if err := decodeJSON(r, []byte(body), fuzzLimits); err != nil {
			t.Fatal(err)
		}
		m64, err := r.matrix(v, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		err = r.writeFeatures(v, m64, false, func(int) error { return nil })
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, errUnknownFeature) {
			t.Fatalf("%s: error %v, want unknown feature %s", body, err, want)
		}
		// The direct path reports it from apply.
		d := getRequest()
		defer putRequest(d)
		if _, err := assembled(d, []byte(body), decodeJSON, v, fuzzLimits, true); err == nil ||
			!strings.Contains(err.Error(), want) || !errors.Is(err, errUnknownFeature) || !d.dir.on() {
			t.Fatalf("%s: direct path (kept %v): error %v, want unknown feature %s", body, d.dir.on(), err, want)
		}
	}
	f(`{"model":"claims","candidates":[{"features":{"Nope":1}}]}`, `"Nope"`)
	f(`{"model":"claims","candidates":[{"features":{"Area":1}},{"features":{"Area":1,"Late":2}}]}`, `"Late"`)
	f(`{"model":"claims","candidates":[{"features":{"Area":1,"Region":2}},{"features":{"Area":1,"Regio":2}}]}`, `"Regio"`)
}

// TestVectorCells: every value of a vector sent whole counts against --max-cells, in
// JSON and in protobuf, packed or not.
func TestVectorCells(t *testing.T) {
	lim := decodeLimits{rows: 10, cells: 4, presizeAt: math.MaxInt}
	bodies := map[string]func(*request, []byte, decodeLimits) error{
		`{"model":"m","candidates":[{"features":{"a":1,"v":[1,2,3,4]}}]}`: decodeJSON,
		`{"model":"m","context":{"v":[1,2,3,4,5]}}`:                       decodeJSON,
	}
	for _, vals := range [][]float64{{1, 2, 3, 4, 5}} {
		req := &predictpb.PredictRequest{Model: "m", Candidates: []*predictpb.Candidate{{
			Features: []*predictpb.Feature{{Name: "v", Values: vals}}}}}
		bodies[string(mustMarshal(t, req))] = decodeProto
	}
	// Unpacked: five fixed64 values 1.0 of field 3 in one Feature "v".
	unpacked := []byte("\x0a\x01m\x22\x32\x12\x30\x0a\x01v")
	for range 5 {
		unpacked = append(unpacked, "\x19\x00\x00\x00\x00\x00\x00\xf0\x3f"...)
	}
	bodies[string(unpacked)] = decodeProto
	for body, decode := range bodies {
		for _, plain := range []bool{false, true} {
			r := getRequest()
			lim.plain = plain
			err := decode(r, []byte(body), lim)
			if !errors.Is(err, errTooManyCells) {
				t.Errorf("%q (plain %v): %v, want too many cells", body, plain, err)
			}
			putRequest(r)
		}
	}
	r := getRequest()
	defer putRequest(r)
	if err := decodeJSON(r, []byte(`{"model":"m","candidates":[{"features":{"v":[1,null,3]}}]}`), lim); err != nil {
		t.Fatal(err)
	}
	if len(r.vecs) != 1 || len(r.vecVals) != 3 || !math.IsNaN(r.vecVals[1]) || r.vecVals[2] != 3 || string(r.bytes(r.vecs[0].name)) != "v" {
		t.Errorf("decoded %+v %v", r.vecs, r.vecVals)
	}
}

// TestNamedDirectStore: with a feature store, a body that names its model first (the
// direct path) assembles the matrix a body naming it last (the generic path) does: the
// store fills its column, the context wins over the store, a candidate's value (null
// too) over both, over the HTTP path with the handler's own resolve.
func TestNamedDirectStore(t *testing.T) {
	manifest := lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 100}, Density]
`
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest})
	var rows [][]float64
	ts := startServer(t, Config{ModelDir: root, FeatureStore: keyStore{}, AfterResponse: func(e *Exchange) {
		rows = rows[:0]
		for i := 0; i < e.NumRows(); i++ {
			rows = append(rows, e.Row(nil, i))
		}
	}})
	for _, parts := range [][2]string{
		{``, `[{"id":"a","features":{"Area":1,"BonusMalus":50}},{"features":{"BonusMalus":null,"Area":2}},{"features":{"Area":3}}]`},
		{`"keys":{"user_id":"abc"},"context":{"BonusMalus":7,"Region":2},`, `[{"features":{"Region":1,"Area":1}},{"features":{"Area":2,"BonusMalus":5}},{"keys":{"user_id":"x"}}]`},
		{`"context":{"Area":9},`, `[{"features":{"Area":1,"VehBrand":2}},{"features":{"VehBrand":3}}]`},
	} {
		var got [2][][]float64
		for i, body := range []string{
			`{"model":"claims",` + parts[0] + `"candidates":` + parts[1] + `}`, // the direct path
			`{` + parts[0] + `"candidates":` + parts[1] + `,"model":"claims"}`, // the generic path
		} {
			status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body))
			if status != 200 {
				t.Fatalf("%s: %d %s", body, status, resp)
			}
			got[i] = slices.Clone(rows)
		}
		if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
			t.Errorf("%s: direct path %v, generic path %v", parts, got[0], got[1])
		}
	}
}

// TestLayoutRunNames: names of every length layoutRun compares differently (under 8
// bytes with the quotes and colon, 8 to 16, 17 to 24, over 24, over 32), in candidates
// after the first that change one byte of a name, anywhere in it, or swap two names,
// decode on the direct path as on the generic path, in JSON and in protobuf: an unknown
// name is refused, a known one placed in its own column.
func TestLayoutRunNames(t *testing.T) {
	names := []string{"a", "bcd", "efghi", "user_ctr_7d", "user_item_ctr_28d", "user_item_affinity_28dx",
		"user_item_affinity_score_28d", "user_item_affinity_score_28d_smoothed", "user_item_affinity_score_28d_smoothes"}
	// Past every word the comparison holds: a name of 120 bytes.
	names[6] = strings.Repeat("consumer_store_", 8)
	manifest := lgbManifest + "features: [" + strings.Join(names, ", ") + "]\n"
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest})
	v := servedVersion(t, Config{ModelDir: root}, "claims")
	cand := func(ns []string) string {
		var b strings.Builder
		b.WriteString(`{"features":{`)
		for j, n := range ns {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%d.5", n, j)
		}
		b.WriteString("}}")
		return b.String()
	}
	same := func(later []string) {
		t.Helper()
		js := []byte(`{"model":"claims","candidates":[` + cand(names) + "," + cand(names) + "," + cand(later) + "," + cand(names) + "]}")
		sameDirect(t, js, decodeJSON, v)
		var req predictpb.PredictRequest
		if err := jsonToProto(js, &req); err == nil {
			sameDirect(t, mustMarshal(t, &req), decodeProto, v)
		}
	}
	for i, n := range names {
		for p := range len(n) {
			for _, c := range []byte{'a', 'z', '_', '8'} {
				if n[p] == c {
					continue
				}
				later := slices.Clone(names)
				later[i] = n[:p] + string(c) + n[p+1:]
				same(later)
			}
		}
		for j := range names {
			later := slices.Clone(names)
			later[i], later[j] = later[j], later[i]
			same(later)
		}
		same(slices.Delete(slices.Clone(names), i, i+1))
	}
	// A first candidate that repeats a name past the layout's size stops learning in
	// the middle of itself: what it reads after that compares with the layout so far.
	for _, n := range names {
		rep := slices.Repeat([]string{n}, 40)
		js := []byte(`{"model":"claims","candidates":[` + cand(rep) + "," + cand(names) + "," + cand(rep) + "]}")
		sameDirect(t, js, decodeJSON, v)
		var req predictpb.PredictRequest
		if err := jsonToProto(js, &req); err != nil {
			t.Fatal(err)
		}
		sameDirect(t, mustMarshal(t, &req), decodeProto, v)
	}
}

// TestCandidateIDProto: a candidate's id read without the field loop (a length under
// 128, valid UTF-8) and every near miss of it (invalid UTF-8, 128 bytes and more, empty,
// twice, after the features, another wire type) decode on the direct path as on the
// generic path: the same ids, matrix and errors.
func TestCandidateIDProto(t *testing.T) {
	v := claimsVersion(t)
	feature := func(name string, x float64) []byte {
		var m []byte
		m = protowire.AppendTag(m, wire.FeatureName, protowire.BytesType)
		m = protowire.AppendString(m, name)
		m = protowire.AppendTag(m, wire.FeatureValue, protowire.Fixed64Type)
		return protowire.AppendFixed64(m, math.Float64bits(x))
	}
	features := func(c []byte) []byte {
		c = protowire.AppendTag(c, wire.CandidateFeatures, protowire.BytesType)
		c = protowire.AppendBytes(c, feature("Area", 1))
		c = protowire.AppendTag(c, wire.CandidateFeatures, protowire.BytesType)
		return protowire.AppendBytes(c, feature("Region", 2))
	}
	id := func(c []byte, s string) []byte {
		c = protowire.AppendTag(c, wire.CandidateID, protowire.BytesType)
		return protowire.AppendString(c, s)
	}
	body := func(cands ...[]byte) []byte {
		var b []byte
		b = protowire.AppendTag(b, wire.RequestModel, protowire.BytesType)
		b = protowire.AppendString(b, "claims")
		for _, c := range cands {
			b = protowire.AppendTag(b, wire.RequestCandidates, protowire.BytesType)
			b = protowire.AppendBytes(b, c)
		}
		return b
	}
	plain := features(id(nil, "c0"))
	for _, c := range [][]byte{
		features(id(nil, "c1")),
		features(id(nil, "")),
		features(id(nil, "é")),
		features(id(nil, "\xff")),
		features(id(nil, "abcdefgh\xff")),
		features(id(nil, strings.Repeat("é", 63))),
		features(id(nil, "c\x00\x7f")),
		features(id(nil, strings.Repeat("x", 127))),
		features(id(nil, strings.Repeat("x", 128))),
		features(id(id(nil, "a"), "b")),
		id(features(nil), "after"),
		id(features(nil), "\xfe"),
		features(protowire.AppendVarint(protowire.AppendTag(nil, wire.CandidateID, protowire.VarintType), 7)),
		features([]byte{byte(wire.CandidateID)<<3 | byte(protowire.BytesType), 5, 'a'}),
		{byte(wire.CandidateID)<<3 | byte(protowire.BytesType), 3, 'a', 'b'},
	} {
		sameDirect(t, body(c), decodeProto, v)
		sameDirect(t, body(plain, c, plain), decodeProto, v)
	}
}
