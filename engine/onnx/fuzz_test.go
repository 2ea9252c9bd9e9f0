package onnx

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
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

// FuzzPredictTyped feeds arbitrary values to models with float64, float16, int32, int64
// and bool inputs (testdata/zoo), one with a fixed batch size (run in chunks) and one
// with a ZipMap output: every call returns scores or an error, never panics, and an
// error for whole rows is ErrInvalidInput (a value the input's type cannot take).
func FuzzPredictTyped(f *testing.F) {
	z, rows := loadZoo(f)
	nf := len(z.Features)
	byName := map[string]zooCase{}
	for _, c := range zooCases() {
		byName[c.name] = c
	}
	var models []*Model
	for _, name := range []string{"per_feature/by-name", "float16", "int32", "bool", "batch16", "zipmap/p2"} {
		c := byName[name]
		cfg := c.cfg
		cfg.Device = testDevice
		m, err := Load(zooPath(c.model), cfg, z.Features)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { m.Close() })
		models = append(models, m)
	}
	seed := make([]byte, 0, 8*3*nf)
	for _, v := range rows[:3*nf] {
		seed = binary.LittleEndian.AppendUint64(seed, math.Float64bits(v))
	}
	f.Add(seed)
	f.Add(binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.Inf(1))))
	f.Add(make([]byte, 8*nf*17))
	f.Fuzz(func(t *testing.T, data []byte) {
		vals := make([]float64, len(data)/8)
		for i := range vals {
			vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[i*8:]))
		}
		nrows := len(vals) / nf
		for _, m := range models {
			out := make([]float64, nrows*m.NumOutputs(false))
			err := m.PredictF64(vals, nrows, out, false)
			if len(vals)%nf != 0 {
				if !errors.Is(err, engine.ErrFeatureCount) {
					t.Fatalf("%s: %d values: %v", m.Path(), len(vals), err)
				}
				continue
			}
			if err != nil && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("%s: %v", m.Path(), err)
			}
		}
	})
}

// FuzzLoadData loads mutated zoo models (exporter-shaped graphs, a truncated file, one
// with external data): Load returns a model or an error, never crashes.
func FuzzLoadData(f *testing.F) {
	z, _ := loadZoo(f)
	for _, name := range []string{"tree_multi", "zipmap", "per_feature", "batch16", "external_data", "truncated"} {
		data, err := os.ReadFile(zooPath(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadData("fuzz.onnx", data, Config{Inputs: in1("x", xyz...)}, z.Features)
		if err != nil {
			return
		}
		m.Close()
	})
}
