package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protowire"
)

func protoErrorBody(code string) []byte {
	var e []byte
	e = protowire.AppendTag(e, 1, protowire.BytesType)
	e = protowire.AppendString(e, code)
	e = protowire.AppendTag(e, 2, protowire.BytesType)
	e = protowire.AppendString(e, "message")
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, e)
}

func protoDegradedBody(degraded bool) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "m")
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte{0x11, 0, 0, 0, 0, 0, 0, 0, 0}) // score = 0
	if degraded {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

func TestResponseOutcome(t *testing.T) {
	f := func(status int, ct string, body []byte, want outcome) {
		t.Helper()
		if got := responseOutcome(status, ct, body); got != want {
			t.Errorf("responseOutcome(%d, %q, %q) = %+v, want %+v", status, ct, body, got, want)
		}
	}
	f(200, "application/json", []byte(`{"predictions":[]}`), outcome{})
	f(200, "application/json", []byte(`{"predictions":[],"degraded":true}`), outcome{degraded: true})
	f(200, "application/x-protobuf", protoDegradedBody(true), outcome{degraded: true})
	f(200, "application/x-protobuf", protoDegradedBody(false), outcome{})
	f(429, "application/json", []byte(`{"error":{"code":"overloaded","message":"m"}}`), outcome{kind: "http_429/overloaded"})
	f(400, "application/x-protobuf", protoErrorBody("bad_request"), outcome{kind: "http_400/bad_request"})
	f(500, "text/plain", []byte("oops"), outcome{kind: "http_500"})
	f(404, "application/json", []byte(`{"error":{"code":"a b/c"}}`), outcome{kind: "http_404/a_b_c"})
}

func TestClassifyError(t *testing.T) {
	f := func(err error, want string) {
		t.Helper()
		if got := classifyError(err); got != want {
			t.Errorf("classifyError(%v) = %q, want %q", err, got, want)
		}
	}
	f(fasthttp.ErrTimeout, "timeout")
	f(fasthttp.ErrNoFreeConns, "generator_no_free_conns")
	f(fasthttp.ErrConnectionClosed, "connection")
	f(fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection")
	f(io.EOF, "connection")
	f(errors.New("weird"), "other")
}

func TestNewTarget(t *testing.T) {
	for _, bad := range []string{"", "unix:", "localhost", "http://x"} {
		if _, err := NewTarget(bad, 1); err == nil {
			t.Errorf("NewTarget(%q) accepted", bad)
		}
	}
	for _, good := range []string{"127.0.0.1:8080", "unix:/tmp/x.sock", "http://[::1]:80", "tcp:localhost:1"} {
		if _, err := NewTarget(good, 1); err != nil {
			t.Errorf("NewTarget(%q): %v", good, err)
		}
	}
}

func TestModelDiscovery(t *testing.T) {
	f := func(body string, want []string) {
		t.Helper()
		if got := modelNames([]byte(body)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("modelNames(%s) = %v, want %v", body, got, want)
		}
	}
	f(`{"models":[{"name":"a"},{"name":"b"}]}`, []string{"a", "b"})
	f(`[{"name":"a"}]`, []string{"a"})
	f(`["x","y"]`, []string{"x", "y"})
	f(`{"models":{}}`, nil)
	f(`nope`, nil)
	g := func(body string, want []string, wantOK bool) {
		t.Helper()
		var v any
		if err := jsonUnmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		got, ok := findFeatures(v)
		if ok != wantOK || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("findFeatures(%s) = %v %v, want %v %v", body, got, ok, want, wantOK)
		}
	}
	g(`{"features":["a","b"]}`, []string{"a", "b"}, true)
	g(`{"name":"m","versions":[{"features":[{"name":"a"},{"name":"s","group":"g","key":"k"}]}]}`, []string{"a"}, true)
	g(`{"name":"m"}`, nil, false)
}

func FuzzResponseOutcome(f *testing.F) {
	f.Add(400, "application/x-protobuf", protoErrorBody("x"))
	f.Add(200, "application/x-protobuf", protoDegradedBody(true))
	f.Add(503, "application/json", []byte(`{"error":{"code":"overloaded"}}`))
	f.Add(200, "application/json", []byte(`{"degraded":true}`))
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		o := responseOutcome(status, ct, body)
		if (status >= 200 && status < 300) != (o.kind == "") {
			t.Fatalf("status %d gave kind %q", status, o.kind)
		}
		if len(o.kind) > len("http_-9223372036854775808/")+maxErrorCodeLen {
			t.Fatalf("kind too long: %q", o.kind)
		}
	})
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// FuzzModelDiscovery: GET /v1/models and /v1/models/{name} bodies from a sidecar never
// panic the discovery of models and features.
func FuzzModelDiscovery(f *testing.F) {
	f.Add([]byte(`{"models":[{"name":"a","versions":[{"features":["x",{"name":"y"}]}]}]}`))
	f.Add([]byte(`[["a"],{"name":1},null]`))
	f.Add([]byte(`["",{"name":""}]`)) // CI found "" as a bare name (2026-11-26)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, n := range modelNames(body) {
			if n == "" {
				t.Fatal("empty model name")
			}
		}
		var v any
		if json.Unmarshal(body, &v) == nil {
			_, _ = findFeatures(v)
		}
	})
}
