package sidecar

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/predictd/predictd/examples"
)

// TestByteBudget: a request the byte budget cannot cover now gets 503 busy with
// Retry-After, naming --max-inflight-bytes, and is counted; once the bytes are returned
// it is served; a request that needs more than the whole budget gets 413; and every
// request, served or failed, returns all it took.
func TestByteBudget(t *testing.T) {
	const capacity = 1 << 20
	ts := startServer(t, Config{ModelFS: examples.Models(), MaxInflightBytes: capacity})
	m := claimsEngine(t)
	body := jsonRequest("claims", "", "", m.FeatureNames(), randomRows(m, 50, 1), false)
	post := func(body []byte) (*http.Response, string, string) {
		t.Helper()
		resp, err := http.Post("http://"+ts.tcp+"/v1/predict", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		code, msg := "", ""
		if resp.StatusCode != 200 {
			code, msg = apiError(t, b.Bytes())
		}
		return resp, code, msg
	}
	idle := func(when string) {
		t.Helper()
		if n := ts.bytes.used.Load(); n != 0 {
			t.Errorf("%s: %d bytes still taken, want 0", when, n)
		}
	}

	if resp, code, msg := post(body); resp.StatusCode != 200 {
		t.Fatalf("with the budget free: %d %s %s", resp.StatusCode, code, msg)
	}
	idle("after a served request")

	// Other requests hold all but a few bytes.
	if err := ts.bytes.acquire(capacity-100, 0, "a test"); err != nil {
		t.Fatal(err)
	}
	resp, code, msg := post(body)
	if resp.StatusCode != 503 || code != "busy" || resp.Header.Get("Retry-After") == "" || !strings.Contains(msg, "--max-inflight-bytes") {
		t.Errorf("budget taken: %d %s Retry-After %q %q, want 503 busy with Retry-After naming --max-inflight-bytes",
			resp.StatusCode, code, resp.Header.Get("Retry-After"), msg)
	}
	_, metrics := ts.get(t, "/metrics")
	if !bytes.Contains(metrics, []byte("predictd_inflight_bytes_rejected_total 1")) {
		t.Errorf("/metrics does not count the rejection:\n%s", metrics)
	}
	ts.bytes.release(capacity - 100)
	idle("after a rejected request")
	if resp, code, msg := post(body); resp.StatusCode != 200 {
		t.Errorf("budget returned: %d %s %s, want 200", resp.StatusCode, code, msg)
	}

	// A body whose decoding alone needs more than the budget.
	big := append(body[:len(body)-1:len(body)-1], []byte(`,"context":{}`+strings.Repeat(" ", capacity/2)+`}`)...)
	resp, code, msg = post(big)
	if resp.StatusCode != 413 || code != "too_many_cells" || !strings.Contains(msg, "--max-inflight-bytes") {
		t.Errorf("a body over the budget: %d %s %q, want 413 too_many_cells naming --max-inflight-bytes", resp.StatusCode, code, msg)
	}
	// A request whose matrix alone needs more than the budget: empty candidates, a few
	// bytes each in the body, a row of the model's features each in the matrix.
	n := capacity/(8*m.NumFeatures()) + 1
	many := []byte(`{"model":"claims","candidates":[{}` + strings.Repeat(`,{}`, n-1) + `]}`)
	resp, code, msg = post(many)
	if resp.StatusCode != 413 || code != "too_many_cells" || !strings.Contains(msg, "matrix") {
		t.Errorf("a matrix over the budget: %d %s %q, want 413 too_many_cells for the matrix", resp.StatusCode, code, msg)
	}
	idle("after the failed requests")
}
