//go:build linux

package sidecarstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/predictd/predictd/engine/onnx"
	"github.com/predictd/predictd/examples"
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/onnxformat"
)

const itemsGroup = `name: items
key: item_id
features:
  - {name: emb, type: embedding, dim: 8}
  - {name: pair, type: list, len: 2}
  - {name: title, type: string}
`

// itemVec is item i's embedding (exact in float32).
func itemVec(i int) []float64 {
	v := make([]float64, 8)
	for k := range v {
		v[k] = float64(float32(0.125*float64(i) - 0.25*float64(k)))
	}
	return v
}

// vectorRepo writes a repository with two models fed by the items group's vectors: the
// demo LightGBM model whose last two columns are the list "pair" (pair[0], pair[1]), and
// an ONNX MLP whose whole input tensor is the embedding "emb".
func vectorRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	model, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	write("claims/1/model.txt", model)
	write("claims/1/model.yaml", []byte("format: lightgbm\nfile: model.txt\n"+
		"features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge, {name: pair, group: items, key: item_id}]\n"))
	mlp, err := os.ReadFile("../../engine/onnx/testdata/mlp.onnx")
	if err != nil {
		t.Fatal(err)
	}
	write("mlp/1/model.onnx", mlp)
	write("mlp/1/model.yaml", []byte("format: onnx\nfile: model.onnx\nfeatures: [{name: emb, group: items, key: item_id}]\n"+
		"onnx:\n  inputs: [{name: x, features: [emb]}]\n  output: {name: score}\n"))
	write("items.group.yaml", []byte(itemsGroup))
	return root
}

// TestVectorsIntoModels: a list fills two columns of a tree model and an embedding the
// whole input tensor of an ONNX model, straight from the store; scores equal the models
// scored directly on the same values; an unknown item gets missing values; a request
// that sends one element itself overrides the store; /v1/models lists the columns.
func TestVectorsIntoModels(t *testing.T) {
	if err := onnx.Init(os.Getenv("ORT_LIB")); err != nil {
		t.Fatalf("ONNX Runtime (scripts/fetch-ort.sh, or set ORT_LIB): %v", err)
	}
	root := vectorRepo(t)
	groups, err := features.LoadGroups(root)
	if err != nil {
		t.Fatal(err)
	}
	emb := features.NewEmbedded()
	var csv strings.Builder
	csv.WriteString("item_id,emb,pair\n")
	for i := range 5 {
		v := itemVec(i)
		parts := make([]string, len(v))
		for k, x := range v {
			parts[k] = fmt.Sprint(x)
		}
		fmt.Fprintf(&csv, "i%d,%s,%d %g\n", i, strings.Join(parts, " "), 50+i, 10.5*float64(i))
	}
	if st, err := features.Load(context.Background(), strings.NewReader(csv.String()),
		features.LoadConfig{Group: groups["items"], Sink: emb}); err != nil || st.Rows != 5 {
		t.Fatalf("load: %+v %v", st, err)
	}
	st, err := features.Open(features.Config{Groups: groups, Embedded: emb})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts := startServer(t, sidecar.Config{ModelDir: root, FeatureStore: New(st, "snapshot"), Formats: onnxformat.Formats()})

	// The tree model: pair[0], pair[1] are the demo's BonusMalus and Density columns.
	claims := claimsEngine(t, root)
	rows := randomRows(claims, 3, 9)
	rows[0*9+7], rows[0*9+8] = 52, 21         // i2
	rows[1*9+7], rows[1*9+8] = math.NaN(), 99 // unknown item, pair[1] sent by the request
	rows[2*9+7], rows[2*9+8] = 54, 7          // i4 with pair[1] overridden by the request
	want := make([]float64, 3)
	if err := claims.PredictF64(rows, 3, want, false); err != nil {
		t.Fatal(err)
	}
	feats := func(r int, extra string) string {
		var parts []string
		for j, name := range claims.FeatureNames()[:7] {
			if v := rows[r*9+j]; !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%q:%v", name, v))
			}
		}
		if extra != "" {
			parts = append(parts, extra)
		}
		return strings.Join(parts, ",")
	}
	body := fmt.Sprintf(`{"model":"claims","candidates":[`+
		`{"keys":{"item_id":"i2"},"features":{%s}},`+
		`{"keys":{"item_id":"nope"},"features":{%s}},`+
		`{"keys":{"item_id":"i4"},"features":{%s}}]}`,
		feats(0, ""), feats(1, `"pair[1]":99`), feats(2, `"pair[1]":7`))
	status, resp := ts.post(t, "/v1/predict", body)
	var r jsonResponse
	if status != 200 || json.Unmarshal(resp, &r) != nil || len(r.Predictions) != 3 {
		t.Fatalf("%d %s", status, resp)
	}
	for i := range want {
		if *r.Predictions[i].Score != want[i] {
			t.Errorf("claims candidate %d: %v, the engine on the assembled row says %v", i, *r.Predictions[i].Score, want[i])
		}
	}

	// The ONNX model: its input tensor x is the embedding.
	mlpData, err := os.ReadFile(filepath.Join(root, "mlp/1/model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	mlp, err := onnx.LoadData("mlp.onnx", mlpData, onnx.Config{
		Inputs: []onnx.InputConfig{{Name: "x", Features: []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}}},
		Output: onnx.OutputConfig{Name: "score"},
	}, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"})
	if err != nil {
		t.Fatal(err)
	}
	defer mlp.Close()
	x := append(itemVec(1), itemVec(3)...)
	wantMLP := make([]float64, 2)
	if err := mlp.PredictF64(x, 2, wantMLP, false); err != nil {
		t.Fatal(err)
	}
	status, resp = ts.post(t, "/v1/predict", `{"model":"mlp","candidates":[{"keys":{"item_id":"i1"}},{"keys":{"item_id":"i3"}}]}`)
	r = jsonResponse{}
	if status != 200 || json.Unmarshal(resp, &r) != nil || len(r.Predictions) != 2 {
		t.Fatalf("%d %s", status, resp)
	}
	for i := range wantMLP {
		if *r.Predictions[i].Score != wantMLP[i] {
			t.Errorf("mlp candidate %d: %v, ONNX Runtime on the embedding says %v", i, *r.Predictions[i].Score, wantMLP[i])
		}
	}

	// The model's columns are listed with the vector expanded.
	resp = ts.get(t, "/v1/models/mlp")
	if !strings.Contains(string(resp), `"emb[0]"`) || !strings.Contains(string(resp), `"emb[7]"`) {
		t.Errorf("/v1/models/mlp does not list emb[0]..emb[7]: %s", resp)
	}
}

// TestBindStringFeatureRefused: a string feature is no model input; binding it fails the
// load with a message saying so.
func TestBindStringFeatureRefused(t *testing.T) {
	root := vectorRepo(t)
	os.WriteFile(filepath.Join(root, "claims/1/model.yaml"), []byte("format: lightgbm\nfile: model.txt\n"+
		"features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge, BonusMalus, {name: title, group: items, key: item_id}]\n"), 0o644)
	os.RemoveAll(filepath.Join(root, "mlp"))
	st := emptyStore(t, root)
	s, err := sidecar.New(sidecar.Config{ModelDir: root, FeatureStore: New(st, "snapshot")})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Reload()
	if len(res.Failed) != 1 || !strings.Contains(fmt.Sprint(res.Failed), "string feature cannot be a model input") {
		t.Errorf("reload: %+v", res)
	}
}

// TestGroupsReloadWithModels: group files are reread on every model reload. A new group
// and a new version that binds it load together; a changed group (a new default) re-binds
// the version that uses it and no other; a broken group file keeps the previous groups
// serving and says why.
func TestGroupsReloadWithModels(t *testing.T) {
	root := vectorRepo(t)
	os.RemoveAll(filepath.Join(root, "mlp"))
	st := emptyStore(t, root)
	ts := startServer(t, sidecar.Config{ModelDir: root, FeatureStore: NewReloading(st, "snapshot", root)})
	claims := claimsEngine(t, root)
	row := randomRows(claims, 1, 5)
	body := func(model string) string {
		var parts []string
		for j, name := range claims.FeatureNames()[:7] {
			if v := row[j]; !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%q:%v", name, v))
			}
		}
		return fmt.Sprintf(`{"model":%q,"candidates":[{"keys":{"item_id":"x","user_id":"u"},"features":{%s}}]}`, model, strings.Join(parts, ","))
	}
	score := func(model string) float64 {
		t.Helper()
		status, resp := ts.post(t, "/v1/predict", body(model))
		var r jsonResponse
		if status != 200 || json.Unmarshal(resp, &r) != nil || len(r.Predictions) != 1 {
			t.Fatalf("%s: %d %s", model, status, resp)
		}
		return *r.Predictions[0].Score
	}
	want := func(a, b float64) float64 {
		r := append([]float64(nil), row...)
		r[7], r[8] = a, b
		out := make([]float64, 1)
		claims.PredictF64(r, 1, out, false)
		return out[0]
	}
	if got, w := score("claims"), want(math.NaN(), math.NaN()); got != w {
		t.Fatalf("before: %v, want %v (the item is unknown: pair missing)", got, w)
	}

	// A new group and a model that binds it load in the same reload.
	usersGroup := "name: users\nkey: user_id\nfeatures:\n  - {name: bm, type: float64, default: 3}\n  - {name: dens, type: float32, default: 4}\n"
	os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte(usersGroup), 0o644)
	model, _ := os.ReadFile(filepath.Join(root, "claims/1/model.txt"))
	os.MkdirAll(filepath.Join(root, "byuser/1"), 0o755)
	os.WriteFile(filepath.Join(root, "byuser/1/model.txt"), model, 0o644)
	os.WriteFile(filepath.Join(root, "byuser/1/model.yaml"), []byte("format: lightgbm\nfile: model.txt\n"+
		"features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge, {name: bm, group: users, key: user_id}, {name: dens, group: users, key: user_id}]\n"), 0o644)
	if res := ts.Reload(); len(res.Failed) != 0 {
		t.Fatalf("reload: %+v", res)
	}
	if got, w := score("byuser"), want(3, 4); got != w {
		t.Errorf("the model of the new group: %v, want %v", got, w)
	}
	// A changed group (a new default): the version that binds it is re-bound, although
	// its own files did not change.
	os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte(strings.Replace(usersGroup, "default: 3", "default: 6", 1)), 0o644)
	if res := ts.Reload(); len(res.Failed) != 0 || len(res.Loaded) != 1 || res.Loaded[0] != "byuser/1" {
		t.Fatalf("reload after the group changed: %+v, want byuser/1 re-bound alone", res)
	}
	if got, w := score("byuser"), want(6, 4); got != w {
		t.Errorf("after the group changed: %v, want %v (the new default)", got, w)
	}
	if got, w := score("claims"), want(math.NaN(), math.NaN()); got != w {
		t.Errorf("claims after the reload: %v, want %v", got, w)
	}

	// A broken group file: the reload says so, and everything keeps serving as it was.
	os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte("name: users\nkey: user_id\ncolour: blue\n"), 0o644)
	res := ts.Reload()
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "feature groups (the previous ones stay)") ||
		!strings.Contains(res.Failed[0], "colour") {
		t.Errorf("reload with a broken group file: %+v", res)
	}
	if got, w := score("byuser"), want(6, 4); got != w {
		t.Errorf("after the broken reload: %v, want %v", got, w)
	}
}
