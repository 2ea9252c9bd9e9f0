//go:build amd64 && !purego

package sidecar

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// wordRunNames name the places of the layout wordRun is tested on: of each length the
// name comparison tells apart, with its quotes and colon (":" or ": "), and at each
// bound: under 8 bytes, 7 and 8, 9 to 16, 16 and 17, 17 to 24, 24 and 25, 25 to 32,
// longer; and "" for a place whose bytes are not compared (a column the feature store
// fills).
var wordRunNames = []string{"a", "VehAge", "abcd", "abcde", "user_ctr_00_7d", "query_dwell_05_7d", "",
	"abcdefghijkl", "abcdefghijklm", "abcdefghijklmnopqrst", "abcdefghijklmnopqrstu",
	"user_item_category_ctr_30d", "ctx_hour_of_week_x_region_ctr_decayed_7d", "Density", "b"}

// wordRunLayout is the learned JSON layout of names: each place's bytes are the
// quoted name and colon (":" or Python's ": "), as direct.put learns them.
func wordRunLayout(names []string, colon string) ([]place, []byte) {
	var pre []byte
	places := make([]place, len(names))
	for c, name := range names {
		pl := place{col: int32(c), pre: uint32(len(pre))}
		if name == "" {
			pl.col = -2 - pl.col
		} else {
			pre = append(append(append(append(pre, '"'), name...), '"'), colon...)
		}
		pl.npre = uint32(len(pre)) - pl.pre
		pl.w = placeWords(pre[pl.pre:])
		places[c] = pl
	}
	return places, pre
}

// sameWordRun fails unless wordRunAsm and wordRunGo, reading body from i and place k,
// stop at the same position and place and write the same bits to the same columns
// (the others left as they were). With a row of nrow columns, fewer than the layout's,
// the assembly must leave the columns past it alone (wordRunGo's bounds check panics).
func sameWordRun(t *testing.T, body []byte, places []place, pre []byte, i, k, nrow int) {
	t.Helper()
	ra, rg := make([]float64, len(places)), make([]float64, len(places))
	for c := range ra {
		ra[c] = math.Float64frombits(0x7ff4dead00000000 | uint64(c))
		rg[c] = ra[c]
	}
	ia, ka := wordRunAsm(unsafe.SliceData(body), len(body), i, unsafe.SliceData(places), len(places),
		unsafe.SliceData(ra), nrow, k, unsafe.SliceData(pre), &exact10[0])
	if nrow < len(places) {
		for c := nrow; c < len(ra); c++ {
			if math.Float64bits(ra[c]) != 0x7ff4dead00000000|uint64(c) {
				t.Fatalf("a row of %d columns: the assembly wrote column %d in %q", nrow, c, body)
			}
		}
		return
	}
	ig, kg := wordRunGo(body, i, places, pre, rg, k)
	if ia != ig || ka != kg {
		t.Fatalf("assembly stopped at %d (place %d), Go at %d (place %d), from %d (place %d) in %q", ia, ka, ig, kg, i, k, body)
	}
	for c := range ra {
		if math.Float64bits(ra[c]) != math.Float64bits(rg[c]) {
			t.Fatalf("column %d: assembly %v (%#x), Go %v (%#x) in %q", c, ra[c], math.Float64bits(ra[c]), rg[c], math.Float64bits(rg[c]), body)
		}
	}
}

// wordRunValues are values of every kind a member's may be: the numbers wordRun reads
// and ones it leaves to layoutRun (too long, an exponent, not JSON's), null and the
// like, and what is not a number.
func wordRunValue(rng *rand.Rand) string {
	switch rng.IntN(12) {
	case 0:
		return []string{"null", "nul", "nulll", "true", `"x"`, "-", ".", "", "{}", "[1]", "null1", "NaN"}[rng.IntN(12)]
	case 1: // bytes at random from a number's alphabet and its neighbours
		b := make([]byte, 1+rng.IntN(9))
		for i := range b {
			b[i] = "0123456789.-+eE ,/:"[rng.IntN(19)]
		}
		return string(b)
	case 2:
		return randomDigits(rng, 1+rng.IntN(20))
	}
	var s string
	if rng.IntN(2) == 0 {
		s = "-"
	}
	if rng.IntN(6) == 0 {
		s += "0"
	} else {
		s += string(rune('1'+rng.IntN(9))) + randomDigits(rng, rng.IntN(4))
	}
	if rng.IntN(5) != 0 {
		s += "." + randomDigits(rng, rng.IntN(5))
	}
	return s
}

// wordRunBody is members from place k on, each the layout's name or now and then
// another, after it colon or now and then another, with values of wordRunValue,
// joined as encoders join them (",", Python's ", ") and now and then not.
func wordRunBody(rng *rand.Rand, names []string, colon string, k int) string {
	var b strings.Builder
	for ; k < len(names) && rng.IntN(12) != 0; k++ {
		name := names[k]
		switch rng.IntN(16) {
		case 0:
			name += "x"
		case 1:
			name = strings.ToUpper(name)
		case 2, 3: // a byte that only the words between the second and the last hold
			if at := []int{17, 29}[rng.IntN(2)]; at < len(name)-8 {
				name = name[:at] + "#" + name[at+1:]
			}
		case 4: // the place's 9th byte (after the quote), which for 17 bytes only the second word holds
			if len(name) > 8 {
				name = name[:7] + "#" + name[8:]
			}
		}
		c := colon
		if rng.IntN(16) == 0 {
			c = []string{":", ": ", " :", ":  "}[rng.IntN(4)]
		}
		b.WriteString(`"` + name + `"` + c + wordRunValue(rng))
		b.WriteString([]string{",", ",", ",", ", ", ", ", ",  ", ",\n", "}", ",}"}[rng.IntN(9)])
	}
	b.WriteString(`"tail":1}}]}`[:rng.IntN(13)])
	return b.String()
}

// TestWordRunAsm: the assembly reads what wordRunGo reads, from 200,000 bodies of the
// layout's members with values of every kind, from every place, into rows as wide as
// the layout and narrower (the assembly's bounds).
func TestWordRunAsm(t *testing.T) {
	compact, compactPre := wordRunLayout(wordRunNames, ":")
	spaced, spacedPre := wordRunLayout(wordRunNames, ": ")
	rng := rand.New(rand.NewPCG(5, 7))
	read := 0
	for n := range 200000 {
		places, pre, colon := compact, compactPre, ":"
		if n%2 == 1 {
			places, pre, colon = spaced, spacedPre, ": "
		}
		k := rng.IntN(len(places))
		body := []byte(wordRunBody(rng, wordRunNames, colon, k))
		nrow := len(places)
		if rng.IntN(20) == 0 {
			nrow = rng.IntN(len(places))
		}
		sameWordRun(t, body, places, pre, 0, k, nrow)
		if _, k1 := wordRunGo(body, 0, places, pre, make([]float64, len(places)), k); k1 > k {
			read++
		}
	}
	// The bodies are ones the fast path reads, not only ones it turns away.
	if read < 50000 {
		t.Fatalf("wordRunGo read a member of %d bodies of 200,000", read)
	}
}

// FuzzWordRun: the same for any body.
func FuzzWordRun(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 64 {
		f.Add([]byte(wordRunBody(rng, wordRunNames, ":", 0)), uint8(0))
		f.Add([]byte(wordRunBody(rng, wordRunNames, ": ", 0)), uint8(1))
	}
	f.Add([]byte(`"a":37.45,"VehAge":-0.5,"abcd":1,"abcde":2,"user_ctr_00_7d":null,"query_dwell_05_7d":12,`), uint8(0))
	f.Add([]byte(`"a": 37.45, "VehAge": -0.5, "abcd": 1, "abcde": 2, "user_ctr_00_7d": null, "query_dwell_05_7d": 12, `), uint8(1))
	// From each place on, both layouts.
	for k := range wordRunNames {
		f.Add([]byte(wordRunBody(rng, wordRunNames, ":", k)), uint8(2*k))
		f.Add([]byte(wordRunBody(rng, wordRunNames, ": ", k)), uint8(2*k+1))
	}
	compact, compactPre := wordRunLayout(wordRunNames, ":")
	spaced, spacedPre := wordRunLayout(wordRunNames, ": ")
	f.Fuzz(func(t *testing.T, body []byte, k uint8) {
		// k's low bit picks the layout, the rest the place to start from.
		places, pre := compact, compactPre
		if k&1 == 1 {
			places, pre = spaced, spacedPre
		}
		sameWordRun(t, body, places, pre, 0, int(k>>1)%len(places), len(places))
	})
}
