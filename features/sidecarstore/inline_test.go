//go:build linux

package sidecarstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/client"
	"github.com/predictd/predictd/engine/onnx"
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/onnxformat"
	"google.golang.org/protobuf/proto"
)

// vectorServer serves vectorRepo from an embedded store holding items i0..i4.
func vectorServer(t *testing.T) (*testServer, string) {
	t.Helper()
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
		parts := make([]string, 8)
		for k, x := range itemVec(i) {
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
	t.Cleanup(func() { st.Close() })
	return startServer(t, sidecar.Config{ModelDir: root, FeatureStore: New(st, "snapshot"), Formats: onnxformat.Formats()}), root
}

// scores posts a JSON request and returns its scores' bits.
func scores(t *testing.T, ts *testServer, body string) []uint64 {
	t.Helper()
	status, resp := ts.post(t, "/v1/predict", body)
	var r jsonResponse
	if status != 200 || json.Unmarshal(resp, &r) != nil {
		t.Fatalf("%d %s\nrequest: %s", status, resp, body)
	}
	out := make([]uint64, len(r.Predictions))
	for i, p := range r.Predictions {
		out[i] = math.Float64bits(*p.Score)
	}
	return out
}

func sameBits(t *testing.T, what string, got, want []uint64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: %x, want %x", what, got, want)
	}
}

// TestInlineVectors: a vector feature sent whole (a JSON array, protobuf Feature.values)
// over real HTTP scores bit for bit as its elements NAME[k] sent one by one, and as the
// model run directly on those values; without it the store's vector is used; in the
// context it applies to every candidate, and a candidate's own values win over it. The
// ONNX model whose whole input is the embedding takes it the same way.
func TestInlineVectors(t *testing.T) {
	ts, root := vectorServer(t)
	claims := claimsEngine(t, root)
	rows := randomRows(claims, 3, 11)
	feats := func(r int) string {
		var parts []string
		for j, name := range claims.FeatureNames()[:7] {
			if v := rows[r*9+j]; !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%q:%v", name, v))
			}
		}
		return strings.Join(parts, ",")
	}
	engineScores := func(pairs ...[2]float64) []uint64 {
		m := append([]float64(nil), rows...)
		for i, p := range pairs {
			m[i*9+7], m[i*9+8] = p[0], p[1]
		}
		out := make([]float64, 3)
		if err := claims.PredictF64(m, 3, out, false); err != nil {
			t.Fatal(err)
		}
		b := make([]uint64, 3)
		for i, x := range out {
			b[i] = math.Float64bits(x)
		}
		return b
	}
	// extra[i] is candidate i's extra features; every candidate is item i2 (pair 52, 21).
	body := func(context string, extra ...string) string {
		var cs []string
		for i, e := range extra {
			f := feats(i)
			if e != "" {
				f += "," + e
			}
			cs = append(cs, fmt.Sprintf(`{"keys":{"item_id":"i2"},"features":{%s}}`, f))
		}
		ctx := ""
		if context != "" {
			ctx = `"context":{` + context + `},`
		}
		return `{"model":"claims",` + ctx + `"candidates":[` + strings.Join(cs, ",") + `]}`
	}
	nan := math.NaN()

	store := scores(t, ts, body("", "", "", ""))
	sameBits(t, "the store's vectors", store, engineScores([2]float64{52, 21}, [2]float64{52, 21}, [2]float64{52, 21}))

	inline := scores(t, ts, body("", `"pair":[3.5,-1e3]`, "", `"pair":[null,7]`))
	elems := scores(t, ts, body("", `"pair[0]":3.5,"pair[1]":-1e3`, "", `"pair[0]":null,"pair[1]":7`))
	sameBits(t, "inline vectors against their elements", inline, elems)
	sameBits(t, "inline vectors against the engine", inline, engineScores([2]float64{3.5, -1e3}, [2]float64{52, 21}, [2]float64{nan, 7}))
	if inline[0] == store[0] {
		t.Errorf("the inline vector did not change the score (%x)", inline[0])
	}

	// The context's vector applies to every candidate; a candidate's own vector or
	// element wins over it; a vector wins over its elements sent beside it.
	ctx := scores(t, ts, body(`"pair":[1,2]`, "", `"pair":[5,6]`, `"pair[1]":9`))
	sameBits(t, "a context vector", ctx, engineScores([2]float64{1, 2}, [2]float64{5, 6}, [2]float64{1, 9}))
	both := scores(t, ts, body("", `"pair":[4,4],"pair[0]":8`, `"pair[0]":8,"pair":[4,4]`, ""))
	sameBits(t, "a vector beside its elements", both, engineScores([2]float64{4, 4}, [2]float64{4, 4}, [2]float64{52, 21}))

	// Protobuf: Feature.values, bit for bit as JSON.
	req := &predictpb.PredictRequest{Model: "claims"}
	for i, pair := range [][]float64{{3.5, -1e3}, nil, {nan, 7}} {
		c := &predictpb.Candidate{Keys: []*predictpb.Key{{Name: "item_id", Value: "i2"}}}
		for j, name := range claims.FeatureNames()[:7] {
			if v := rows[i*9+j]; !math.IsNaN(v) {
				c.Features = append(c.Features, &predictpb.Feature{Name: name, Value: proto.Float64(v)})
			}
		}
		if pair != nil {
			c.Features = append(c.Features, &predictpb.Feature{Name: "pair", Values: pair})
		}
		req.Candidates = append(req.Candidates, c)
	}
	status, resp := postProto(t, ts, req)
	var pr predictpb.PredictResponse
	if status != 200 || proto.Unmarshal(resp, &pr) != nil || len(pr.Predictions) != 3 {
		t.Fatalf("protobuf: %d %q", status, resp)
	}
	var pb []uint64
	for _, p := range pr.Predictions {
		pb = append(pb, math.Float64bits(p.Score))
	}
	sameBits(t, "protobuf Feature.values against JSON", pb, inline)

	// The Go client sends the same request's vectors in either form.
	for _, asJSON := range []bool{false, true} {
		c, err := client.New(ts.base, client.Options{JSON: asJSON})
		if err != nil {
			t.Fatal(err)
		}
		cr, err := c.Predict(context.Background(), req)
		c.Close()
		if err != nil {
			t.Fatalf("client (JSON %v): %v", asJSON, err)
		}
		var cb []uint64
		for _, p := range cr.Predictions {
			cb = append(cb, math.Float64bits(p.Score))
		}
		sameBits(t, fmt.Sprintf("the Go client's vectors (JSON %v) against JSON", asJSON), cb, inline)
	}

	// The ONNX model whose whole input tensor is the embedding: an unknown item with
	// the embedding sent inline scores as item i3 from the store, and as ONNX Runtime.
	vec := itemVec(3)
	js, _ := json.Marshal(vec)
	var elemParts []string
	for k, x := range vec {
		elemParts = append(elemParts, fmt.Sprintf(`"emb[%d]":%v`, k, x))
	}
	got := scores(t, ts, `{"model":"mlp","candidates":[{"keys":{"item_id":"nope"},"features":{"emb":`+string(js)+`}},{"keys":{"item_id":"i1"}}]}`)
	fromStore := scores(t, ts, `{"model":"mlp","candidates":[{"keys":{"item_id":"i3"}},{"keys":{"item_id":"i1"}}]}`)
	fromElems := scores(t, ts, `{"model":"mlp","candidates":[{"keys":{"item_id":"nope"},"features":{`+strings.Join(elemParts, ",")+`}},{"keys":{"item_id":"i1"}}]}`)
	sameBits(t, "mlp: inline embedding against the store's", got, fromStore)
	sameBits(t, "mlp: inline embedding against its elements", got, fromElems)
	mlpData, err := os.ReadFile(filepath.Join(root, "mlp/1/model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	mlp, err := onnx.LoadData("mlp.onnx", mlpData, onnx.Config{
		Inputs: []onnx.InputConfig{{Name: "x", Features: names}}, Output: onnx.OutputConfig{Name: "score"}}, names)
	if err != nil {
		t.Fatal(err)
	}
	defer mlp.Close()
	want := make([]float64, 1)
	if err := mlp.PredictF64(vec, 1, want, false); err != nil {
		t.Fatal(err)
	}
	if got[0] != math.Float64bits(want[0]) {
		t.Errorf("mlp: %v, ONNX Runtime on the vector says %v", math.Float64frombits(got[0]), want[0])
	}
}

// TestInlineVectorErrors: a vector of the wrong length, an array for a scalar, nested
// arrays, non-numbers and unknown names are 400s whose message names the feature and,
// for a length, the expected and the sent count.
func TestInlineVectorErrors(t *testing.T) {
	ts, _ := vectorServer(t)
	for _, c := range []struct {
		features string
		code     string
		want     []string
	}{
		{`"pair":[1]`, "bad_request", []string{`feature "pair"`, "a vector of 2 values", "sent 1"}},
		{`"pair":[1,2,3]`, "bad_request", []string{`feature "pair"`, "a vector of 2 values", "sent 3"}},
		{`"pair":[]`, "bad_request", []string{`feature "pair"`, "sent 0"}},
		{`"VehBrand":[1]`, "bad_request", []string{`feature "VehBrand"`, "is a scalar", "not an array"}},
		{`"pair":[[1],2]`, "bad_request", []string{`feature "pair"`, "want a number, a boolean or null, found an array"}},
		{`"pair":["a",2]`, "bad_request", []string{`feature "pair"`, "want a number, a boolean or null, found a string"}},
		{`"pair":[1,{}]`, "bad_request", []string{`feature "pair"`, "found an object"}},
		{`"pair":[1,2`, "bad_request", []string{`feature "pair"`, "want ',' or ']'"}},
		{`"nope":[1,2]`, "unknown_feature", []string{`"nope"`, "no such feature"}},
		{`"pair":12`, "unknown_feature", []string{`"pair"`}},
	} {
		body := `{"model":"claims","candidates":[{"keys":{"item_id":"i1"},"features":{"VehPower":4,` + c.features + `}}]}`
		status, resp := ts.post(t, "/v1/predict", body)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if status != 400 || json.Unmarshal(resp, &e) != nil || e.Error.Code != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.features, status, resp, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(e.Error.Message, w) {
				t.Errorf("%s: message %q does not say %q", c.features, e.Error.Message, w)
			}
		}
	}
	// In the context, and in protobuf.
	status, resp := ts.post(t, "/v1/predict", `{"model":"claims","context":{"pair":[1]},"candidates":[{}]}`)
	if status != 400 || !strings.Contains(string(resp), "a vector of 2 values, the request sent 1") {
		t.Errorf("context vector of the wrong length: %d %s", status, resp)
	}
	for _, c := range []struct {
		f    *predictpb.Feature
		want string
	}{
		{&predictpb.Feature{Name: "pair", Values: []float64{1, 2, 3}}, `feature \"pair\": model claims version 1 takes a vector of 2 values, the request sent 3`},
		{&predictpb.Feature{Name: "pair", Value: proto.Float64(1), Values: []float64{1, 2}}, `Feature \"pair\": both value and values`},
	} {
		status, resp := postProto(t, ts, &predictpb.PredictRequest{Model: "claims",
			Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{c.f}}}})
		if status != 400 || !strings.Contains(string(resp), c.want) {
			t.Errorf("protobuf %v: %d %s, want 400 saying %s", c.f, status, resp, c.want)
		}
	}
}

func postProto(t *testing.T, ts *testServer, m proto.Message) (int, []byte) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(ts.base+"/v1/predict", "application/x-protobuf", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}
