package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Fuzz targets for the model parsers (LightGBM text, XGBoost JSON, UBJSON), seeded from
// the small fixtures and from models that are not whole. Whatever the
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
	// Objective lines with options and transforms of their own.
	for _, o := range []string{"regression sqrt", "cross_entropy_lambda", "binary sigmoid:2.5", "huber sqrt"} {
		f.Add([]byte(objLGB(o, 1)))
	}
	f.Add([]byte(objLGB("multiclassova num_class:2 sigmoid:1.5", 2)))
	// Category names (categories.go): by parameter, by name, malformed.
	for _, tr := range []string{
		"parameters:\n[categorical_feature: 2,0]\nend of parameters\n\npandas_categorical:[[\"x\", \"y\"], [1, 2.5, true]]\n",
		"parameters:\n[categorical_feature: name:c]\nend of parameters\npandas_categorical:[[\"u\"]]\n",
		"pandas_categorical:[[\"a\"],\n",
	} {
		f.Add([]byte(strings.Replace(tinyLGB, "pandas_categorical:null\n", tr, 1)))
	}
	// Models that are not whole (each must be refused): cut at a tree boundary, cut
	// mid-tree, "end of trees" missing, tree_sizes disagreeing.
	tree1 := strings.Index(tinyLGB, "Tree=1\n")
	end := strings.Index(tinyLGB, "end of trees\n")
	for _, s := range []string{
		tinyLGB[:tree1],
		tinyLGB[:tree1] + "end of trees\n",
		tinyLGB[:tree1-40],
		tinyLGB[:end] + tinyLGB[end+len("end of trees\n"):],
		strings.Replace(tinyLGB, "tree_sizes=479 100", "tree_sizes=479", 1),
	} {
		f.Add([]byte(s))
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
		// The zoo: per-class and per-target base_score lists (3.1+), exp and hinge
		// objectives, random forest, a multi-target model.
		"zoo/formats/v31_base_score_per_class/model.json",
		"zoo/formats/v31_base_score_per_target/model.json",
		"zoo/survival_aft/model.json",
		"zoo/binary_hinge/model.json",
		"zoo/random_forest/model.json",
		"zoo/formats/v17_binary/model.bin", // refused: the binary format
	} {
		f.Add(readFixture(f, p))
	}
	f.Add([]byte(`{"learner":{"gradient_booster":{"name":"dart","gbtree":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[0.5,1,2],"default_left":[true,false,false]}]}},"weight_drop":[0.5]},"learner_model_param":{"base_score":"[5E-1]","num_feature":"1"},"objective":{"name":"reg:squarederror"}}}`))
	f.Add([]byte(xgbCatModel("40,0,3,33", true)))
	for _, c := range xgbTruncations(f) {
		f.Add([]byte(c.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ens, err := Parse(FormatXGBoost, data)
		if err != nil {
			return
		}
		fuzzScore(t, ens)
	})
}

// FuzzUBJSON feeds the UBJSON reader: XGBoost models re-encoded as UBJSON (categorical,
// multiclass, dart, gblinear, and the models with a tree removed), and a small slice of
// a model saved by XGBoost itself. Both entry points must refuse or accept without
// panicking, agree with each other, and a model they accept must score.
func FuzzUBJSON(f *testing.F) {
	f.Add(jsonToUBJSON(f, []byte(xgbCatModel("40,0,3,33", true))))
	for _, p := range []string{"leaves_agaricus", "leaves_dermatology", "leaves_gblinear_agaricus"} {
		f.Add(jsonToUBJSON(f, readFixture(f, "xgboost/"+p+"/model.json")))
	}
	for _, c := range xgbTruncations(f) {
		f.Add(jsonToUBJSON(f, []byte(c.src)))
	}
	// XGBoost's own UBJSON files from the zoo: a multi-target model, dart, gblinear.
	for _, p := range []string{"multi_target", "dart_binary", "gblinear_softprob"} {
		f.Add(readFixture(f, "zoo/"+p+"/model.ubj"))
	}
	// A NaN leaf, which both entry points accept and Validate refuses.
	f.Add(jsonToUBJSON(f, []byte(`{"learner":{"gradient_booster":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[0.5,NaN,2],"default_left":[true,false,false]}]}},"learner_model_param":{"base_score":"5E-1","num_feature":"1"},"objective":{"name":"reg:squarederror"}}}`)))
	// The head of XGBoost's own file: its header and first trees, cut short.
	f.Add(readFixture(f, "xgboost/gen_categorical/model.ubj")[:8192])
	f.Fuzz(func(t *testing.T, data []byte) {
		direct, err1 := ParseXGBoostUBJSON(data)
		if IsUBJSON(data) {
			viaParse, err2 := ParseXGBoostJSON(data)
			// Compared as printed: a NaN leaf or threshold is equal to itself there,
			// where reflect.DeepEqual holds NaN unequal to NaN.
			if (err1 == nil) != (err2 == nil) || (err1 == nil && fmt.Sprintf("%+v", *direct) != fmt.Sprintf("%+v", *viaParse)) {
				t.Fatalf("ParseXGBoostUBJSON and ParseXGBoostJSON disagree: %v / %v", err1, err2)
			}
		}
		if err1 != nil {
			return
		}
		if err := direct.Validate(); err != nil {
			return
		}
		fuzzScore(t, direct)
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
