package onnx

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/predictd/predictd/engine"
)

// FuzzPredict feeds arbitrary values (ids that are fractions, NaN, huge or past the
// embedding table; any dense value) to the two-input model through both the direct and
// the batched path: every call returns scores or an error, never panics, and a success
// is a probability.
func FuzzPredict(f *testing.F) {
	tc := embCase()
	features, rows, _ := loadInputs(f, "emb")
	direct := loadModel(f, tc, features, nil)
	batched := loadModel(f, tc, features, func(c *Config) { c.Batching = &BatchingConfig{MaxBatch: 8} })
	seed := make([]byte, 0, 8*len(rows))
	for _, v := range rows[:4*6] {
		seed = binary.LittleEndian.AppendUint64(seed, math.Float64bits(v))
	}
	f.Add(seed)
	f.Add(binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.NaN())))
	f.Add(make([]byte, 8*6*3))
	f.Fuzz(func(t *testing.T, data []byte) {
		vals := make([]float64, len(data)/8)
		for i := range vals {
			vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[i*8:]))
		}
		nrows := len(vals) / 6
		for _, m := range []*Model{direct, batched} {
			out := make([]float64, nrows)
			err := m.PredictF64(vals, nrows, out, false)
			if len(vals)%6 != 0 {
				// Rows are whole: a partial row is a shape error.
				if !errors.Is(err, engine.ErrFeatureCount) {
					t.Fatalf("%d values: %v", len(vals), err)
				}
				continue
			}
			if err != nil {
				continue
			}
			for i, p := range out {
				// NaN dense features give NaN scores; anything else must be a probability.
				if !(p >= 0 && p <= 1) && !math.IsNaN(p) {
					t.Fatalf("row %d: score %v is not a probability", i, p)
				}
			}
		}
	})
}
