//go:build !race

package onnx

import (
	"testing"
)

// TestAllocsPerCall: a call allocates a small constant number of objects, never per row or
// per candidate. onnxruntime_go's Run allocates two argument slices and one small header per
// input and output (GetInternals): 5 for this two-input model; the pinned path adds the
// input tensor's header and shape.
func TestAllocsPerCall(t *testing.T) {
	tc := embCase()
	features, _, _ := loadInputs(t, "emb")
	rows := randomEmbRows(512, 3)
	rows32 := make([]float32, len(rows))
	for i, v := range rows {
		rows32[i] = float32(v)
	}
	mlpFeat := mlpCase().cfg.Inputs[0].Features
	mlpRows := make([]float32, 2048*8)
	for i := range mlpRows {
		mlpRows[i] = float32(rows[i%len(rows)])
	}
	out := make([]float64, 2048)
	direct := loadModel(t, tc, features, nil)
	batched := loadModel(t, tc, features, func(c *Config) { c.Batching = &BatchingConfig{} })
	pinned := loadModel(t, testCase{name: "mlp", cfg: Config{Output: OutputConfig{Name: "score"}}}, mlpFeat, nil)
	if !pinned.zeroCopy {
		t.Fatal("mlp with all features in order should take the pinned path")
	}
	paths := []struct {
		name  string
		limit float64
		sizes [2]int
		call  func(n int) error
	}{
		{"direct/f64", 5, [2]int{1, 512}, func(n int) error { return direct.PredictF64(rows[:n*6], n, out, false) }},
		{"direct/f32", 5, [2]int{1, 512}, func(n int) error { return direct.PredictF32(rows32[:n*6], n, out, false) }},
		{"batched/f64", 5, [2]int{1, 512}, func(n int) error { return batched.PredictF64(rows[:n*6], n, out, false) }},
		{"pinned/f32", 8, [2]int{pinMinValues / 8, 2048}, func(n int) error { return pinned.PredictF32(mlpRows[:n*8], n, out, false) }},
	}
	for _, p := range paths {
		var allocs [2]float64
		for i, n := range p.sizes {
			if err := p.call(n); err != nil { // warm the arena for n rows
				t.Fatal(err)
			}
			allocs[i] = testing.AllocsPerRun(50, func() {
				if err := p.call(n); err != nil {
					t.Fatal(err)
				}
			})
		}
		t.Logf("%s: %v allocs per call at %d rows, %v at %d rows", p.name, allocs[0], p.sizes[0], allocs[1], p.sizes[1])
		if allocs[1] > allocs[0] || allocs[1] > p.limit {
			t.Errorf("%s: %v allocs per call at %d rows, %v at %d rows; want at most %v, not growing with rows",
				p.name, allocs[0], p.sizes[0], allocs[1], p.sizes[1], p.limit)
		}
	}
}
