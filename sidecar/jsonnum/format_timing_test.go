package jsonnum

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkAppendFloat: AppendFloat beside strconv.AppendFloat(dst, v, 'g', -1, 64),
// the call it replaces in responses, on the values a model answers: probabilities
// (a logistic output: 16–17 digits), scores of a regression (any sign, a few orders of
// magnitude around 1), float32 scores widened (ONNX models: 8–9 digits) and rounded
// values (4 decimals). ns/op is per number.
//
//	go test ./sidecar/jsonnum -run '^$' -bench AppendFloat -count 3
func BenchmarkAppendFloat(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	sets := map[string]func() float64{
		"probability": r.Float64,
		"regression":  func() float64 { return (r.Float64() - 0.3) * math.Pow(10, float64(r.IntN(5)-2)) },
		"float32":     func() float64 { return float64(float32(r.Float64())) },
		"4-decimals":  func() float64 { return math.Round(r.Float64()*1e4) / 1e4 },
	}
	for _, name := range []string{"probability", "regression", "float32", "4-decimals"} {
		vals := make([]float64, 1024)
		for i := range vals {
			vals[i] = sets[name]()
		}
		for _, f := range []struct {
			name string
			fn   func([]byte, float64) []byte
		}{
			{"strconv", func(d []byte, v float64) []byte { return strconv.AppendFloat(d, v, 'g', -1, 64) }},
			{"jsonnum", AppendFloat},
		} {
			b.Run(name+"/"+f.name, func(b *testing.B) {
				buf := make([]byte, 0, 64)
				i := 0
				for b.Loop() {
					buf = f.fn(buf[:0], vals[i&1023])
					i++
				}
			})
		}
	}
}
