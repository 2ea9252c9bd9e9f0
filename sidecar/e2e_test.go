package sidecar

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/engine"
	"google.golang.org/protobuf/proto"
)

// parityModels are the test models: LightGBM (float64) with categorical splits, XGBoost
// (float32), and a multi-output model.
var parityModels = []struct {
	name, format, src string
}{
	{"claims", "lightgbm", "demo"},
	{"agaricus", "xgboost", "testdata/agaricus/model.json"},
	{"multiclass", "lightgbm", "testdata/multiclass/model.txt"},
}

func loadEngineModel(t testing.TB, root, name string) *engine.Model {
	t.Helper()
	ext := "model.json"
	if name != "agaricus" && name != "dart" {
		ext = "model.txt"
	}
	m, err := engine.LoadFile(filepath.Join(root, name, "1", ext), "", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestPredictMatchesEngine sends the same rows in every form (JSON candidates, JSON
// rows, protobuf candidates, protobuf rows), over TCP and the Unix socket, raw and
// transformed, and requires every score to equal the engine's bit for bit.
func TestPredictMatchesEngine(t *testing.T) {
	var versions []repoVersion
	for _, pm := range parityModels {
		man := lgbManifest
		if pm.format == "xgboost" {
			man = xgbManifest
		}
		versions = append(versions, repoVersion{model: pm.name, version: "1", src: pm.src, manifest: man})
	}
	root := newRepo(t, versions...)
	ts := startServer(t, Config{ModelDir: root})

	for _, pm := range parityModels {
		m := loadEngineModel(t, root, pm.name)
		const n = 300
		rows := randomRows(m, n, 7)
		names := m.FeatureNames()
		for _, output := range []string{"", "raw"} {
			raw := output == "raw"
			width := m.NumOutputs(raw)
			want := make([]float64, n*max(width, m.NumOutputs(true)))
			if err := m.PredictF64(rows, n, want, raw); err != nil {
				t.Fatal(err)
			}
			want = want[:n*width]
			for _, network := range []string{"tcp", "unix"} {
				for _, form := range []string{"json-candidates", "json-rows", "proto-candidates", "proto-rows"} {
					t.Run(fmt.Sprintf("%s/%s/%s/output=%s", pm.name, network, form, output), func(t *testing.T) {
						var got []float64
						switch form {
						case "json-candidates", "json-rows":
							body := jsonRequest(pm.name, "", output, names, rows, form == "json-rows")
							got = postJSONScores(t, ts, network, body, pm.name, "1", n, width, form == "json-candidates")
						default:
							req := protoRequest(pm.name, output, names, rows, form == "proto-rows")
							got = postProtoScores(t, ts, network, req, n, width)
						}
						for i := range want {
							if math.Float64bits(got[i]) != math.Float64bits(want[i]) &&
								!(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
								t.Fatalf("row %d output %d: sidecar %v, engine %v", i/width, i%width, got[i], want[i])
							}
						}
					})
				}
			}
		}
	}
}

func postJSONScores(t *testing.T, ts *testServer, network string, body []byte, model, version string, n, width int, ids bool) []float64 {
	t.Helper()
	status, resp := ts.post(t, network, "/v1/predict", "application/json", body)
	if status != 200 {
		t.Fatalf("status %d: %s", status, resp)
	}
	var r jsonResponse
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("%v: %s", err, resp)
	}
	if r.Model != model || r.Version != version || len(r.Predictions) != n {
		t.Fatalf("got model %q version %q with %d predictions", r.Model, r.Version, len(r.Predictions))
	}
	got := make([]float64, 0, n*width)
	nan := math.NaN()
	val := func(p *float64) float64 {
		if p == nil {
			return nan
		}
		return *p
	}
	for i, p := range r.Predictions {
		if ids && (p.ID == nil || *p.ID != fmt.Sprintf("c%d", i)) {
			t.Fatalf("prediction %d: id %v", i, p.ID)
		}
		if width == 1 {
			if p.Scores != nil {
				t.Fatalf("single-output model returned scores")
			}
			got = append(got, val(p.Score))
			continue
		}
		if len(p.Scores) != width || val(p.Score) != val(p.Scores[0]) && p.Score != nil {
			t.Fatalf("prediction %d: score %v, %d scores", i, p.Score, len(p.Scores))
		}
		for _, s := range p.Scores {
			got = append(got, val(s))
		}
	}
	return got
}

func protoRequest(model, output string, names []string, rows []float64, dense bool) *predictpb.PredictRequest {
	nf := len(names)
	req := &predictpb.PredictRequest{Model: model, Output: output}
	for i := 0; i < len(rows)/nf; i++ {
		row := rows[i*nf : (i+1)*nf]
		if dense {
			req.Rows = append(req.Rows, &predictpb.Row{Values: row})
			continue
		}
		c := &predictpb.Candidate{Id: fmt.Sprintf("c%d", i)}
		for j, v := range row {
			switch {
			case math.IsNaN(v) && (i+j)%2 == 0: // absent
			case math.IsNaN(v): // present without a value
				c.Features = append(c.Features, &predictpb.Feature{Name: names[j]})
			default:
				c.Features = append(c.Features, &predictpb.Feature{Name: names[j], Value: proto.Float64(v)})
			}
		}
		req.Candidates = append(req.Candidates, c)
	}
	return req
}

func postProtoScores(t *testing.T, ts *testServer, network string, req *predictpb.PredictRequest, n, width int) []float64 {
	t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	status, resp := ts.post(t, network, "/v1/predict", "application/x-protobuf", body)
	if status != 200 {
		t.Fatalf("status %d: %s", status, resp)
	}
	var r predictpb.PredictResponse
	if err := proto.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	if r.Model != req.Model || r.Version != "1" || len(r.Predictions) != n {
		t.Fatalf("got model %q version %q with %d predictions", r.Model, r.Version, len(r.Predictions))
	}
	got := make([]float64, 0, n*width)
	for i, p := range r.Predictions {
		if len(req.Candidates) > 0 && p.Id != req.Candidates[i].Id {
			t.Fatalf("prediction %d: id %q", i, p.Id)
		}
		if width == 1 {
			got = append(got, p.Score)
			continue
		}
		if len(p.Scores) != width || math.Float64bits(p.Score) != math.Float64bits(p.Scores[0]) {
			t.Fatalf("prediction %d: score %v, scores %v", i, p.Score, p.Scores)
		}
		got = append(got, p.Scores...)
	}
	return got
}
