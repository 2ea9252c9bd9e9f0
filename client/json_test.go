package client

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
)

// TestRequestJSONModelFirst: JSON bodies name the model first, so the sidecar can admit or
// reject them before decoding (its peekModel), and they carry every field.
func TestRequestJSONModelFirst(t *testing.T) {
	v := 1.5
	in := &predictpb.PredictRequest{
		Model: "ctr", Version: "3", Output: "raw",
		Keys:       []*predictpb.Key{{Name: "user", Value: "u1"}},
		Candidates: []*predictpb.Candidate{{Id: "a", Features: []*predictpb.Feature{{Name: "x", Value: &v}}}},
	}
	body, err := requestJSON(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(body), `{"model":"ctr",`) {
		t.Fatalf("body does not start with the model: %s", body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"model", "version", "output", "keys", "candidates"} {
		if _, ok := got[k]; !ok {
			t.Errorf("field %q missing: %s", k, body)
		}
	}
	if _, ok := got["rows"]; ok {
		t.Errorf("empty rows written: %s", body)
	}
}

// TestRequestJSONValues: names are escaped, an unset value and NaN are null (missing),
// rows and keys come through, and ±Inf, which JSON cannot carry, is an error.
func TestRequestJSONValues(t *testing.T) {
	v, nan := 0.25, math.NaN()
	in := &predictpb.PredictRequest{
		Model:   "m\"1",
		Context: []*predictpb.Feature{{Name: "hour", Value: &v}, {Name: "gone"}, {Name: "nan", Value: &nan}},
		Keys:    []*predictpb.Key{{Name: "user\n", Value: "ü1"}},
		Rows:    []*predictpb.Row{{Values: []float64{1, nan, -2.5e-7}}},
	}
	body, err := requestJSON([]byte("kept"), in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `kept{"model":"m\"1","context":{"hour":0.25,"gone":null,"nan":null},"keys":{"user\n":"ü1"},"rows":[[1,null,-2.5e-07]]}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	if !json.Valid(body[len("kept"):]) {
		t.Fatalf("invalid JSON: %s", body)
	}
	inf := math.Inf(1)
	for _, in := range []*predictpb.PredictRequest{
		{Model: "m", Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{{Name: "x", Value: &inf}}}}},
		{Model: "m", Rows: []*predictpb.Row{{Values: []float64{1, math.Inf(-1)}}}},
	} {
		if _, err := requestJSON(nil, in); err == nil || !strings.Contains(err.Error(), "Inf") {
			t.Errorf("%v: got %v, want an error about Inf", in, err)
		}
	}
}

// TestRequestJSONVectors: a feature's values (a vector sent whole) are a JSON array with
// NaN as null; a feature with both a value and values, or an infinite element, is an
// error.
func TestRequestJSONVectors(t *testing.T) {
	nan, one := math.NaN(), 1.0
	in := &predictpb.PredictRequest{
		Model:      "m",
		Context:    []*predictpb.Feature{{Name: "u", Values: []float64{0.5, nan}}},
		Candidates: []*predictpb.Candidate{{Id: "a", Features: []*predictpb.Feature{{Name: "emb", Values: []float64{-1, 2e-9, 3}}, {Name: "x", Value: &one}}}},
	}
	body, err := requestJSON(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"model":"m","context":{"u":[0.5,null]},"candidates":[{"id":"a","features":{"emb":[-1,2e-09,3],"x":1}}]}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	for _, f := range []*predictpb.Feature{{Name: "e", Value: &one, Values: []float64{1}}, {Name: "e", Values: []float64{1, math.Inf(1)}}} {
		in := &predictpb.PredictRequest{Model: "m", Context: []*predictpb.Feature{f}}
		if _, err := requestJSON(nil, in); err == nil || !strings.Contains(err.Error(), `"e"`) {
			t.Errorf("%v: got %v, want an error naming the feature", f, err)
		}
	}
}

// TestRequestJSONLabels: a feature's label (a category label) is a JSON string; a
// feature with both a value and a label is an error.
func TestRequestJSONLabels(t *testing.T) {
	one := 1.0
	in := &predictpb.PredictRequest{
		Model:      "m",
		Context:    []*predictpb.Feature{{Name: "region", Label: "R\"24"}},
		Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{{Name: "gas", Label: "Diesel"}, {Name: "x", Value: &one}}}},
	}
	body, err := requestJSON(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"model":"m","context":{"region":"R\"24"},"candidates":[{"id":"","features":{"gas":"Diesel","x":1}}]}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	in.Context[0].Value = &one
	if _, err := requestJSON(nil, in); err == nil || !strings.Contains(err.Error(), `"region"`) {
		t.Errorf("value and label: got %v, want an error naming the feature", err)
	}
}
