package sidecar

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestBadRequests: each bad request gets its status and error code, and the server
// keeps answering good requests afterwards.
func TestBadRequests(t *testing.T) {
	ts := startServer(t, Config{ModelFS: examples.Models(), MaxBodyBytes: 64 << 10, MaxCandidates: 50})
	const js, pb = "application/json", "application/x-protobuf"
	good := `{"model":"claims","candidates":[{"id":"a","features":{"DrivAge":40}}]}`
	mustProto := func(m *predictpb.PredictRequest) string {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	many := `{"model":"claims","rows":[` + strings.Repeat("[1,2,3,4,5,6,7,8,9],", 50) + "[1,2,3,4,5,6,7,8,9]]}"
	huge := `{"model":"claims","candidates":[` + strings.Repeat(`{"id":"x","features":{"DrivAge":40}},`, 3000) + `{}]}`
	bigRows := mustProto(&predictpb.PredictRequest{Model: "claims", Rows: func() []*predictpb.Row {
		rs := make([]*predictpb.Row, 40)
		for i := range rs {
			rs[i] = &predictpb.Row{Values: make([]float64, 9)}
		}
		return rs
	}()})

	f := func(network, ct, body string, status int, code string, hdr ...string) {
		t.Helper()
		gotStatus, resp := ts.post(t, network, "/v1/predict", ct, []byte(body), hdr...)
		gotCode, msg := apiError(t, resp)
		if gotStatus != status || gotCode != code {
			t.Errorf("%.60q: got %d %s (%s), want %d %s", body, gotStatus, gotCode, msg, status, code)
		}
	}
	// Malformed JSON.
	f("tcp", js, ``, 400, "bad_request")
	f("tcp", js, `{`, 400, "bad_request")
	f("tcp", js, `{"model":"claims"`, 400, "bad_request")
	f("tcp", js, `{"model":"claims",}`, 400, "bad_request")
	f("tcp", js, `[1,2]`, 400, "bad_request")
	f("tcp", js, `{"model":"claims"} trailing`, 400, "bad_request")
	f("unix", js, `{"model":"cla\ims"}`, 400, "bad_request")
	f("unix", js, "{\"model\":\"cl\x01aims\"}", 400, "bad_request")
	f("tcp", js, "{\"model\":\"\xff\xfe\"}", 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"DrivAge":01}}]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"DrivAge":1e999}}]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"DrivAge":NaN}}]}`, 400, "bad_request")
	// Wrong types and fields.
	f("tcp", js, `{"model":7}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":{}}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"DrivAge":"40"}}]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"DrivAge":tru}}]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":[40]}]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","rows":[[1,2],[1]]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","rows":[1,2]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[],"rows":[]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","output":"probability"}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","colour":"blue"}`, 400, "bad_request")
	f("tcp", js, `{"candidates":[]}`, 400, "bad_request")
	f("tcp", js, `{"model":"claims","candidates":[{"features":{"Age":40}}]}`, 400, "unknown_feature")
	f("tcp", js, `{"model":"claims","context":{"Age":40},"candidates":[{}]}`, 400, "unknown_feature")
	f("tcp", js, `{"model":"claims","rows":[[1,2,3]]}`, 400, "feature_count")
	// Malformed protobuf.
	f("unix", pb, "\x0a\x05cla", 400, "bad_request")                        // truncated string
	f("unix", pb, "\x0a", 400, "bad_request")                               // tag without value
	f("unix", pb, "\x08\x01", 400, "bad_request")                           // model as a varint
	f("unix", pb, "\x22\x03\x12\x01\x00", 400, "bad_request")               // candidate feature truncated
	f("unix", pb, "\x0a\x06claims\x2a\x03\x0a\x01\x00", 400, "bad_request") // packed row length 1
	f("unix", pb, "\x0a\x06claims\x22\x04\x12\x02\x10\x01", 400, "bad_request")
	f("unix", pb, string(protowire.AppendTag([]byte("\x0a\x06claims"), 9, 7)), 400, "bad_request") // bad wire type
	f("unix", pb, mustProto(&predictpb.PredictRequest{Model: "claims", Output: "probability"}), 400, "bad_request")
	// Unknown model or version.
	f("tcp", js, `{"model":"nope","candidates":[]}`, 404, "unknown_model")
	f("tcp", js, `{"model":"claims","version":"9","candidates":[]}`, 404, "unknown_version")
	f("unix", pb, mustProto(&predictpb.PredictRequest{Model: "claims", Version: "2"}), 404, "unknown_version")
	// Limits.
	f("tcp", js, many, 413, "too_many_candidates")
	if status, body := ts.post(t, "unix", "/v1/predict", pb, []byte(bigRows)); status != 200 {
		t.Errorf("40 rows under a limit of 50: %d %s", status, body)
	}
	f("tcp", js, huge, 413, "body_too_large")
	f("tcp", js, good, 400, "bad_request", "X-Deadline-Ms", "soon")
	f("tcp", js, good, 400, "bad_request", "X-Deadline-Ms", "0")
	f("tcp", "text/csv", good, 415, "unsupported_media_type")
	f("tcp", js, good, 415, "unsupported_media_type", "Content-Encoding", "gzip")
	f("unix", pb, "\x1f\x8b", 415, "unsupported_media_type", "Content-Encoding", "br")
	// Media types compare without regard to case; identity is no encoding.
	for _, ct := range []string{"APPLICATION/JSON", "Application/Json; charset=UTF-8", "Text/Plain"} {
		if status, body := ts.post(t, "tcp", "/v1/predict", ct, []byte(good), "Content-Encoding", "identity"); status != 200 {
			t.Errorf("Content-Type %q: %d %s", ct, status, body)
		}
	}
	if status, body := ts.post(t, "unix", "/v1/predict", "Application/X-Protobuf", []byte(bigRows)); status != 200 {
		t.Errorf("Content-Type Application/X-Protobuf: %d %s", status, body)
	}

	// The server still answers.
	if status, body := ts.post(t, "tcp", "/v1/predict", js, []byte(good)); status != 200 {
		t.Fatalf("good request after bad ones: %d %s", status, body)
	}
}

// TestDeadline: a request whose deadline passes while it is scored gets 504, and the
// rows after the deadline are not scored.
func TestDeadline(t *testing.T) {
	ts := startServer(t, Config{ModelFS: examples.Models()})
	// 100,000 rows × 100 trees: well over the 1 ms deadline on any machine, and over
	// several scoring blocks, so the deadline check between blocks fires.
	const n = 100_000
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "claims")
	row := protowire.AppendTag(nil, 1, protowire.BytesType)
	row = protowire.AppendBytes(row, make([]byte, 9*8))
	for i := 0; i < n; i++ {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, row)
	}
	status, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", b, "X-Deadline-Ms", "1")
	code, msg := apiError(t, resp)
	if status != 504 || code != "deadline_exceeded" {
		t.Fatalf("got %d %s: %s", status, code, msg)
	}
	if !strings.Contains(msg, fmt.Sprintf("of %d rows", n)) {
		t.Errorf("message does not say how far scoring got: %s", msg)
	}
	// With a generous deadline the same request succeeds.
	if status, resp := ts.post(t, "unix", "/v1/predict", "application/x-protobuf", b, "X-Deadline-Ms", "60000"); status != 200 {
		t.Fatalf("with 60s: %d %.200s", status, resp)
	}
}

// TestSlowAndVanishedClients: a client that stops sending mid-request gets 408 when the
// read timeout passes; one that disconnects mid-request costs nothing; a raw protocol
// error gets 400; unknown paths and methods get 404 and 405. The server keeps serving.
func TestSlowAndVanishedClients(t *testing.T) {
	// Long enough that a loaded machine reads every good request in time.
	ts := startServer(t, Config{ModelFS: examples.Models(), ReadTimeout: time.Second})
	head := "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"

	// Slow: half a body, then silence.
	c, err := net.Dial("unix", ts.unix)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, head+`{"model":"claims",`)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("slow client: no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if code, _ := apiError(t, body); resp.StatusCode != 408 || code != "request_timeout" {
		t.Fatalf("slow client: %d %s", resp.StatusCode, body)
	}

	// Vanished: half a request, then close, many times over.
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", ts.tcp)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, head+`{"model":"cl`)
		c.Close()
	}
	// Garbage instead of HTTP.
	c2, err := net.Dial("tcp", ts.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprint(c2, "HELLO\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 400 {
		t.Fatalf("garbage: %v %v", resp, err)
	}

	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/predict", 405, "method_not_allowed"},
		{"POST", "/v1/models", 405, "method_not_allowed"},
		{"GET", "/v1/admin/reload", 405, "method_not_allowed"},
		{"GET", "/v2/predict", 404, "not_found"},
		{"GET", "/v1/models/nope", 404, "unknown_model"},
		{"GET", "/debug/pprof/", 404, "not_found"},
	} {
		hc, base := ts.httpClient("tcp")
		req, _ := http.NewRequest(c.method, base+c.path, bytes.NewReader(nil))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if code, _ := apiError(t, body); resp.StatusCode != c.status || code != c.code {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
	if status, body := ts.post(t, "tcp", "/v1/predict", "application/json",
		[]byte(`{"model":"claims","candidates":[{"id":"a"}]}`)); status != 200 {
		t.Fatalf("after bad clients: %d %s", status, body)
	}
}
