package client

import (
	"encoding/json"
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
	body, err := requestJSON(in)
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
