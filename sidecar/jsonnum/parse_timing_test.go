package jsonnum

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"unsafe"
)

// BenchmarkParse: Parse beside the design it replaces (the token scan, then
// strconv.ParseFloat) on the numbers a ranker sends, each followed by the next member
// as in a body. Sets: shortest round-trip forms of feature
// values (ratios, counts, scores, float32 values; most of them 15–17 digits), two-decimal
// values (predictd-loadtest's generated features), nine-decimal values (the XGBoost
// fixture's rows), and subnormals, where strconv falls back to its big-decimal algorithm.
//
//	go test ./sidecar/jsonnum -run '^$' -bench Parse -count 3
func BenchmarkParse(b *testing.B) {
	const sep = `,"user_ctr_01_7d":`
	rng := rand.New(rand.NewPCG(3, 4))
	sets := map[string][]string{}
	for range 1000 {
		sets["features"] = append(sets["features"],
			strconv.FormatFloat(rng.Float64(), 'g', -1, 64),                   // a ratio
			strconv.Itoa(rng.IntN(10000)),                                     // a count
			strconv.FormatFloat(rng.NormFloat64()*100, 'g', -1, 64),           // a score
			strconv.FormatFloat(float64(float32(rng.Float64())), 'g', -1, 64)) // a float32 value
		sets["two-decimals"] = append(sets["two-decimals"], strconv.FormatFloat(math.Round(rng.Float64()*10000)/100, 'g', -1, 64))
		sets["nine-decimals"] = append(sets["nine-decimals"], strconv.FormatFloat(rng.NormFloat64(), 'f', 9, 64))
		sets["subnormal"] = append(sets["subnormal"], strconv.FormatFloat(math.Float64frombits(rng.Uint64N(1<<52)), 'g', -1, 64))
	}
	for _, name := range []string{"features", "two-decimals", "nine-decimals", "subnormal"} {
		// One number after another in one body, each followed by the next member (so
		// 8-byte reads past a number's end stay in the buffer).
		var body []byte
		var starts []int
		for _, x := range sets[name] {
			starts = append(starts, len(body))
			body = append(body, x...)
			body = append(body, sep...)
		}
		var sink float64
		for _, impl := range []struct {
			name  string
			parse func([]byte) (float64, int, bool)
		}{
			{"jsonnum", Parse},
			{"strconv", func(b []byte) (float64, int, bool) {
				tok := b[:scan(b)]
				v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
				return v, len(tok), err == nil
			}},
		} {
			// The next number is found from this one's length, as a decoder finds it: the
			// parse's latency counts, not only its throughput.
			b.Run(name+"/"+impl.name, func(b *testing.B) {
				for b.Loop() {
					for at := 0; at < len(body); {
						v, n, _ := impl.parse(body[at:])
						sink += v
						at += n + len(sep)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(starts)), "ns/number")
			})
		}
		_ = sink
	}
}

// scan is the token scan the decoder made before strconv (its former numToken).
func scan(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '-' || b[i] == '+' || b[i] == '.' || b[i] == 'e' || b[i] == 'E' || b[i]-'0' < 10) {
		i++
	}
	return i
}
