package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/predictd/predictd/api/wire"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protowire"
)

// Target is the sidecar under test, reached over TCP ("127.0.0.1:8080") or a Unix socket
// ("unix:/run/predictd.sock"). It is safe for concurrent use.
type Target struct {
	Addr    string // as given
	network string // "tcp" or "unix"
	address string // host:port or socket path
	hc      *fasthttp.HostClient
}

// NewTarget returns a client for addr for up to maxConns requests at once (the
// generator's max_in_flight, which its own gate enforces). The pool holds a few more
// connections than that: a connection goes back to the pool a moment after its answer
// was handed over, and the gate's next request must not find the pool empty then
// (fasthttp's ErrNoFreeConns, an error of the generator that used to be counted as the
// sidecar's).
func NewTarget(addr string, maxConns int) (*Target, error) {
	t := &Target{Addr: addr}
	switch {
	case strings.HasPrefix(addr, "unix:"):
		t.network, t.address = "unix", strings.TrimPrefix(addr, "unix:")
		if t.address == "" {
			return nil, fmt.Errorf("target %q: want unix:/path/to.sock", addr)
		}
	default:
		a := strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "tcp:")
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("target %q: want HOST:PORT or unix:PATH", addr)
		}
		t.network, t.address = "tcp", a
	}
	host := t.address
	if t.network == "unix" {
		host = "localhost"
	}
	network, address := t.network, t.address
	t.hc = &fasthttp.HostClient{
		Addr: host,
		Dial: func(string) (net.Conn, error) {
			return net.DialTimeout(network, address, 3*time.Second)
		},
		MaxConns:                      maxConns + connSlack,
		MaxConnWaitTimeout:            time.Second,
		MaxIdleConnDuration:           30 * time.Second,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		ReadBufferSize:                64 << 10,
		WriteBufferSize:               64 << 10,
		MaxResponseBodySize:           256 << 20,
	}
	return t, nil
}

// ErrGeneratorNoFreeConns is the error kind of a request the generator could not send:
// no connection of its pool was free.
const ErrGeneratorNoFreeConns = "generator_no_free_conns"

// connSlack is how many connections the pool holds beyond max_in_flight (NewTarget).
const connSlack = 4

// Close closes idle connections.
func (t *Target) Close() { t.hc.CloseIdleConnections() }

// outcome is what one request produced.
type outcome struct {
	kind     string // "" for success, else an error kind (see classify)
	degraded bool   // the response carried degraded: true
}

// Do sends one POST /v1/predict and classifies the answer.
func (t *Target) predict(body []byte, contentType string, timeout time.Duration) outcome {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/predict")
	req.Header.SetHost(t.hc.Addr)
	req.Header.SetContentType(contentType)
	req.Header.Set("Accept", contentType)
	req.SetBodyRaw(body)
	err := t.hc.DoTimeout(req, resp, timeout)
	if err != nil {
		return outcome{kind: classifyError(err)}
	}
	return responseOutcome(resp.StatusCode(), string(resp.Header.ContentType()), resp.Body())
}

// responseOutcome classifies an HTTP answer: 2xx is success (noting degraded), anything
// else is "http_<status>" plus "/<code>" when the body is the sidecar's error form.
func responseOutcome(status int, contentType string, body []byte) outcome {
	if status >= 200 && status < 300 {
		return outcome{degraded: isDegraded(contentType, body)}
	}
	kind := fmt.Sprintf("http_%d", status)
	if code := errorCode(contentType, body); code != "" {
		kind += "/" + code
	}
	return outcome{kind: kind}
}

// classifyError names a transport error: "timeout", "connection" (refused, reset, closed
// before answering) or "other: <message>".
func classifyError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return ErrGeneratorNoFreeConns
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ENOENT), errors.As(err, new(*net.OpError)):
		return "connection"
	}
	return "other"
}

// maxErrorCodeLen bounds the error code copied into a kind, so a misbehaving server
// cannot blow up the error map.
const maxErrorCodeLen = 64

// errorCode extracts error.code from {"error":{"code":...}} (JSON) or an ErrorResponse
// (protobuf). It returns "" when the body is neither.
func errorCode(contentType string, body []byte) string {
	var code string
	if strings.Contains(contentType, "protobuf") {
		code = protoErrorCode(body)
	} else {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			code = e.Error.Code
		}
	}
	return sanitizeCode(code)
}

func sanitizeCode(code string) string {
	if len(code) > maxErrorCodeLen {
		code = code[:maxErrorCodeLen]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, code)
}

// protoErrorCode reads ErrorResponse{error: Error{code}} with protowire: 3–4× faster
// than proto.Unmarshal (BenchmarkDecodeResponse).
func protoErrorCode(b []byte) string {
	errMsg := protoField(b, wire.ErrorResponseError)
	if errMsg == nil {
		return ""
	}
	return string(protoField(errMsg, wire.ErrorCode))
}

// protoField returns the first length-delimited field num of message b, or nil.
func protoField(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil
			}
			return v
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil
		}
		b = b[l:]
	}
	return nil
}

var degradedJSON = []byte(`"degraded":true`)

// isDegraded reports whether a PredictResponse has degraded set: field
// wire.ResponseDegraded in protobuf, read without decoding the predictions (over 10×
// faster than proto.Unmarshal, BenchmarkDecodeResponse), or "degraded":true in JSON (the
// sidecar writes compact JSON, and a quote inside a JSON string is escaped, so the text
// cannot come from an id).
func isDegraded(contentType string, b []byte) bool {
	if !strings.Contains(contentType, "protobuf") {
		return bytes.Contains(b, degradedJSON)
	}
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		if n == wire.ResponseDegraded && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(b)
			return l > 0 && v != 0
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return false
		}
		b = b[l:]
	}
	return false
}

// get performs a GET and returns status and body.
func (t *Target) get(path string, timeout time.Duration) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(path)
	req.Header.SetHost(t.hc.Addr)
	if err := t.hc.DoTimeout(req, resp, timeout); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// getContext is get over net/http, so ctx can cancel it (fasthttp cannot): for long
// requests such as a CPU profile.
func (t *Target) getContext(ctx context.Context, path string, timeout time.Duration) (int, []byte, error) {
	network, address := t.network, t.address
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, address)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.hc.Addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	return resp.StatusCode, body, err
}

// firstModel returns the first model name listed by GET /v1/models. It accepts a top-level
// array or an object holding one ("models"), with items that are names or objects with a
// "name".
func (t *Target) firstModel() (string, error) {
	status, body, err := t.get("/v1/models", 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("GET /v1/models: %w", err)
	}
	if status != 200 {
		return "", fmt.Errorf("GET /v1/models: HTTP %d: %.200s", status, body)
	}
	names := modelNames(body)
	if len(names) == 0 {
		return "", fmt.Errorf("GET /v1/models lists no model: %.200s", body)
	}
	return names[0], nil
}

func modelNames(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	case map[string]any:
		if l, ok := x["models"].([]any); ok {
			list = l
		}
	}
	var names []string
	for _, it := range list {
		switch m := it.(type) {
		case string:
			if m != "" {
				names = append(names, m)
			}
		case map[string]any:
			if n, ok := m["name"].(string); ok && n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// modelFeatures returns the request features of a model from GET /v1/models/{name}: the
// first "features" list found (depth first), with items that are names or objects with a
// "name". Feature-store features (objects with a "group") are skipped: the sidecar fetches
// them itself.
func (t *Target) modelFeatures(model string) ([]string, error) {
	status, body, err := t.get("/v1/models/"+model, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/models/%s: %w", model, err)
	}
	if status != 200 {
		return nil, fmt.Errorf("GET /v1/models/%s: HTTP %d: %.200s", model, status, body)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("GET /v1/models/%s: %v", model, err)
	}
	names, ok := findFeatures(v)
	if !ok {
		return nil, fmt.Errorf("GET /v1/models/%s: no \"features\" list in %.200s", model, body)
	}
	return names, nil
}

func findFeatures(v any) ([]string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if l, ok := x["features"].([]any); ok {
			var names []string
			for _, it := range l {
				switch f := it.(type) {
				case string:
					names = append(names, f)
				case map[string]any:
					if _, fromStore := f["group"]; fromStore {
						continue
					}
					if n, ok := f["name"].(string); ok {
						names = append(names, n)
					}
				}
			}
			return names, true
		}
		for _, k := range []string{"versions", "model", "serving"} {
			if sub, ok := x[k]; ok {
				if names, ok := findFeatures(sub); ok {
					return names, true
				}
			}
		}
	case []any:
		for _, it := range x {
			if names, ok := findFeatures(it); ok {
				return names, true
			}
		}
	}
	return nil, false
}
