package portal

import (
	"strings"
	"testing"

	"github.com/predictd/predictd/sidecar"
)

// TestTryFormBody: the try form sends numbers as numbers, true/false as booleans, and
// other text as a category label only for a feature that takes labels.
func TestTryFormBody(t *testing.T) {
	d := &tryPage{Model: sidecar.ModelStatus{Name: "m"}, Request: []field{
		{Name: "a", Value: "1.5"}, {Name: "b", Value: "true"}, {Name: "region", Value: "R24", Labels: 22}, {Name: "c"},
	}}
	body, err := d.formBody()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"m","candidates":[{"features":{"a":1.5,"b":true,"region":"R24"}}]}`; string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
	d.Request[0].Value = "big"
	if _, err := d.formBody(); err == nil || !strings.Contains(err.Error(), "feature a") {
		t.Errorf("text for a feature without labels: %v", err)
	}
}
