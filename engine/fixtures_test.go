package engine

import (
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Fixture tests: every model under testdata/ (copied from the shared fixture set, see
// testdata/README.md) reproduces its reference outputs, raw and transformed, for every
// backend at 1, 2 and 4 threads. Tolerances are those the fixture READMEs state.

// testBackends lists the backends every fixture runs through: pure Go always, the C++
// core when it is linked in.
func testBackends() []Backend {
	if cgoAvailable {
		return []Backend{BackendGo, BackendC}
	}
	return []Backend{BackendGo}
}

var testThreads = []int{1, 2, 4}

// readFixture reads testdata/rel, or testdata/rel.gz or testdata/rel.zst when the file is
// stored compressed (testdata/README.md says which are).
func readFixture(t testing.TB, rel string) []byte {
	t.Helper()
	p := filepath.Join("testdata", filepath.FromSlash(rel))
	if data, err := os.ReadFile(p); err == nil {
		return data
	}
	if data, err := os.ReadFile(p + ".zst"); err == nil {
		zr, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatalf("fixture %s.zst: %v", rel, err)
		}
		defer zr.Close()
		out, err := zr.DecodeAll(data, nil)
		if err != nil {
			t.Fatalf("fixture %s.zst: %v", rel, err)
		}
		return out
	}
	f, err := os.Open(p + ".gz")
	if err != nil {
		t.Fatalf("fixture %s: not found as %s, %s.zst or %s.gz", rel, p, p, p)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("fixture %s.gz: %v", rel, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("fixture %s.gz: %v", rel, err)
	}
	return data
}

// parseTable parses a numeric table: one row per line; fields separated by commas, tabs
// or spaces; an empty field is NaN. skipHeader drops the first line.
func parseTable(t testing.TB, data []byte, skipHeader bool) [][]float64 {
	t.Helper()
	var rows [][]float64
	lines := strings.Split(strings.TrimRight(string(data), "\r\n"), "\n")
	if skipHeader {
		lines = lines[1:]
	}
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		var fields []string
		switch {
		case strings.Contains(l, ","):
			fields = strings.Split(l, ",")
		case strings.Contains(l, "\t"):
			fields = strings.Split(l, "\t")
		default:
			fields = strings.Fields(l)
		}
		row := make([]float64, len(fields))
		for j, f := range fields {
			f = strings.TrimSpace(f)
			if f == "" {
				row[j] = math.NaN()
				continue
			}
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatalf("line %d field %d: %v", i+1, j+1, err)
			}
			row[j] = v
		}
		rows = append(rows, row)
	}
	return rows
}

// parseLibSVM parses "label idx:val ..." rows into dense rows of nfeat values; absent
// entries are NaN. Indices are taken as written (zero-based model columns).
func parseLibSVM(t testing.TB, data []byte, nfeat int) [][]float64 {
	t.Helper()
	var rows [][]float64
	for i, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		toks := strings.Fields(l)
		row := make([]float64, nfeat)
		for j := range row {
			row[j] = math.NaN()
		}
		for _, tok := range toks[1:] {
			is, vs, ok := strings.Cut(tok, ":")
			idx, err1 := strconv.Atoi(is)
			v, err2 := strconv.ParseFloat(vs, 64)
			if !ok || err1 != nil || err2 != nil || idx < 0 || idx >= nfeat {
				t.Fatalf("libsvm line %d: bad entry %q", i+1, tok)
			}
			row[idx] = v
		}
		rows = append(rows, row)
	}
	return rows
}

func flatten(rows [][]float64, ncols int, t testing.TB) []float64 {
	t.Helper()
	out := make([]float64, 0, len(rows)*ncols)
	for i, r := range rows {
		if len(r) != ncols {
			t.Fatalf("row %d has %d values, want %d", i, len(r), ncols)
		}
		out = append(out, r...)
	}
	return out
}

// tolerance says how close got must be to want.
type tolerance struct {
	rel     float64 // |got-want| <= rel*max(1,|want|)
	abs     float64 // or <= abs
	float32 bool    // exact float32 equality (XGBoost margins)
}

func (tol tolerance) ok(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	if tol.float32 {
		return float32(got) == float32(want)
	}
	d := math.Abs(got - want)
	return d <= tol.rel*max(1, math.Abs(want)) || d <= tol.abs
}

func (tol tolerance) String() string {
	if tol.float32 {
		return "exact float32"
	}
	return fmt.Sprintf("rel %g abs %g", tol.rel, tol.abs)
}

// checkOutputs compares got (nrows×width) to the expected table.
func checkOutputs(t *testing.T, what string, got []float64, want [][]float64, width int, tol tolerance) {
	t.Helper()
	if len(want)*width > len(got) {
		t.Fatalf("%s: %d expected rows × %d, got %d values", what, len(want), width, len(got))
	}
	bad := 0
	for r, row := range want {
		if len(row) != width {
			t.Fatalf("%s: expected row %d has %d values, want %d", what, r, len(row), width)
		}
		for k, w := range row {
			g := got[r*width+k]
			if !tol.ok(g, w) {
				if bad < 5 {
					t.Errorf("%s: row %d output %d: got %.17g, want %.17g (diff %.3g, %s)", what, r, k, g, w, g-w, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance", what, bad, len(want)*width)
	}
}

// fixtureCase describes one fixture: model, inputs, and expected files.
type fixtureCase struct {
	name   string
	model  string
	format Format
	// inputs returns row-major float64 rows for a model with nfeat features.
	inputs func(t testing.TB, nfeat int) [][]float64
	raw    string // expected raw margins file ("" if none)
	trans  string // expected transformed predictions file ("" if none)
	rawTol tolerance
	trTol  tolerance
	// f32 also scores float32 rows through PredictF32 (XGBoost: both must match).
	f32 bool
	// extra runs fixture-specific checks.
	extra func(t *testing.T, ens *Ensemble, rows []float64, nrows int)
}

func tableInput(path string, header bool, dropFirstCol bool) func(testing.TB, int) [][]float64 {
	return func(t testing.TB, nfeat int) [][]float64 {
		rows := parseTable(t, readFixture(t, path), header)
		if dropFirstCol {
			for i := range rows {
				rows[i] = rows[i][1:]
			}
		}
		return rows
	}
}

func libsvmInput(path string) func(testing.TB, int) [][]float64 {
	return func(t testing.TB, nfeat int) [][]float64 { return parseLibSVM(t, readFixture(t, path), nfeat) }
}

var (
	lgbTol    = tolerance{rel: 1e-12}       // fixtures/README.md: ≤ 1e-12 × max(1, |exp|)
	oracleTol = tolerance{rel: 1e-8}        // lightgbm-oracle/README.md: %.9g files
	exactTol  = tolerance{}                 // lightgbm-oracle rankers: %.17g raw sums, reproduced exactly
	xgbMargin = tolerance{float32: true}    // fixtures/README.md: bit-identical float32 margins
	xgbProb   = tolerance{abs: 1e-6}        // fixtures/README.md: ≤ 1e-6 absolute on probabilities
	simpleTol = tolerance{abs: 1e-7 + 1e-9} // leaves_model_simple: 8 decimals transcribed
)

func fixtureCases() []fixtureCase {
	lgb := func(dir string) string { return "lightgbm/" + dir + "/model.txt" }
	var cases []fixtureCase
	cases = append(cases,
		fixtureCase{name: "lightgbm/leaves_breast_cancer", model: lgb("leaves_breast_cancer"), format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_breast_cancer/input.txt", false, false),
			extra:  checkBreastCancerLeaves},
		fixtureCase{name: "lightgbm/leaves_dart_breast_cancer", model: lgb("leaves_dart_breast_cancer"), format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_dart_breast_cancer/input.tsv", false, false),
			trans:  "lightgbm/leaves_dart_breast_cancer/expected_transformed.txt", trTol: lgbTol},
		fixtureCase{name: "lightgbm/leaves_kddcup99", model: lgb("leaves_kddcup99"), format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_kddcup99/input.tsv", false, false),
			raw:    "lightgbm/leaves_kddcup99/expected_raw.txt", rawTol: lgbTol},
		fixtureCase{name: "lightgbm/leaves_multiclass", model: lgb("leaves_multiclass"), format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_multiclass/input.tsv", false, true),
			raw:    "lightgbm/leaves_multiclass/expected_raw.txt", rawTol: lgbTol,
			trans: "lightgbm/leaves_multiclass/expected_transformed.txt", trTol: lgbTol},
		fixtureCase{name: "lightgbm/leaves_rf_iris", model: lgb("leaves_rf_iris"), format: FormatLightGBM,
			inputs: libsvmInput("lightgbm/leaves_rf_iris/input.libsvm"),
			raw:    "lightgbm/leaves_rf_iris/expected_raw.txt", rawTol: lgbTol,
			trans: "lightgbm/leaves_rf_iris/expected_transformed.txt", trTol: lgbTol},
		fixtureCase{name: "lightgbm/leaves_model_simple", model: lgb("leaves_model_simple"), format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_model_simple/input.csv", false, false),
			raw:    "lightgbm/leaves_model_simple/expected_raw.txt", rawTol: simpleTol,
			extra: func(t *testing.T, ens *Ensemble, rows []float64, nrows int) {
				checkFirstTrees(t, ens, rows, nrows, 1, "lightgbm/leaves_model_simple/expected_raw_first_tree.txt", simpleTol, false)
			}},
	)
	// LightGBM dump_model() JSON. The dart model's dump is the same model as its text
	// file; it is given as FormatXGBoost, as LoadFile would detect a .json file.
	cases = append(cases,
		fixtureCase{name: "lightgbm/leaves_json_1tree", model: "lightgbm/leaves_json_1tree/model_dump.json", format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_json_1tree/input.csv", false, false),
			raw:    "lightgbm/leaves_json_1tree/expected_raw.txt", rawTol: lgbTol},
		fixtureCase{name: "lightgbm/leaves_json_1tree_1leaf", model: "lightgbm/leaves_json_1tree_1leaf/model_dump.json", format: FormatLightGBM,
			inputs: tableInput("lightgbm/leaves_json_1tree_1leaf/input.csv", false, false),
			raw:    "lightgbm/leaves_json_1tree_1leaf/expected_raw.txt", rawTol: lgbTol},
		// This older dump has no "objective", so it scores raw margins; they must equal
		// the text model's bit for bit (whose sigmoid TestFixtures checks).
		fixtureCase{name: "lightgbm/leaves_dart_breast_cancer/model_dump.json", model: "lightgbm/leaves_dart_breast_cancer/model_dump.json", format: FormatXGBoost,
			inputs: tableInput("lightgbm/leaves_dart_breast_cancer/input.tsv", false, false),
			extra: func(t *testing.T, ens *Ensemble, rows []float64, nrows int) {
				text, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/leaves_dart_breast_cancer/model.txt"))
				if err != nil {
					t.Fatal(err)
				}
				a, _ := NewModel(ens, Options{Backend: BackendGo})
				b, _ := NewModel(text, Options{Backend: BackendGo})
				ra, rb := make([]float64, nrows), make([]float64, nrows)
				_ = a.PredictF64(rows, nrows, ra, true)
				_ = b.PredictF64(rows, nrows, rb, true)
				if i := firstDiff(ra, rb); i >= 0 {
					t.Fatalf("row %d: dump %v, text model %v", i, ra[i], rb[i])
				}
			}},
	)
	for _, d := range []string{"leaves_fmtp_poisson", "leaves_fmtp_gamma", "leaves_fmtp_tweedie"} {
		cases = append(cases, fixtureCase{name: "lightgbm/" + d, model: lgb(d), format: FormatLightGBM,
			inputs: tableInput("lightgbm/"+d+"/input.tsv", false, false),
			trans:  "lightgbm/" + d + "/expected_transformed.txt", trTol: lgbTol})
	}
	for _, d := range []string{"NYC_taxi", "airline", "mtpl2", "pure_categorical", "multiclass"} {
		o := "lightgbm-oracle/" + d + "/"
		cases = append(cases, fixtureCase{name: "lightgbm-oracle/" + d, model: lgb("lleaves_" + d), format: FormatLightGBM,
			inputs: tableInput(o+"inputs.csv", true, false),
			raw:    o + "expected_raw.txt", rawTol: oracleTol,
			trans: o + "expected.txt", trTol: oracleTol})
	}
	// Generated LightGBM models (testdata/README.md), 1,000 of their 5,000 rows: the raw
	// files hold %.17g float64 sums, which a float64 walk in tree order reproduces exactly;
	// the transformed ones LightGBM's own sigmoid (ranker_255) or the identity.
	for _, d := range []string{"ranker_63", "ranker_255", "deep_unbalanced"} {
		o := "lightgbm-oracle/" + d + "/"
		cases = append(cases, fixtureCase{name: "lightgbm-oracle/" + d, model: o + "model.txt", format: FormatLightGBM,
			inputs: tableInput(o+"inputs.csv", true, false),
			raw:    o + "expected_raw.txt", rawTol: exactTol,
			trans: o + "expected.txt", trTol: lgbTol})
	}
	x := func(dir, f string) string { return "xgboost/" + dir + "/" + f }
	cases = append(cases,
		fixtureCase{name: "xgboost/leaves_agaricus", model: x("leaves_agaricus", "model.json"), format: FormatXGBoost,
			inputs: libsvmInput(x("leaves_agaricus", "input.libsvm")), f32: true,
			raw: x("leaves_agaricus", "expected_raw.txt"), rawTol: xgbMargin,
			trans: x("leaves_agaricus", "expected_transformed.txt"), trTol: xgbProb},
		fixtureCase{name: "xgboost/leaves_dart_agaricus", model: x("leaves_dart_agaricus", "model.json"), format: FormatXGBoost,
			inputs: libsvmInput(x("leaves_dart_agaricus", "input.libsvm")), f32: true,
			raw: x("leaves_dart_agaricus", "expected_raw.txt"), rawTol: xgbMargin,
			trans: x("leaves_dart_agaricus", "expected_transformed.txt"), trTol: xgbProb,
			extra: func(t *testing.T, ens *Ensemble, rows []float64, nrows int) {
				checkFirstTrees(t, ens, rows, nrows, 10, x("leaves_dart_agaricus", "expected_raw_ntree10.txt"), xgbMargin, true)
			}},
		fixtureCase{name: "xgboost/leaves_gblinear_agaricus", model: x("leaves_gblinear_agaricus", "model.json"), format: FormatXGBoost,
			inputs: libsvmInput(x("leaves_gblinear_agaricus", "input.libsvm")), f32: true,
			raw: x("leaves_gblinear_agaricus", "expected_raw.txt"), rawTol: xgbMargin,
			trans: x("leaves_gblinear_agaricus", "expected_transformed.txt"), trTol: xgbProb},
		fixtureCase{name: "xgboost/leaves_dermatology", model: x("leaves_dermatology", "model.json"), format: FormatXGBoost,
			inputs: libsvmInput(x("leaves_dermatology", "input.libsvm")), f32: true,
			raw: x("leaves_dermatology", "expected_raw.txt"), rawTol: xgbMargin,
			trans: x("leaves_dermatology", "expected_class.txt"), trTol: tolerance{}},
	)
	for _, d := range []string{"gen_binary_logistic", "gen_regression_nan", "gen_multiclass_softprob", "gen_bench_rank_pairwise", "gen_deep_d12", "gen_categorical"} {
		tr := xgbProb
		if d == "gen_regression_nan" || d == "gen_bench_rank_pairwise" {
			tr = xgbMargin // identity transform: the files are identical
		}
		cases = append(cases, fixtureCase{name: "xgboost/" + d, model: x(d, "model.json"), format: FormatXGBoost,
			inputs: tableInput(x(d, "input.csv"), false, false), f32: true,
			raw: x(d, "expected_raw.csv"), rawTol: xgbMargin,
			trans: x(d, "expected_transformed.csv"), trTol: tr})
	}
	return cases
}

func TestFixtures(t *testing.T) {
	for _, fc := range fixtureCases() {
		t.Run(fc.name, func(t *testing.T) {
			ens, err := Parse(fc.format, readFixture(t, fc.model))
			if err != nil {
				t.Fatalf("parse %s: %v", fc.model, err)
			}
			rowsTable := fc.inputs(t, ens.NumFeatures)
			nrows := len(rowsTable)
			rows := flatten(rowsTable, ens.NumFeatures, t)
			rows32 := make([]float32, len(rows))
			for i, v := range rows {
				rows32[i] = float32(v)
			}
			var wantRaw, wantTr [][]float64
			if fc.raw != "" {
				wantRaw = parseTable(t, readFixture(t, fc.raw), false)
				if len(wantRaw) != nrows {
					t.Fatalf("%s has %d rows, input %d", fc.raw, len(wantRaw), nrows)
				}
			}
			if fc.trans != "" {
				wantTr = parseTable(t, readFixture(t, fc.trans), false)
				if len(wantTr) != nrows {
					t.Fatalf("%s has %d rows, input %d", fc.trans, len(wantTr), nrows)
				}
			}
			for _, b := range testBackends() {
				for _, th := range testThreads {
					m, err := NewModel(ens, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
					if err != nil {
						t.Fatalf("backend %s: %v", b, err)
					}
					tag := fmt.Sprintf("%s/%s/threads=%d", fc.name, m.BackendName(), th)
					out := make([]float64, nrows*ens.NumOutputs)
					for _, raw := range []bool{true, false} {
						want, tol := wantRaw, fc.rawTol
						if !raw {
							want, tol = wantTr, fc.trTol
						}
						if want == nil {
							continue
						}
						what := tag + map[bool]string{true: "/raw", false: "/transformed"}[raw]
						if err := m.PredictF64(rows, nrows, out, raw); err != nil {
							t.Fatalf("%s: PredictF64: %v", what, err)
						}
						checkOutputs(t, what+"/f64", out, want, ens.OutputWidth(raw), tol)
						if fc.f32 {
							clear(out)
							if err := m.PredictF32(rows32, nrows, out, raw); err != nil {
								t.Fatalf("%s: PredictF32: %v", what, err)
							}
							checkOutputs(t, what+"/f32", out, want, ens.OutputWidth(raw), tol)
						}
					}
					m.Close()
				}
			}
			if fc.extra != nil {
				fc.extra(t, ens, rows, nrows)
			}
		})
	}
}

// checkBreastCancerLeaves: the fixture holds only the leaf index each row reaches in each
// tree (pred_leaf). The Go scorer must reach those leaves, and every backend's raw score
// must equal the float64 sum of those leaves' values in tree order.
func checkBreastCancerLeaves(t *testing.T, ens *Ensemble, rows []float64, nrows int) {
	want := parseTable(t, readFixture(t, "lightgbm/leaves_breast_cancer/expected_leaves.txt"), false)
	if len(want) != nrows {
		t.Fatalf("expected_leaves has %d rows, input %d", len(want), nrows)
	}
	sc, err := newGoScorer(ens)
	if err != nil {
		t.Fatal(err)
	}
	gs := sc.(*goScorer)
	nf := ens.NumFeatures
	sums := make([][]float64, nrows)
	for r := 0; r < nrows; r++ {
		if len(want[r]) != ens.NumTrees() {
			t.Fatalf("row %d: %d leaf indices for %d trees", r, len(want[r]), ens.NumTrees())
		}
		var sum float64
		for tr := 0; tr < ens.NumTrees(); tr++ {
			got := gs.leafIndex(rows[r*nf:(r+1)*nf], tr, ens.LeafStart[tr])
			if float64(got) != want[r][tr] {
				t.Errorf("row %d tree %d: leaf %d, want %v", r, tr, got, want[r][tr])
			}
			sum += ens.LeafValue[ens.LeafStart[tr]+int32(want[r][tr])]
		}
		sums[r] = []float64{sum}
	}
	for _, b := range testBackends() {
		for _, th := range testThreads {
			m, err := NewModel(ens, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float64, nrows)
			if err := m.PredictF64(rows, nrows, out, true); err != nil {
				t.Fatal(err)
			}
			checkOutputs(t, fmt.Sprintf("leaf sums/%s/threads=%d", m.BackendName(), th), out, sums, 1, tolerance{})
		}
	}
}

// firstTrees returns a copy of ens keeping only its first n trees.
func firstTrees(ens *Ensemble, n int) *Ensemble {
	c := *ens
	c.NodeStart = ens.NodeStart[:n+1]
	c.LeafStart = ens.LeafStart[:n+1]
	c.TreeOutput = ens.TreeOutput[:n]
	if ens.TreeWeight != nil {
		c.TreeWeight = ens.TreeWeight[:n]
	}
	c.Feature = ens.Feature[:ens.NodeStart[n]]
	c.Threshold = ens.Threshold[:ens.NodeStart[n]]
	c.Flags = ens.Flags[:ens.NodeStart[n]]
	c.Left = ens.Left[:ens.NodeStart[n]]
	c.Right = ens.Right[:ens.NodeStart[n]]
	if ens.CatSet != nil {
		c.CatSet = ens.CatSet[:ens.NodeStart[n]]
	}
	c.LeafValue = ens.LeafValue[:ens.LeafStart[n]]
	c.Objective.NumIterations = n / ens.NumOutputs
	return &c
}

// checkFirstTrees scores with only the first n trees against an expected raw file.
func checkFirstTrees(t *testing.T, ens *Ensemble, rows []float64, nrows, n int, path string, tol tolerance, f32 bool) {
	sub := firstTrees(ens, n)
	if err := sub.Validate(); err != nil {
		t.Fatal(err)
	}
	want := parseTable(t, readFixture(t, path), false)
	for _, b := range testBackends() {
		for _, th := range testThreads {
			m, err := NewModel(sub, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float64, nrows*sub.NumOutputs)
			if err := m.PredictF64(rows, nrows, out, true); err != nil {
				t.Fatal(err)
			}
			checkOutputs(t, fmt.Sprintf("first %d trees/%s/threads=%d", n, m.BackendName(), th), out, want, sub.NumOutputs, tol)
		}
	}
}

// TestLLeavesModelsLoad loads every lleaves model (they have no stored outputs; the five
// that lightgbm-oracle covers are checked against LightGBM in TestFixtures) and scores
// random rows with NaN and ±Inf on every backend and thread count, which must agree
// bit for bit and give finite margins.
func TestLLeavesModelsLoad(t *testing.T) {
	// Tree and feature counts from the fixture README. lleaves_mtpl2_small is not here: its
	// tree_sizes line lists 1,000 trees but the file holds 200, so it is refused
	// (TestLightGBMWholeFixtures).
	models := []struct {
		dir             string
		trees, features int
	}{
		{"NYC_taxi", 100, 5}, {"airline", 100, 6}, {"boston_housing", 100, 13}, {"leaf_scan", 1, 1},
		{"mtpl2", 1000, 15}, {"multiclass", 120, 13}, {"pure_categorical", 1, 3},
		{"single_tree", 1, 10}, {"tiniest_single_tree", 1, 3},
	}
	for _, mc := range models {
		d := mc.dir
		t.Run(d, func(t *testing.T) {
			ens, err := Parse(FormatLightGBM, readFixture(t, "lightgbm/lleaves_"+d+"/model.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if ens.NumTrees() != mc.trees || ens.NumFeatures != mc.features {
				t.Fatalf("%d trees, %d features; want %d, %d", ens.NumTrees(), ens.NumFeatures, mc.trees, mc.features)
			}
			const nrows = 300
			rows := randomRows(rand.New(rand.NewPCG(1, uint64(len(d)))), ens, nrows)
			var ref []float64
			for _, b := range testBackends() {
				for _, th := range testThreads {
					m, err := NewModel(ens, Options{Backend: b, Threads: th, MinRowsPerThread: 1})
					if err != nil {
						t.Fatal(err)
					}
					out := make([]float64, nrows*ens.NumOutputs)
					if err := m.PredictF64(rows, nrows, out, true); err != nil {
						t.Fatal(err)
					}
					for i, v := range out {
						if !finite(v) {
							t.Fatalf("%s: output %d is %v", m.BackendName(), i, v)
						}
					}
					if ref == nil {
						ref = out
					} else if i := firstDiff(ref, out); i >= 0 {
						t.Fatalf("%s threads=%d: output %d = %v, first run gave %v", m.BackendName(), th, i, out[i], ref[i])
					}
				}
			}
		})
	}
}

// randomRows draws rows that exercise every branch kind: values around the model's own
// thresholds (exactly on them, and one ulp either side), category codes including
// negative and out-of-range ones, NaN, ±Inf and the zero boundary.
func randomRows(rng *rand.Rand, ens *Ensemble, nrows int) []float64 {
	nf := ens.NumFeatures
	thr := make([][]float64, nf)
	for i, f := range ens.Feature {
		if ens.Flags[i]&FlagCategorical == 0 {
			thr[f] = append(thr[f], ens.Threshold[i])
		}
	}
	rows := make([]float64, nrows*nf)
	for i := range rows {
		f := i % nf
		switch p := rng.IntN(100); {
		case p < 5:
			rows[i] = math.NaN()
		case p < 7:
			rows[i] = math.Inf(1 - 2*rng.IntN(2))
		case p < 9:
			rows[i] = []float64{0, math.Copysign(0, -1), 1e-35, -1e-35, ZeroThreshold, -ZeroThreshold}[rng.IntN(6)]
		case p < 20:
			rows[i] = float64(rng.IntN(80) - 5) // category codes, negative ones included
		case p < 60 && len(thr[f]) > 0:
			rows[i] = nearThreshold(rng, thr[f])
		default:
			rows[i] = rng.NormFloat64() * 100
		}
	}
	return rows
}

// nearThreshold draws one of thr, or a float64 ulp below or above it, or a float32 ulp
// above it: the values a split's comparison turns on.
func nearThreshold(rng *rand.Rand, thr []float64) float64 {
	t := thr[rng.IntN(len(thr))]
	switch rng.IntN(5) {
	case 0:
		t = math.Nextafter(t, math.Inf(1))
	case 1:
		t = math.Nextafter(t, math.Inf(-1))
	case 2:
		t = float64(math.Nextafter32(float32(t), float32(math.Inf(1))))
	}
	return t
}

func firstDiff(a, b []float64) int {
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return i
		}
	}
	return -1
}

// TestBackendsAgree: the C++ core and the Go scorer give bit-identical raw margins on
// random rows with NaN and ±Inf, float64 and float32, for a model of each kind.
func TestBackendsAgree(t *testing.T) {
	if !cgoAvailable {
		t.Skip("the C++ core is not linked into this build (cgoAvailable=false)")
	}
	models := []struct {
		path   string
		format Format
	}{
		{"lightgbm/lleaves_airline/model.txt", FormatLightGBM},
		{"lightgbm/leaves_kddcup99/model.txt", FormatLightGBM},
		{"lightgbm/lleaves_leaf_scan/model.txt", FormatLightGBM},
		{"xgboost/gen_multiclass_softprob/model.json", FormatXGBoost},
		{"xgboost/gen_regression_nan/model.json", FormatXGBoost},
		{"xgboost/leaves_gblinear_agaricus/model.json", FormatXGBoost},
	}
	for _, mc := range models {
		t.Run(mc.path, func(t *testing.T) {
			ens, err := Parse(mc.format, readFixture(t, mc.path))
			if err != nil {
				t.Fatal(err)
			}
			const nrows = 1000
			rows := randomRows(rand.New(rand.NewPCG(7, 11)), ens, nrows)
			rows32 := make([]float32, len(rows))
			for i, v := range rows {
				rows32[i] = float32(v)
			}
			gm, err := NewModel(ens, Options{Backend: BackendGo})
			if err != nil {
				t.Fatal(err)
			}
			cm, err := NewModel(ens, Options{Backend: BackendC})
			if err != nil {
				t.Fatal(err)
			}
			defer cm.Close()
			g := make([]float64, nrows*ens.NumOutputs)
			c := make([]float64, nrows*ens.NumOutputs)
			for _, raw := range []bool{true, false} {
				if err := gm.PredictF64(rows, nrows, g, raw); err != nil {
					t.Fatal(err)
				}
				if err := cm.PredictF64(rows, nrows, c, raw); err != nil {
					t.Fatal(err)
				}
				if i := firstDiff(g, c); i >= 0 {
					t.Fatalf("f64 raw=%v: output %d: go %.17g, c %.17g", raw, i, g[i], c[i])
				}
				if err := gm.PredictF32(rows32, nrows, g, raw); err != nil {
					t.Fatal(err)
				}
				if err := cm.PredictF32(rows32, nrows, c, raw); err != nil {
					t.Fatal(err)
				}
				if i := firstDiff(g, c); i >= 0 {
					t.Fatalf("f32 raw=%v: output %d: go %.17g, c %.17g", raw, i, g[i], c[i])
				}
			}
		})
	}
}
