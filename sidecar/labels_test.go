package sidecar

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"google.golang.org/protobuf/proto"
)

// TestCategoryLabels serves LightGBM's mtpl2 model, trained from a pandas DataFrame
// whose Region and VehGas columns were categories (its pandas_categorical names them),
// and sends the oracle's rows with those two features as labels ("R24", "Diesel"): the
// scores must equal LightGBM's for the rows as codes, as LightGBM's own predict() maps
// a DataFrame's labels. A label the model does not name scores as missing; a string for
// a feature without names is refused, naming the feature; booleans read as 1 and 0.
func TestCategoryLabels(t *testing.T) {
	root := t.TempDir()
	model := readGzip(t, "../engine/testdata/lightgbm/lleaves_mtpl2/model.txt.gz")
	dir := filepath.Join(root, "mtpl2", "1")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "model.txt"), model, 0o644)
	os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(lgbManifest), 0o644)
	ts := startServer(t, Config{ModelDir: root})

	st, body := ts.get(t, "/v1/models/mtpl2")
	var info struct {
		Versions []struct {
			Features       []string       `json:"features"`
			CategoryLabels map[string]int `json:"category_labels"`
		} `json:"versions"`
	}
	if st != 200 || json.Unmarshal(body, &info) != nil || len(info.Versions) != 1 {
		t.Fatalf("GET /v1/models/mtpl2: %d %s", st, body)
	}
	if got := info.Versions[0].CategoryLabels; got["Region"] != 22 || got["VehGas"] != 2 || len(got) != 2 {
		t.Fatalf("category_labels %v, want Region 22 and VehGas 2", got)
	}
	names := info.Versions[0].Features
	labels := map[string][]string{
		"Region": {"R11", "R21", "R22", "R23", "R24", "R25", "R26", "R31", "R41", "R42", "R43", "R52", "R53", "R54", "R72", "R73", "R74", "R82", "R83", "R91", "R93", "R94"},
		"VehGas": {"Diesel", "Regular"},
	}

	const n = 1200 // a body over 256 KiB, which is counted before it is decoded
	csv := strings.Split(strings.TrimSpace(string(readGzip(t, "../engine/testdata/lightgbm-oracle/mtpl2/inputs.csv.gz"))), "\n")
	exp, err := os.ReadFile("../engine/testdata/lightgbm-oracle/mtpl2/expected.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(exp))
	if head := strings.Split(csv[0], ","); strings.Join(head, " ") != strings.Join(names, " ") {
		t.Fatalf("inputs.csv columns %v, model features %v", head, names)
	}
	// Two requests of the same rows: the categories as codes, and as labels.
	var codes, named strings.Builder
	nlabels := 0
	codes.WriteString(`{"model":"mtpl2","candidates":[`)
	named.WriteString(`{"model":"mtpl2","candidates":[`)
	for i := range n {
		if i > 0 {
			codes.WriteByte(',')
			named.WriteByte(',')
		}
		codes.WriteString(`{"features":{`)
		named.WriteString(`{"features":{`)
		for j, cell := range strings.Split(csv[1+i], ",") {
			if j > 0 {
				codes.WriteByte(',')
				named.WriteByte(',')
			}
			val := "null"
			if cell != "" {
				val = cell
			}
			fmt.Fprintf(&codes, "%q:%s", names[j], val)
			// The oracle's rows hold codes outside the lists too (-1, unseen ones):
			// those stay numbers, which are codes in either request.
			if l := labels[names[j]]; l != nil && cell != "" {
				if c, err := strconv.ParseFloat(cell, 64); err == nil && c == math.Trunc(c) && c >= 0 && int(c) < len(l) {
					val = strconv.Quote(l[int(c)])
					nlabels++
				}
			}
			fmt.Fprintf(&named, "%q:%s", names[j], val)
		}
		codes.WriteString(`}}`)
		named.WriteString(`}}`)
	}
	codes.WriteString(`]}`)
	named.WriteString(`]}`)
	scores := func(body string) []float64 {
		t.Helper()
		st, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body))
		var r struct{ Predictions []struct{ Score float64 } }
		if st != 200 || json.Unmarshal(resp, &r) != nil || len(r.Predictions) == 0 {
			t.Fatalf("%d %.300s", st, resp)
		}
		out := make([]float64, len(r.Predictions))
		for i, p := range r.Predictions {
			out[i] = p.Score
		}
		return out
	}
	if nlabels < n || named.Len() < 256<<10 {
		t.Fatalf("%d labels in %d rows, a body of %d bytes", nlabels, n, named.Len())
	}
	byCode, byLabel := scores(codes.String()), scores(named.String())
	// With the model named last, the body is decoded before the model is known (the
	// generic path); named first, straight into the matrix (decode_direct.go).
	generic := `{"candidates":` + strings.TrimSuffix(strings.TrimPrefix(named.String(), `{"model":"mtpl2","candidates":`), "}") + `,"model":"mtpl2"}`
	byLabelGeneric := scores(generic)
	if len(byCode) != n || len(byLabel) != n || len(byLabelGeneric) != n {
		t.Fatalf("%d, %d and %d predictions, want %d", len(byCode), len(byLabel), len(byLabelGeneric), n)
	}
	for i := range n {
		if byLabelGeneric[i] != byLabel[i] {
			t.Fatalf("row %d: %v decoded before the model was known, %v after", i, byLabelGeneric[i], byLabel[i])
		}
		w, _ := strconv.ParseFloat(want[i], 64)
		// The oracle prints %.9g.
		if math.Abs(byLabel[i]-w) > 1e-8*math.Max(1, math.Abs(w)) || byLabel[i] != byCode[i] {
			t.Fatalf("row %d: %v with labels, %v with codes, LightGBM %v", i, byLabel[i], byCode[i], w)
		}
	}

	// The same rows over protobuf, the labels in Feature.label.
	var pr predictpb.PredictRequest
	pr.Model = "mtpl2"
	for i := range n {
		c := &predictpb.Candidate{}
		for j, cell := range strings.Split(csv[1+i], ",") {
			f := &predictpb.Feature{Name: names[j]}
			if cell != "" {
				x, _ := strconv.ParseFloat(cell, 64)
				if l := labels[names[j]]; l != nil && x == math.Trunc(x) && x >= 0 && int(x) < len(l) {
					f.Label = l[int(x)]
				} else {
					f.Value = &x
				}
			}
			c.Features = append(c.Features, f)
		}
		pr.Candidates = append(pr.Candidates, c)
	}
	pb, err := proto.Marshal(&pr)
	if err != nil {
		t.Fatal(err)
	}
	st, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", pb)
	var pres predictpb.PredictResponse
	if st != 200 || proto.Unmarshal(resp, &pres) != nil || len(pres.Predictions) != n {
		t.Fatalf("protobuf: %d %.300s", st, resp)
	}
	for i, p := range pres.Predictions {
		if p.Score != byLabel[i] {
			t.Fatalf("row %d: %v over protobuf, %v over JSON", i, p.Score, byLabel[i])
		}
	}
	// A protobuf value that is a NaN shaped like a boxed label is a missing value.
	area := math.Float64frombits(0x7FFC_0000_0000_0003)
	pb, _ = proto.Marshal(&predictpb.PredictRequest{Model: "mtpl2", Candidates: []*predictpb.Candidate{
		{Features: []*predictpb.Feature{{Name: "Region", Label: "R24"}, {Name: "Area", Value: &area}}},
		{Features: []*predictpb.Feature{{Name: "Region", Label: "R24"}}},
	}})
	st, resp = ts.post(t, "unix", "/v1/predict", "application/x-protobuf", pb)
	if st != 200 || proto.Unmarshal(resp, &pres) != nil || pres.Predictions[0].Score != pres.Predictions[1].Score {
		t.Errorf("a NaN with a payload: %d %v", st, pres.Predictions)
	}
	two := 2.0
	pb, _ = proto.Marshal(&predictpb.PredictRequest{Model: "mtpl2", Candidates: []*predictpb.Candidate{
		{Features: []*predictpb.Feature{{Name: "Region", Label: "R24", Value: &two}}}}})
	if st, resp = ts.post(t, "unix", "/v1/predict", "application/x-protobuf", pb); st != 400 || !strings.Contains(string(resp), "both value and label") {
		t.Errorf("value and label: %d %s", st, resp)
	}

	// An unseen label is missing; on the context too; booleans are 1 and 0.
	one := func(feats string) float64 {
		t.Helper()
		s := scores(`{"model":"mtpl2","candidates":[{"features":{` + feats + `}}]}`)
		return s[0]
	}
	if a, b := one(`"Region":"R99","VehGas":"Diesel","Area":2`), one(`"Region":null,"VehGas":0,"Area":2`); a != b {
		t.Errorf("unseen label scored %v, missing %v", a, b)
	}
	if a, b := one(`"VehBrand__B1":true,"VehBrand__B2":false,"Area":1`), one(`"VehBrand__B1":1,"VehBrand__B2":0,"Area":1`); a != b {
		t.Errorf("booleans scored %v, 1 and 0 %v", a, b)
	}
	// A label written with escapes, read in place on both decode paths.
	esc := scores(`{"model":"mtpl2","candidates":[{"features":{"Region":"R\u00324","Area":3}},{"features":{"Region":"R\u00324","Area":3}}]}`)
	escGeneric := scores(`{"candidates":[{"features":{"Region":"R\u00324","Area":3}}],"model":"mtpl2"}`)
	if b := one(`"Region":4,"Area":3`); esc[0] != b || esc[1] != b || escGeneric[0] != b {
		t.Errorf("an escaped label scored %v and %v, generic path %v, its code %v", esc[0], esc[1], escGeneric[0], b)
	}
	ctx := scores(`{"model":"mtpl2","context":{"Region":"R24","VehGas":"Regular"},"candidates":[{"features":{"Area":3}}]}`)[0]
	if b := one(`"Region":4,"VehGas":1,"Area":3`); ctx != b {
		t.Errorf("labels in the context scored %v, codes %v", ctx, b)
	}

	st, resp = ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"mtpl2","candidates":[{"features":{"Area":"big"}}]}`))
	if code, msg := apiError(t, resp); st != 400 || code != "bad_request" || !strings.Contains(msg, `feature "Area"`) || !strings.Contains(msg, "names no categories") {
		t.Errorf("a label for a feature without names: %d %s %s", st, code, msg)
	}
	// Labels at and just past the longest a box holds (262,143 bytes), JSON and protobuf.
	long := strings.Repeat("R", maxLabelBytes)
	if st, resp := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"mtpl2","candidates":[{"features":{"Region":"`+long+`"}}]}`)); st != 200 {
		t.Errorf("a label of %d bytes: %d %.200s", len(long), st, resp)
	}
	if st, resp := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"mtpl2","candidates":[{"features":{"Region":"`+long+`R"}}]}`)); st != 400 || !strings.Contains(string(resp), "category labels are at most") {
		t.Errorf("a label of %d bytes: %d %.200s", len(long)+1, st, resp)
	}
	pb, _ = proto.Marshal(&predictpb.PredictRequest{Model: "mtpl2", Candidates: []*predictpb.Candidate{
		{Features: []*predictpb.Feature{{Name: "Region", Label: long + "R"}}}}})
	if st, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", pb); st != 400 || !strings.Contains(string(resp), "category labels are at most") {
		t.Errorf("a protobuf label of %d bytes: %d %.200s", len(long)+1, st, resp)
	}
	st, resp = ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"mtpl2","rows":[["R11"]]}`))
	if st != 400 {
		t.Errorf("a string in a dense row: %d %s", st, resp)
	}
}

// TestManifestCategories: model.yaml names an XGBoost model's categories (XGBoost keeps
// only codes); labels then score as their codes, as XGBoost scored the codes, and a
// shadow whose model.yaml numbers the same labels otherwise receives its own codes.
func TestManifestCategories(t *testing.T) {
	zoo := "../engine/testdata/zoo/categorical_partition/"
	model, err := os.ReadFile(zoo + "model.json")
	if err != nil {
		t.Fatal(err)
	}
	f1 := make([]string, 41) // f1's codes run to 40 in the inputs: labels "c0".."c40"
	for i := range f1 {
		f1[i] = "c" + strconv.Itoa(i)
	}
	manifest := func(labels []string, extra string) string {
		return "format: xgboost\nfile: model.json\nfeatures:\n  - f0\n  - {name: f1, categories: [" + strings.Join(labels, ", ") +
			"]}\n  - f2\n  - f3\n  - f4\n  - f5\n" + extra
	}
	reversed := slices.Clone(f1)
	slices.Reverse(reversed)
	root := t.TempDir()
	// cats, and two shadows of the same file: one naming the categories alike, one
	// numbering them the other way round (so its codes must differ from the primary's).
	for name, man := range map[string]string{
		"cats":       manifest(f1, "shadows: [{model: same}, {model: renumbered}]\n"),
		"same":       manifest(f1, ""),
		"renumbered": manifest(reversed, ""),
	} {
		dir := filepath.Join(root, name, "1")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "model.json"), model, 0o644)
		os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(man), 0o644)
	}
	ts := startServer(t, Config{ModelDir: root})

	st, body := ts.get(t, "/v1/models/cats")
	if st != 200 || !strings.Contains(string(body), `"category_labels": {`) || !strings.Contains(string(body), `"f1": 41`) {
		t.Fatalf("GET /v1/models/cats: %d %s", st, body)
	}
	in, _ := os.ReadFile(zoo + "input.csv")
	exp, _ := os.ReadFile(zoo + "expected_transformed.csv")
	want := strings.Fields(string(exp))
	var codes, named strings.Builder
	rows := strings.Split(strings.TrimSpace(string(in)), "\n")
	for i, row := range rows {
		sep := ","
		if i == 0 {
			sep = ""
		}
		codes.WriteString(sep + "{\"features\":{")
		named.WriteString(sep + "{\"features\":{")
		for j, cell := range strings.Split(row, ",") {
			v := cell
			if v == "" {
				v = "null"
			}
			lv := v
			if j == 1 && cell != "" {
				lv = strconv.Quote("c" + cell)
			}
			if j > 0 {
				codes.WriteByte(',')
				named.WriteByte(',')
			}
			fmt.Fprintf(&codes, "\"f%d\":%s", j, v)
			fmt.Fprintf(&named, "\"f%d\":%s", j, lv)
		}
		codes.WriteString("}}")
		named.WriteString("}}")
	}
	scores := func(cands string) []float64 {
		t.Helper()
		st, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(`{"model":"cats","candidates":[`+cands+`]}`))
		var r struct{ Predictions []struct{ Score float64 } }
		if st != 200 || json.Unmarshal(resp, &r) != nil {
			t.Fatalf("%d %.300s", st, resp)
		}
		out := make([]float64, len(r.Predictions))
		for i, p := range r.Predictions {
			out[i] = p.Score
		}
		return out
	}
	byCode, byLabel := scores(codes.String()), scores(named.String())
	if len(byCode) != len(rows) || len(want) != len(rows) {
		t.Fatalf("%d predictions, %d expected, %d rows", len(byCode), len(want), len(rows))
	}
	for i := range rows {
		w, _ := strconv.ParseFloat(want[i], 64)
		if byLabel[i] != byCode[i] || math.Abs(byLabel[i]-w) > 1e-6 { // fixtures README: 1e-6 on probabilities
			t.Fatalf("row %d: %v with labels, %v with codes, XGBoost %v", i, byLabel[i], byCode[i], w)
		}
	}
	// The shadows saw both requests: the one naming the categories alike agrees; the
	// renumbered one got its own codes (c5 is 35 there), which its trees read as other
	// categories.
	waitFor(t, "the shadows to score both requests", 10*time.Second, func() bool {
		return shadowStats(t, ts, "cats", "same").Requests == 2 && shadowStats(t, ts, "cats", "renumbered").Requests == 2
	})
	if ss := shadowStats(t, ts, "cats", "same"); ss.MaxAbsDiff != 0 || ss.Errors != 0 {
		t.Errorf("shadow with the same categories: %+v", ss)
	}
	if ss := shadowStats(t, ts, "cats", "renumbered"); ss.MaxAbsDiff == 0 || ss.Errors != 0 {
		t.Errorf("shadow with renumbered categories agrees exactly: its codes were not recoded (%+v)", ss)
	}

	// f4 has no categories in model.yaml: a label there is refused, naming it.
	st, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(`{"model":"cats","candidates":[{"features":{"f4":"c1"}}]}`))
	if st != 400 || !strings.Contains(string(resp), `feature \"f4\"`) {
		t.Errorf("a label for f4: %d %s", st, resp)
	}
}
