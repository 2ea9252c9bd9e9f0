package engine

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/dmitryikh/leaves"
)

// Benchmarks of the pure-Go scorer, beside its baseline, github.com/dmitryikh/leaves
// (the same rows, one thread). Run:
//
//	go test ./engine -run '^$' -bench 'GoScorer|ParseXGBoostJSONLarge' -benchtime 2s
//
// Compare ns/op of BenchmarkGoScorer/<model>/rows=N with BenchmarkGoScorerBaselineLeaves/<model>/rows=N.
// leaves reads only XGBoost's old binary format, so the XGBoost model has no baseline here.

var gsTimingModels = []struct {
	name, path string
	format     Format
}{
	{"NYC_taxi", "lightgbm/lleaves_NYC_taxi/model.txt", FormatLightGBM},
	{"airline", "lightgbm/lleaves_airline/model.txt", FormatLightGBM},
	{"gen_bench_rank_pairwise", "xgboost/gen_bench_rank_pairwise/model.json", FormatXGBoost},
}

func gsTimingRows(ens *Ensemble, n int) []float64 {
	return randomRows(rand.New(rand.NewPCG(5, 6)), ens, n)
}

func BenchmarkGoScorer(b *testing.B) {
	for _, tm := range gsTimingModels {
		data := readFixture(b, tm.path)
		ens, err := Parse(tm.format, data)
		if err != nil {
			b.Fatal(err)
		}
		m, err := NewModel(ens, Options{Backend: BackendGo})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 100, 1000} {
			rows := gsTimingRows(ens, n)
			out := make([]float64, n*ens.NumOutputs)
			b.Run(tm.name+"/rows="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := m.PredictF64(rows, n, out, true); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*ens.NumTrees()), "ns/tree/row")
			})
		}
	}
}

// BenchmarkGoScorerBaselineLeaves is the baseline: the leaves library on the same models and rows.
func BenchmarkGoScorerBaselineLeaves(b *testing.B) {
	for _, tm := range gsTimingModels {
		data := readFixture(b, tm.path)
		ens, err := Parse(tm.format, data)
		if err != nil {
			b.Fatal(err)
		}
		var lm *leaves.Ensemble
		if tm.format != FormatLightGBM {
			continue
		}
		lm, err = leaves.LGEnsembleFromReader(bufio.NewReader(bytes.NewReader(data)), false)
		if err != nil {
			b.Fatalf("%s: leaves: %v", tm.name, err)
		}
		for _, n := range []int{1, 100, 1000} {
			rows := gsTimingRows(ens, n)
			out := make([]float64, n*lm.NOutputGroups())
			b.Run(tm.name+"/rows="+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := lm.PredictDense(rows, n, ens.NumFeatures, out, 0, 1); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*ens.NumTrees()), "ns/tree/row")
			})
		}
	}
}

// BenchmarkParseXGBoostJSONLarge: loading the 21 MB model (8.7 MB with the fields the parser
// ignores removed, see testdata/README.md).
func BenchmarkParseXGBoostJSONLarge(b *testing.B) {
	data := readFixture(b, "xgboost/gen_bench_rank_pairwise/model.json")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(FormatXGBoost, data); err != nil {
			b.Fatal(err)
		}
	}
}
