package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/proto"
)

// TestAssembleSemantics: context features reach every row, a candidate's own value wins
// over the context, absent and null are both missing, and context applies to dense rows.
// Each request is checked against the engine on the row it should have built.
func TestAssembleSemantics(t *testing.T) {
	var (
		mu    sync.Mutex
		seen  [][]float64
		ids   []string
		calls int
	)
	ts := startServer(t, Config{ModelFS: examples.Models(), AfterResponse: func(e *Exchange) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		seen = seen[:0]
		ids = ids[:0]
		for i := 0; i < e.NumRows(); i++ {
			seen = append(seen, e.Row(nil, i))
			ids = append(ids, string(e.ID(i)))
		}
		if len(e.Scores) != e.NumRows()*e.Width || e.Model != "claims" || e.Version != "1" {
			t.Errorf("exchange: %+v", e)
		}
	}})
	m := claimsEngine(t)
	nan := math.NaN()
	// Columns: VehBrand VehPower VehGas Region Area VehAge DrivAge BonusMalus Density
	body := `{"model":"claims","context":{"Density":1200,"Area":3},"candidates":[
		{"id":"ctx-only"},
		{"id":"own-wins","features":{"Density":43,"DrivAge":55}},
		{"id":"null","features":{"Area":null,"VehAge":"x"}}]}`
	status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body))
	if code, _ := apiError(t, resp); status != 400 || code != "bad_request" {
		t.Fatalf("wrong type: %d %s", status, resp)
	}
	body = strings.Replace(body, `,"VehAge":"x"`, ``, 1)
	status, resp = ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body))
	if status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	want := []float64{
		nan, nan, nan, nan, 3, nan, nan, nan, 1200,
		nan, nan, nan, nan, 3, nan, 55, nan, 43,
		nan, nan, nan, nan, nan, nan, nan, nan, 1200,
	}
	checkRows(t, seen, want)
	if strings.Join(ids, ",") != "ctx-only,own-wins,null" {
		t.Errorf("ids %v", ids)
	}
	scores := make([]float64, 3)
	if err := m.PredictF64(want, 3, scores, false); err != nil {
		t.Fatal(err)
	}
	var r jsonResponse
	json.Unmarshal(resp, &r)
	for i, p := range r.Predictions {
		if *p.Score != scores[i] {
			t.Errorf("row %d: %v, engine %v", i, *p.Score, scores[i])
		}
	}

	// Dense rows with a context feature (protobuf).
	req := &predictpb.PredictRequest{Model: "claims",
		Context: []*predictpb.Feature{{Name: "DrivAge", Value: proto.Float64(30)}},
		Rows:    []*predictpb.Row{{Values: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}}, {Values: []float64{9, 8, 7, 6, 5, 4, nan, 2, 1}}}}
	if status, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", mustMarshal(t, req)); status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	checkRows(t, seen, []float64{1, 2, 3, 4, 5, 6, 30, 8, 9, 9, 8, 7, 6, 5, 4, 30, 2, 1})
	if calls != 2 {
		t.Errorf("hook called %d times for 2 successful requests", calls)
	}
}

func checkRows(t *testing.T, got [][]float64, want []float64) {
	t.Helper()
	var flat []float64
	for _, r := range got {
		flat = append(flat, r...)
	}
	if len(flat) != len(want) {
		t.Fatalf("%d values, want %d", len(flat), len(want))
	}
	for i := range want {
		if flat[i] != want[i] && !(math.IsNaN(flat[i]) && math.IsNaN(want[i])) {
			t.Fatalf("row %d column %d: %v, want %v", i/9, i%9, flat[i], want[i])
		}
	}
}

// keyStore is a FeatureStore for the plumbing contract: it fills its columns with the
// length of the entity key, marks the group degraded when a key is absent, and fails
// when a key is "down".
type keyStore struct{}

func (keyStore) ReloadGroups() (map[string]string, error) { return nil, nil }

func (keyStore) Width(group, name string) (int, error) { return 1, nil }

func (keyStore) Bind(model, version string, cols []StoreColumn) (FeatureBinding, error) {
	return keyBinding{cols}, nil
}

type keyBinding struct{ cols []StoreColumn }

func (keyBinding) Close() error { return nil }

func (keyBinding) Source() string { return "store" }

func (b keyBinding) Fill(ctx context.Context, q *StoreQuery) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("no deadline")
	}
	for row := 0; row < q.NRows; row++ {
		for _, c := range b.cols {
			k := q.Key(row, c.Spec.Key)
			switch {
			case k == nil:
				q.F64[row*q.NCols+c.Column] = *c.Spec.Default
				q.SetDegraded(c.Spec.Group)
			case string(k) == "down":
				return errors.New("backend down")
			default:
				q.F64[row*q.NCols+c.Column] = float64(len(k))
			}
		}
	}
	return nil
}

// TestStoreBackedFeatures: keys travel from JSON and protobuf requests to the store, the
// store fills its columns, a value the request sends wins, degraded groups are reported,
// and a store failure is 503.
func TestStoreBackedFeatures(t *testing.T) {
	manifest := lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 100}, Density]
`
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest})
	var rows [][]float64
	ts := startServer(t, Config{ModelDir: root, FeatureStore: keyStore{}, AfterResponse: func(e *Exchange) {
		rows = rows[:0]
		for i := 0; i < e.NumRows(); i++ {
			rows = append(rows, e.Row(nil, i))
		}
	}})
	body := `{"model":"claims","keys":{"user_id":"abc"},"candidates":[
		{"id":"ctx"}, {"id":"own","keys":{"user_id":"abcdef"}}, {"id":"req","features":{"BonusMalus":50}}]}`
	status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body))
	if status != 200 || strings.Contains(string(resp), "degraded") {
		t.Fatalf("%d %s", status, resp)
	}
	if rows[0][7] != 3 || rows[1][7] != 6 || rows[2][7] != 50 {
		t.Errorf("BonusMalus column: %v %v %v", rows[0][7], rows[1][7], rows[2][7])
	}
	req := &predictpb.PredictRequest{Model: "claims", Candidates: []*predictpb.Candidate{{Id: "nokey"}}}
	status, resp = ts.post(t, "unix", "/v1/predict", "application/x-protobuf", mustMarshal(t, req))
	var pr predictpb.PredictResponse
	if status != 200 || proto.Unmarshal(resp, &pr) != nil || !pr.Degraded || len(pr.DegradedGroups) != 1 || pr.DegradedGroups[0] != "users" {
		t.Fatalf("%d %v", status, &pr)
	}
	if rows[0][7] != 100 {
		t.Errorf("default not applied: %v", rows[0][7])
	}
	status, resp = ts.post(t, "tcp", "/v1/predict", "application/json", []byte(`{"model":"claims","keys":{"user_id":"down"},"candidates":[{}]}`))
	if code, _ := apiError(t, resp); status != 503 || code != "feature_store_unavailable" {
		t.Fatalf("%d %s", status, resp)
	}
}
