package jsonnum

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"
)

// BenchmarkParse: Parse beside the code it replaces (scan the token, then
// strconv.ParseFloat on it), on the numbers a ranker sends: shortest round-trip forms
// of feature values (ratios, counts, scores), and on subnormals, where strconv falls
// back to its big-decimal algorithm.
//
//	go test ./sidecar/jsonnum -run '^$' -bench Parse -count 3
func BenchmarkParse(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	sets := map[string][]string{}
	for range 1000 {
		sets["features"] = append(sets["features"],
			strconv.FormatFloat(rng.Float64(), 'g', -1, 64),                   // a ratio
			strconv.Itoa(rng.IntN(10000)),                                     // a count
			strconv.FormatFloat(rng.NormFloat64()*100, 'g', -1, 64),           // a score
			strconv.FormatFloat(float64(float32(rng.Float64())), 'g', -1, 64)) // a float32 value
		sets["subnormal"] = append(sets["subnormal"], strconv.FormatFloat(math.Float64frombits(rng.Uint64N(1<<52)), 'g', -1, 64))
	}
	for _, name := range []string{"features", "subnormal"} {
		nums := make([][]byte, len(sets[name]))
		for i, s := range sets[name] {
			nums[i] = []byte(s + ",")
		}
		var sink float64
		b.Run(name+"/jsonnum", func(b *testing.B) {
			for b.Loop() {
				for _, s := range nums {
					v, _, _ := Parse(s)
					sink += v
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(nums)), "ns/number")
		})
		b.Run(name+"/strconv", func(b *testing.B) {
			for b.Loop() {
				for _, s := range nums {
					tok := s[:scan(s)]
					v, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
					sink += v
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(nums)), "ns/number")
		})
		_ = sink
	}
	// The feature numbers as a decoder meets them: one after another in one body, each
	// followed by the next (so 8-byte reads past a number's end stay in the buffer).
	var body []byte
	var starts []int
	for _, x := range sets["features"] {
		starts = append(starts, len(body))
		body = append(body, x...)
		body = append(body, `,"user_ctr_01_7d":`...)
	}
	var sink float64
	b.Run("features-in-body/jsonnum", func(b *testing.B) {
		for b.Loop() {
			for _, at := range starts {
				v, _, _ := Parse(body[at:])
				sink += v
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(starts)), "ns/number")
	})
	b.Run("features-in-body/strconv", func(b *testing.B) {
		for b.Loop() {
			for _, at := range starts {
				tok := body[at : at+scan(body[at:])]
				v, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
				sink += v
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(starts)), "ns/number")
	})
	_ = sink
}

// scan is the token scan the decoder made before strconv (its former numToken).
func scan(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '-' || b[i] == '+' || b[i] == '.' || b[i] == 'e' || b[i] == 'E' || b[i]-'0' < 10) {
		i++
	}
	return i
}
