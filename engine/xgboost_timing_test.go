package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks of the XGBoost model readers on the largest XGBoost fixture
// (xgboost/gen_bench_rank_pairwise/model.json, 21 MB, 1000 trees), which is not copied into
// testdata: it is read from the full fixture set named by $PREDICTD_FIXTURES, and the
// benchmarks say so and skip when the variable is unset.
//
// BenchmarkXGBoostDecode compares the hand-written JSON reader the parser uses
// (decodeXGBModel) with encoding/json decoding the same fields into the same structs: the
// baseline it has to beat by 2× to be worth its code. Run with
//
//	go test ./engine -run '^$' -bench 'XGBoostDecode|XGBoostParse|XGBoostFormats' -benchtime 10x

func bigXGBoostFixture(b *testing.B) []byte {
	b.Helper()
	const rel = "xgboost/gen_bench_rank_pairwise/model.json"
	if d := os.Getenv("PREDICTD_FIXTURES"); d != "" {
		if data, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(rel))); err == nil {
			return data
		}
	}
	b.Skipf("%s is not in testdata: set PREDICTD_FIXTURES to a fixture set that holds it", rel)
	return nil
}

func BenchmarkXGBoostDecode(b *testing.B) {
	data := bigXGBoostFixture(b)
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := decodeXGBModel(&jsonReader{b: data}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var m xgbModel
			if err := json.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkXGBoostParse times the whole parse (decode, conversion, validation).
func BenchmarkXGBoostParse(b *testing.B) {
	data := bigXGBoostFixture(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(FormatXGBoost, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkXGBoostFormats parses the same model (testdata/xgboost/gen_categorical, 300
// trees with categorical splits) from its JSON and from its UBJSON file.
func BenchmarkXGBoostFormats(b *testing.B) {
	for _, file := range []string{"model.json", "model.ubj"} {
		data := readFixture(b, "xgboost/gen_categorical/"+file)
		b.Run(file, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Parse(FormatXGBoost, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
