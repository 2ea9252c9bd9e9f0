package sidecar

import (
	"encoding/json"
	"testing"
)

// TestStatusOutputsPerOutput: a model whose raw and transformed outputs differ in width
// (XGBoost multi:softmax: one class, or a margin per class) says both in its status,
// and a request for each gets that many scores per row.
func TestStatusOutputsPerOutput(t *testing.T) {
	model := string(mustRead(t, "../engine/testdata/xgboost/leaves_dermatology/model.json"))
	ts := startServer(t, Config{ModelFS: repoFS(t, map[string]string{
		"derm/1/model.yaml": xgbManifest, "derm/1/model.json": model,
		"raw/1/model.yaml": xgbManifest + "output: raw\n", "raw/1/model.json": model,
	})})
	for _, c := range []struct {
		name         string
		out, raw, tr int
	}{{"derm", 1, 6, 0}, {"raw", 6, 0, 1}} {
		status, body := ts.get(t, "/v1/models/"+c.name)
		if status != 200 {
			t.Fatalf("%s: %d %s", c.name, status, body)
		}
		var m struct {
			Versions []VersionStatus `json:"versions"`
		}
		if err := json.Unmarshal(body, &m); err != nil || len(m.Versions) != 1 {
			t.Fatalf("%s: %v %s", c.name, err, body)
		}
		v := m.Versions[0]
		if v.NumOutputs != c.out || v.NumOutputsRaw != c.raw || v.NumOutputsTransformed != c.tr {
			t.Errorf("%s: num_outputs %d, raw %d, transformed %d; want %d, %d, %d", c.name, v.NumOutputs, v.NumOutputsRaw, v.NumOutputsTransformed, c.out, c.raw, c.tr)
		}
		for _, o := range []struct {
			output string
			width  int
		}{{"raw", 6}, {"transformed", 1}} {
			row := `[` + "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0" + `]`
			status, body := ts.post(t, "tcp", "/v1/predict", "application/json",
				[]byte(`{"model":"`+c.name+`","output":"`+o.output+`","rows":[`+row+`]}`))
			var p struct {
				Predictions []struct {
					Scores []float64 `json:"scores"`
				} `json:"predictions"`
			}
			if status != 200 || json.Unmarshal(body, &p) != nil || len(p.Predictions) != 1 {
				t.Fatalf("%s %s: %d %s", c.name, o.output, status, body)
			}
			if got := max(len(p.Predictions[0].Scores), 1); got != o.width {
				t.Errorf("%s %s: %d scores per row, want %d", c.name, o.output, got, o.width)
			}
		}
	}
}
