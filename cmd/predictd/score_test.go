package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const fixtures = "../../engine/testdata/"

// fixtureFile returns a path to the fixture rel, gunzipping rel.gz into a temp dir when
// the fixture is stored compressed.
func fixtureFile(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(fixtures, rel)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	f, err := os.Open(p + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func runScoreTest(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = scoreCmd(args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

// compareLines checks each output line against the expected file's line, value by value.
func compareLines(t *testing.T, got string, wantPath string, rel, abs float64) {
	t.Helper()
	want, err := os.ReadFile(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	gl := strings.Split(strings.TrimSpace(got), "\n")
	wl := strings.Split(strings.TrimSpace(string(want)), "\n")
	if len(gl) != len(wl) {
		t.Fatalf("%d output lines, %s has %d", len(gl), wantPath, len(wl))
	}
	for i := range wl {
		gf := strings.Fields(gl[i])
		wf := strings.FieldsFunc(wl[i], func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
		if len(gf) != len(wf) {
			t.Fatalf("line %d: %d values, want %d (%q vs %q)", i+1, len(gf), len(wf), gl[i], wl[i])
		}
		for k := range wf {
			g, err1 := strconv.ParseFloat(gf[k], 64)
			w, err2 := strconv.ParseFloat(wf[k], 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("line %d: %q vs %q", i+1, gl[i], wl[i])
			}
			if d := math.Abs(g - w); d > rel*max(1, math.Abs(w)) && d > abs {
				t.Fatalf("line %d value %d: got %v, want %v", i+1, k, g, w)
			}
		}
	}
}

func TestScoreCSVWithHeader(t *testing.T) {
	model := fixtureFile(t, "lightgbm/lleaves_airline/model.txt")
	input := fixtureFile(t, "lightgbm-oracle/airline/inputs.csv")
	for _, backend := range []string{"go", ""} {
		code, out, errs := runScoreTest(t, "", "--model", model, "--input", input, "--threads", "2", "--backend", backend)
		if backend == "" {
			code, out, errs = runScoreTest(t, "", "--model", model, "--input", input)
		}
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		compareLines(t, out, fixtures+"lightgbm-oracle/airline/expected.txt", 1e-8, 0)
	}
	code, out, errs := runScoreTest(t, "", "--model", model, "--input", input, "--raw", "--format", "lightgbm")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, fixtures+"lightgbm-oracle/airline/expected_raw.txt", 1e-8, 0)
}

// TestScoreCSVColumnsByName: a header naming the model's features maps columns by name,
// whatever their order, and ignores other columns.
func TestScoreCSVColumnsByName(t *testing.T) {
	model := fixtureFile(t, "lightgbm/lleaves_airline/model.txt")
	data, err := os.ReadFile(fixtureFile(t, "lightgbm-oracle/airline/inputs.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Split(l, ",")
		extra := "label"
		if i > 0 {
			extra = strconv.Itoa(i)
		}
		// Reverse the columns and put an unused column in the middle.
		rev := []string{}
		for j := len(f) - 1; j >= 0; j-- {
			rev = append(rev, f[j])
			if j == 3 {
				rev = append(rev, extra)
			}
		}
		b.WriteString(strings.Join(rev, ",") + "\n")
	}
	code, out, errs := runScoreTest(t, b.String(), "--model", model, "--input", "-", "--raw")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, fixtures+"lightgbm-oracle/airline/expected_raw.txt", 1e-8, 0)
}

func TestScoreCSVNumericHeader(t *testing.T) {
	// lleaves_multiclass names its features "0".."12": the header is all numbers.
	model := fixtureFile(t, "lightgbm/lleaves_multiclass/model.txt")
	input := fixtureFile(t, "lightgbm-oracle/multiclass/inputs.csv")
	code, out, errs := runScoreTest(t, "", "--model", model, "--input", input)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, fixtures+"lightgbm-oracle/multiclass/expected.txt", 1e-8, 0)
}

func TestScoreCSVNoHeaderEmptyFields(t *testing.T) {
	// leaves_model_simple: no header, an empty field is missing.
	code, out, errs := runScoreTest(t, "", "--model", fixtures+"lightgbm/leaves_model_simple/model.txt",
		"--input", fixtures+"lightgbm/leaves_model_simple/input.csv", "--raw")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, fixtures+"lightgbm/leaves_model_simple/expected_raw.txt", 0, 1e-7+1e-9)
}

func TestScoreLibSVM(t *testing.T) {
	// agaricus: ids 1–126 for a 127-feature model, taken as written; absent = missing.
	for _, f := range []string{"leaves_agaricus", "leaves_gblinear_agaricus"} {
		code, out, errs := runScoreTest(t, "", "--model", fixtures+"xgboost/"+f+"/model.json",
			"--input", fixtures+"xgboost/"+f+"/input.libsvm")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", f, code, errs)
		}
		compareLines(t, out, fixtures+"xgboost/"+f+"/expected_transformed.txt", 0, 1e-6)
	}
	// dermatology: multiclass margins, space-separated; multi:softmax class ids.
	d := fixtures + "xgboost/leaves_dermatology/"
	code, out, errs := runScoreTest(t, "", "--model", d+"model.json", "--input", d+"input.libsvm", "--raw", "--zero-based")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, d+"expected_raw.txt", 5e-8, 0)
	code, out, _ = runScoreTest(t, "", "--model", d+"model.json", "--input", d+"input.libsvm")
	if code != 0 {
		t.Fatal(code)
	}
	compareLines(t, out, d+"expected_class.txt", 0, 0)

	// One-based: index 1 is column 0, so the rows shift; index 0 is then an error.
	code, _, errs = runScoreTest(t, "", "--model", d+"model.json", "--input", d+"input.libsvm", "--one-based")
	if code != 1 || !strings.Contains(errs, "line 1: index 0 out of range: the model has 33 features (one-based indices)") {
		t.Fatalf("one-based: exit %d, %q", code, errs)
	}
	// Auto-detection: ids 1..N for an N-feature model are one-based.
	code, out1, _ := runScoreTest(t, "1 1:0.5 2:3\n0 2:1\n", "--model", fixtures+"lightgbm/leaves_model_simple/model.txt", "--input", "-", "--raw")
	code0, out0, _ := runScoreTest(t, "0.5,3\n,1\n", "--model", fixtures+"lightgbm/leaves_model_simple/model.txt", "--input", "-", "--raw")
	if code != 0 || code0 != 0 || out1 != out0 {
		t.Fatalf("auto one-based: %q vs csv %q", out1, out0)
	}
}

func TestScoreErrors(t *testing.T) {
	model := fixtures + "lightgbm/leaves_model_simple/model.txt"
	f := func(stdin string, wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, _, errs := runScoreTest(t, stdin, args...)
		if code != wantCode || !strings.Contains(errs, wantErr) {
			t.Fatalf("%v: exit %d, stderr %q; want exit %d mentioning %q", args, code, errs, wantCode, wantErr)
		}
	}
	f("", 2, "--model is required", "--input", "x")
	f("", 2, "--input is required", "--model", model)
	f("", 2, `--format "onnx"`, "--model", model, "--input", "-", "--format", "onnx")
	f("", 2, `--backend "gpu"`, "--model", model, "--input", "-", "--backend", "gpu")
	f("", 2, "--threads 0", "--model", model, "--input", "-", "--threads", "0")
	f("", 2, "exclude each other", "--model", model, "--input", "-", "--zero-based", "--one-based")
	f("", 2, "flag provided but not defined", "--modle", model)
	f("", 1, "no such file", "--model", "/nonexistent/model.txt", "--input", "-")
	f("1,2\n3,4,5\n", 1, "line 2: 3 fields, want 2", "--model", model, "--input", "-")
	f("1,2,3\n", 1, "line 1: 3 fields, but the model takes 2 features", "--model", model, "--input", "-")
	f("1,2\n3,abc\n", 1, `line 2, column 2: "abc" is not a number`, "--model", model, "--input", "-")
	f("a,b,c\n1,2,3\n", 1, `line 1: the header has 3 columns and lacks the model's features "X1", "X2"`, "--model", model, "--input", "-")
	f("1 0:1 x:2\n", 1, `line 1: "x:2"`, "--model", model, "--input", "-")
	f("1 0:1\n1 5:2\n", 1, "line 2: index 5 out of range: the model has 2 features", "--model", model, "--input", "-")
	f("", 1, "lightgbm", "--model", fixtures+"xgboost/leaves_agaricus/model.json", "--input", "-", "--format", "lightgbm")

	// A header that does not name the features but has the right width is positional.
	code, out, errs := runScoreTest(t, "a,b\n0,0\n", "--model", model, "--input", "-", "--raw")
	if code != 0 || !strings.Contains(errs, "using the columns in order") || strings.TrimSpace(out) != "0.294625942" {
		t.Fatalf("positional header: exit %d, out %q, err %q", code, out, errs)
	}
}

// TestScoreCSVForms: a quoted header in other column order, CRLF line ends, blank and
// whitespace-only lines and tab separators all read as the plain CSV does.
func TestScoreCSVForms(t *testing.T) {
	model := fixtures + "lightgbm/leaves_model_simple/model.txt"
	code, want, errs := runScoreTest(t, "0.5,3\n,1\n", "--model", model, "--input", "-", "--raw")
	if code != 0 {
		t.Fatalf("plain CSV: exit %d: %s", code, errs)
	}
	for _, in := range []string{
		"\"X2\",\"X1\"\r\n3,0.5\r\n\r\n1,\r\n",
		"\n  \nX1,X2\n0.5,3\n \n,1",
		"X1\tX2\n0.5\t3\n\t\n\t1\n",
	} {
		code, out, errs := runScoreTest(t, in, "--model", model, "--input", "-", "--raw")
		if code != 0 || out != want {
			t.Errorf("%q: exit %d, out %q (%s); want %q", in, code, out, errs, want)
		}
	}
}

func TestScoreHelp(t *testing.T) {
	code, _, errs := runScoreTest(t, "", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, flag := range []string{"--model", "--format", "--input", "--raw", "--threads", "--backend", "--zero-based", "--one-based"} {
		if !strings.Contains(errs, flag) {
			t.Errorf("--help does not document %s", flag)
		}
	}
}

// TestScoreCSVCategoryLabels: mtpl2's oracle rows with Region and VehGas written as
// their pandas labels (as DataFrame.to_csv writes a category column), with and without a
// header, score as LightGBM scored the codes; True/False are 1/0; a label for a feature
// without labels is an error naming the column.
func TestScoreCSVCategoryLabels(t *testing.T) {
	model := fixtureFile(t, "lightgbm/lleaves_mtpl2/model.txt")
	input, err := os.ReadFile(fixtureFile(t, "lightgbm-oracle/mtpl2/inputs.csv"))
	if err != nil {
		t.Fatal(err)
	}
	labels := map[int][]string{
		13: {"R11", "R21", "R22", "R23", "R24", "R25", "R26", "R31", "R41", "R42", "R43", "R52", "R53", "R54", "R72", "R73", "R74", "R82", "R83", "R91", "R93", "R94"},
		14: {"Diesel", "Regular"},
	}
	lines := strings.Split(strings.TrimSpace(string(input)), "\n")
	var named strings.Builder
	nlabels := 0
	for i, l := range lines {
		fields := strings.Split(l, ",")
		for j, f := range fields {
			if x, err := strconv.Atoi(f); err == nil && i > 0 && labels[j] != nil && x >= 0 && x < len(labels[j]) {
				fields[j] = labels[j][x]
				nlabels++
			}
			// The one-hot columns as pandas writes booleans.
			if i > 0 && j < 11 && (f == "1" || f == "0") {
				fields[j] = map[string]string{"1": "True", "0": "False"}[f]
			}
		}
		named.WriteString(strings.Join(fields, ",") + "\n")
	}
	if nlabels < len(lines) {
		t.Fatalf("only %d labels", nlabels)
	}
	path := filepath.Join(t.TempDir(), "named.csv")
	os.WriteFile(path, []byte(named.String()), 0o644)
	code, out, errs := runScoreTest(t, "", "--model", model, "--input", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	compareLines(t, out, fixtures+"lightgbm-oracle/mtpl2/expected.txt", 1e-8, 0)

	// Without the header, the first row (labels in it) is data.
	headless := named.String()[strings.IndexByte(named.String(), '\n')+1:]
	code, out2, errs := runScoreTest(t, headless, "--model", model, "--input", "-")
	if code != 0 || out2 != out {
		t.Fatalf("headless: exit %d, %d predictions for %d rows: %s", code, strings.Count(out2, "\n"), len(lines)-1, errs)
	}

	bad := strings.Replace(strings.Replace(named.String(), "\nTrue,", "\nbig,", 1), "\nFalse,", "\nbig,", 1)
	if code, _, errs := runScoreTest(t, bad, "--model", model, "--input", "-"); code == 0 || !strings.Contains(errs, "column 1") {
		t.Errorf("a label for a feature without labels: exit %d: %s", code, errs)
	}
}
