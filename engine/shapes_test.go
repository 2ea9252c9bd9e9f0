//go:build cgo

package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Production-shaped models (the lightgbm-oracle rankers and deep trees, XGBoost's deep
// and categorical models): every kernel of the C++ core reproduces the reference outputs
// within the fixtures' tolerance, takes a fast traversal, and scores batches of 1-3 rows
// bit for bit as it scores them inside a large batch.
//
// Inputs: testdata/lightgbm-oracle/<name>/ (model.txt.zst, inputs.csv.zst,
// expected_raw.txt), else the full fixture set named by PREDICTD_FIXTURES; a model found in
// neither fails the test.

// shapesFixture is one production-shaped model and its reference.
type shapesFixture struct {
	name     string
	format   Format
	dir      string // under testdata/ or the shared fixture set
	model    string // file name, without .zst
	input    string
	expected string
	header   bool // the input CSV starts with a header row
	xgb      bool // XGBoost: float32 rows, expected column 0 is the raw margin
}

var shapesFixtures = []shapesFixture{
	{"ranker_63", FormatLightGBM, "lightgbm-oracle/ranker_63", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
	{"ranker_255", FormatLightGBM, "lightgbm-oracle/ranker_255", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
	{"deep_unbalanced", FormatLightGBM, "lightgbm-oracle/deep_unbalanced", "model.txt", "inputs.csv", "expected_raw.txt", true, false},
	{"gen_deep_d12", FormatXGBoost, "xgboost/gen_deep_d12", "model.json", "input.csv", "expected_raw.csv", false, true},
	{"gen_categorical", FormatXGBoost, "xgboost/gen_categorical", "model.json", "input.csv", "expected_raw.csv", false, true},
}

// shapesSharedDir is the full fixture set named by PREDICTD_FIXTURES, or "".
func shapesSharedDir() string {
	dir := os.Getenv("PREDICTD_FIXTURES")
	if dir == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		return ""
	}
	return dir
}

// shapesRead reads one file of a fixture: testdata/<dir>/<file>[.zst] first, then the
// shared set. ok is false when neither has it.
func shapesRead(t testing.TB, dir, file string) ([]byte, bool) {
	t.Helper()
	local := filepath.Join("testdata", filepath.FromSlash(dir), file)
	if data, err := os.ReadFile(local); err == nil {
		return data, true
	}
	if f, err := os.Open(local + ".zst"); err == nil {
		defer f.Close()
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatalf("%s.zst: %v", local, err)
		}
		defer zr.Close()
		data, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s.zst: %v", local, err)
		}
		return data, true
	}
	if shared := shapesSharedDir(); shared != "" {
		if data, err := os.ReadFile(filepath.Join(shared, filepath.FromSlash(dir), file)); err == nil {
			return data, true
		}
	}
	return nil, false
}

// shapesCSV parses rows of ncols floats (empty field = NaN); header drops the first line.
// ncols > 0 keeps only the first ncols fields of each line (expected files).
func shapesCSV(t testing.TB, data []byte, header bool, ncols int) [][]float64 {
	t.Helper()
	var rows [][]float64
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	first := true
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if first && header {
			first = false
			continue
		}
		if line == "" {
			continue
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		if strings.Contains(line, ",") {
			fields = strings.Split(line, ",")
		}
		if ncols > 0 && len(fields) < ncols {
			t.Fatalf("line %d: %d fields, want %d", len(rows)+1, len(fields), ncols)
		}
		if ncols > 0 {
			fields = fields[:ncols]
		}
		row := make([]float64, len(fields))
		for i, s := range fields {
			row[i] = math.NaN()
			if s = strings.TrimSpace(s); s != "" {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					t.Fatalf("line %d: %v", len(rows)+1, err)
				}
				row[i] = v
			}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// shapesLoaded is a fixture parsed: the ensemble, its rows (float64 and float32) and the
// expected raw outputs (one per row).
type shapesLoaded struct {
	ens    *Ensemble
	rows   []float64
	rows32 []float32
	nrows  int
	want   []float64
}

func shapesLoad(t testing.TB, fx shapesFixture) (*shapesLoaded, bool) {
	t.Helper()
	mdata, ok := shapesRead(t, fx.dir, fx.model)
	if !ok {
		return nil, false
	}
	idata, ok1 := shapesRead(t, fx.dir, fx.input)
	edata, ok2 := shapesRead(t, fx.dir, fx.expected)
	if !ok1 || !ok2 {
		return nil, false
	}
	ens, err := Parse(fx.format, mdata)
	if errors.Is(err, ErrUnsupported) {
		t.Logf("%s: %v", fx.name, err)
		return nil, false
	}
	if err != nil {
		t.Fatalf("%s: %v", fx.name, err)
	}
	nf := ens.NumFeatures
	in := shapesCSV(t, idata, fx.header, 0)
	exp := shapesCSV(t, edata, false, 1)
	if len(in) != len(exp) {
		t.Fatalf("%s: %d input rows, %d expected", fx.name, len(in), len(exp))
	}
	l := &shapesLoaded{ens: ens, nrows: len(in)}
	for i, r := range in {
		if len(r) < nf {
			t.Fatalf("%s row %d: %d values, model takes %d", fx.name, i, len(r), nf)
		}
		l.rows = append(l.rows, r[:nf]...)
		l.want = append(l.want, exp[i][0])
	}
	l.rows32 = make([]float32, len(l.rows))
	for i, v := range l.rows {
		l.rows32[i] = float32(v)
	}
	return l, true
}

// shapesKernels are the core's kernels (the walk variants included); newCScorerKernel
// refuses those this CPU lacks.
var shapesKernels = []string{"generic", "scalar", "scalar-walk", "avx2", "avx2-walk", "avx512", "avx512-walk"}

// shapesClose is the fixture READMEs' check: LightGBM float64 within 1e-8 relative;
// XGBoost float32 margins bit-identical in float32.
func shapesClose(got, want float64, xgb bool) bool {
	if xgb {
		return float32(got) == float32(want)
	}
	return math.Abs(got-want) <= 1e-8*math.Max(1, math.Abs(want))
}

// shapesFirstDiff is the first index where a and b differ in bits, or -1.
func shapesFirstDiff(a, b []float64) int {
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return i
		}
	}
	return -1
}

func shapesPredict(sc *cScorer, l *shapesLoaded, xgb bool, lo, n int, out []float64) error {
	nf := l.ens.NumFeatures
	if xgb {
		return sc.predictF32(l.rows32[lo*nf:(lo+n)*nf], n, out)
	}
	return sc.predictF64(l.rows[lo*nf:(lo+n)*nf], n, out)
}

// TestShapesParity: every kernel reproduces each production-shaped fixture, the generic
// walk's outputs bit for bit, and the model runs on a fast traversal.
func TestShapesParity(t *testing.T) {
	for _, fx := range shapesFixtures {
		t.Run(fx.name, func(t *testing.T) {
			l, ok := shapesLoad(t, fx)
			if !ok {
				t.Fatalf("%s: fixture absent (testdata/%s) or its model unsupported", fx.name, fx.dir)
			}
			if l.ens.NumOutputs != 1 {
				t.Fatalf("%d outputs; these fixtures have one", l.ens.NumOutputs)
			}
			var ref []float64
			for _, k := range shapesKernels {
				sc, err := newCScorerKernel(l.ens, k)
				if errors.Is(err, ErrUnsupported) {
					t.Logf("kernel %s: %v", k, err)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if k == "generic" {
					if tr := sc.traversal(); strings.HasPrefix(tr, "generic") {
						t.Errorf("traversal %q: want a fast one", tr)
					}
				}
				out := make([]float64, l.nrows)
				if err := shapesPredict(sc, l, fx.xgb, 0, l.nrows, out); err != nil {
					t.Fatal(err)
				}
				bad := 0
				for i := range out {
					if !shapesClose(out[i], l.want[i], fx.xgb) {
						if bad < 3 {
							t.Errorf("kernel %s row %d: got %.17g, want %.17g", k, i, out[i], l.want[i])
						}
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("kernel %s: %d of %d rows off", k, bad, l.nrows)
				}
				if ref == nil {
					ref = out
				} else if i := shapesFirstDiff(out, ref); i >= 0 {
					t.Errorf("kernel %s row %d: %.17g, the generic walk gives %.17g", k, i, out[i], ref[i])
				}
				if k != "generic" {
					// The walks the partition walk replaced (benchmarks' baseline): the same bits.
					// The walks the partition walk replaced, and the partition walk before leaf
					// pairs, AVX-512 XGBoost binning, slot-at-a-time XGBoost binning and the
					// AVX2 split (benchmarks' baselines; pd_walk_lockstep): the same bits.
					for _, flags := range []int{4, 8 | 16 | 32, 16 | 32} {
						setWalkFlags(flags)
						err := shapesPredict(sc, l, fx.xgb, 0, l.nrows, out)
						setWalkFlags(0)
						if err != nil {
							t.Fatal(err)
						}
						if i := shapesFirstDiff(out, ref); i >= 0 {
							t.Errorf("kernel %s, walk flags %d, row %d: %.17g, the generic walk gives %.17g", k, flags, i, out[i], ref[i])
						}
					}
				}
				// Tiny batches: the same bits as inside the big batch.
				for _, n := range []int{1, 2, 3, 5} {
					for lo := 0; lo+n <= 40; lo += n {
						small := make([]float64, n)
						if err := shapesPredict(sc, l, fx.xgb, lo, n, small); err != nil {
							t.Fatal(err)
						}
						if i := shapesFirstDiff(small, ref[lo:lo+n]); i >= 0 {
							t.Fatalf("kernel %s batch %d row %d: %.17g, the big batch gives %.17g", k, n, lo+i, small[i], ref[lo+i])
						}
					}
				}
				sc.close()
			}
		})
	}
}
