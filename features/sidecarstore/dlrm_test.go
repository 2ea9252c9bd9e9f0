//go:build linux

package sidecarstore

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/predictd/predictd/engine/onnx"
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/onnxformat"
)

// readCSV reads an example CSV into id -> the other columns, vectors split.
func readCSV(t *testing.T, path string) map[string][][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][][]float64{}
	for _, r := range recs[1:] {
		var cols [][]float64
		for _, c := range r[1:] {
			var v []float64
			for _, x := range strings.Fields(c) {
				f, err := strconv.ParseFloat(x, 32)
				if err != nil {
					t.Fatal(err)
				}
				v = append(v, float64(float32(f)))
			}
			cols = append(cols, v)
		}
		out[r[0]] = cols
	}
	return out
}

// TestDLRMExample serves examples/dlrm (the DLRM-style ONNX ranker fed by two store
// groups) from an embedded store loaded with its CSVs, and checks each candidate's score
// against ONNX Runtime run directly on the inputs assembled by hand from the CSVs.
func TestDLRMExample(t *testing.T) {
	if err := onnx.Init(os.Getenv("ORT_LIB")); err != nil {
		t.Fatalf("ONNX Runtime (scripts/fetch-ort.sh, or set ORT_LIB): %v", err)
	}
	ex := filepath.Join("..", "..", "examples", "dlrm")
	groups, err := features.LoadGroups(filepath.Join(ex, "models"))
	if err != nil {
		t.Fatal(err)
	}
	emb := features.NewEmbedded()
	for _, g := range []string{"users", "items"} {
		f, err := os.Open(filepath.Join(ex, g+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		st, err := features.Load(context.Background(), f, features.LoadConfig{Group: groups[g], Sink: emb})
		f.Close()
		if err != nil || st.Bad > 0 {
			t.Fatalf("load %s: %+v %v", g, st, err)
		}
	}
	st, err := features.Open(features.Config{Groups: groups, Embedded: emb})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts := startServer(t, sidecar.Config{ModelDir: filepath.Join(ex, "models"), FeatureStore: New(st, "snapshot"),
		Formats: onnxformat.Formats()})

	users, items := readCSV(t, filepath.Join(ex, "users.csv")), readCSV(t, filepath.Join(ex, "items.csv"))
	cands := []struct {
		item               string
		distance, position float64
	}{{"i0", 1.5, 0}, {"i17", 0.25, 1}, {"i999", 12, 2}}
	const user, hour = "u3", 18
	var names, dense, uNames, iNames []string
	dense = []string{"list_price", "hour", "distance", "position"}
	for k := range 16 {
		uNames = append(uNames, fmt.Sprintf("u%d", k))
		iNames = append(iNames, fmt.Sprintf("v%d", k))
	}
	names = append(append(append(names, dense...), uNames...), iNames...)
	var rows []float64
	var body strings.Builder
	fmt.Fprintf(&body, `{"model":"ranker","keys":{"user_id":%q},"context":{"hour":%d},"candidates":[`, user, hour)
	for i, c := range cands {
		rows = append(rows, items[c.item][1][0], hour, c.distance, c.position)
		rows = append(rows, users[user][0]...)
		rows = append(rows, items[c.item][0]...)
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"id":%q,"keys":{"item_id":%q},"features":{"distance":%v,"position":%v}}`, c.item, c.item, c.distance, c.position)
	}
	body.WriteString("]}")
	data, err := os.ReadFile(filepath.Join(ex, "models", "ranker", "1", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := onnx.LoadData("model.onnx", data, onnx.Config{
		Inputs: []onnx.InputConfig{{Name: "dense", Features: dense}, {Name: "user", Features: uNames}, {Name: "item", Features: iNames}},
		Output: onnx.OutputConfig{Name: "score"},
	}, names)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want := make([]float64, len(cands))
	if err := ref.PredictF64(rows, len(cands), want, false); err != nil {
		t.Fatal(err)
	}
	status, resp := ts.post(t, "/v1/predict", body.String())
	var r jsonResponse
	if status != 200 || json.Unmarshal(resp, &r) != nil || len(r.Predictions) != len(cands) {
		t.Fatalf("%d %s", status, resp)
	}
	for i := range want {
		if *r.Predictions[i].Score != want[i] {
			t.Errorf("candidate %s: %v, ONNX Runtime on the assembled inputs says %v", cands[i].item, *r.Predictions[i].Score, want[i])
		}
	}
}
