package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Fuzz targets for both model parsers, seeded from the small fixtures. Whatever the
// bytes, Parse must return an ensemble that validates or an error, never panic, and an
// ensemble that validates must score without panicking.
//
// Run one for a bounded time with, e.g.:
//
//	go test ./engine -run '^$' -fuzz FuzzParseLightGBM -fuzztime 60s

func FuzzParseLightGBM(f *testing.F) {
	f.Add([]byte(tinyLGB))
	for _, p := range []string{
		"lightgbm/leaves_model_simple/model.txt",
		"lightgbm/leaves_rf_iris/model.txt",
		"lightgbm/lleaves_tiniest_single_tree/model.txt",
		"lightgbm/lleaves_single_tree/model.txt",
		"lightgbm/lleaves_leaf_scan/model.txt",
		"lightgbm/lleaves_pure_categorical/model.txt",
		"lightgbm/leaves_json_1tree/model_dump.json",
	} {
		f.Add(readFixture(f, p))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ens, err := Parse(FormatLightGBM, data)
		if err != nil {
			return
		}
		fuzzScore(t, ens)
	})
}

func FuzzParseXGBoostJSON(f *testing.F) {
	for _, p := range []string{
		"xgboost/leaves_agaricus/model.json",
		"xgboost/leaves_gblinear_agaricus/model.json",
		"xgboost/leaves_dermatology/model.json",
	} {
		f.Add(readFixture(f, p))
	}
	f.Add([]byte(`{"learner":{"gradient_booster":{"name":"dart","gbtree":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[0.5,1,2],"default_left":[true,false,false]}]}},"weight_drop":[0.5]},"learner_model_param":{"base_score":"[5E-1]","num_feature":"1"},"objective":{"name":"reg:squarederror"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ens, err := Parse(FormatXGBoost, data)
		if err != nil {
			return
		}
		fuzzScore(t, ens)
	})
}

// fuzzScore scores a row of NaN and a random row, raw and transformed, with the Go
// backend, through both input widths.
func fuzzScore(t *testing.T, ens *Ensemble) {
	if ens.NumFeatures > 1<<12 || ens.NumOutputs > 1<<10 {
		return // valid but too large to score quickly inside the fuzzer
	}
	m, err := NewModel(ens, Options{Backend: BackendGo})
	if err != nil {
		t.Fatalf("validated ensemble rejected by the Go backend: %v", err)
	}
	defer m.Close()
	nf := ens.NumFeatures
	rows := make([]float64, 2*nf)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range nf {
		rows[i] = math.NaN()
		rows[nf+i] = rng.NormFloat64() * 10
	}
	rows32 := make([]float32, len(rows))
	for i, v := range rows {
		rows32[i] = float32(v)
	}
	out := make([]float64, 2*ens.NumOutputs)
	for _, raw := range []bool{true, false} {
		if err := m.PredictF64(rows, 2, out, raw); err != nil {
			t.Fatal(err)
		}
		if err := m.PredictF32(rows32, 2, out, raw); err != nil {
			t.Fatal(err)
		}
	}
}
