package loadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
	"google.golang.org/protobuf/encoding/protowire"
)

// testServer is a real HTTP server over loopback TCP and a Unix socket that answers POST
// /v1/predict after an injected delay. It counts candidates so tests can check what
// arrived, and serves /v1/models and real pprof handlers like the sidecar.
type testServer struct {
	tcp, unix string // targets: "127.0.0.1:port", "unix:/path"
	// delay returns how long to hold the request that arrived at now.
	delay      func(now time.Time) time.Duration
	status     int  // answer status for predict; 0 means 200
	noDecode   bool // skip decoding bodies (benchmarks of the generator's own limit)
	requests   atomic.Int64
	candidates atomic.Int64
	badBodies  atomic.Int64
	srv        *fasthttp.Server

	mu   sync.Mutex
	held *hdrhistogram.Histogram // how long each predict request was actually held, µs

}

func startTestServer(t testing.TB, delay func(time.Time) time.Duration) *testServer {
	t.Helper()
	ts := &testServer{delay: delay, held: newHist()}
	ts.srv = &fasthttp.Server{Handler: ts.handle, Concurrency: 1 << 20}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "t.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ts.tcp, ts.unix = ln.Addr().String(), "unix:"+sock
	go ts.srv.Serve(ln)
	go ts.srv.Serve(uln)
	t.Cleanup(func() { _ = ts.srv.Shutdown() })
	return ts
}

func (ts *testServer) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch {
	case path == "/v1/predict":
		start := time.Now()
		ts.requests.Add(1)
		n, ok := 0, true
		if !ts.noDecode {
			n, ok = countCandidates(string(ctx.Request.Header.ContentType()), ctx.PostBody())
		}
		if !ok {
			ts.badBodies.Add(1)
		}
		ts.candidates.Add(int64(n))
		if ts.delay != nil {
			if d := ts.delay(start); d > 0 {
				time.Sleep(d)
			}
		}
		ts.mu.Lock()
		_ = ts.held.RecordValue(max(time.Since(start).Microseconds(), 1))
		ts.mu.Unlock()
		if ts.status != 0 && ts.status != 200 {
			ctx.SetStatusCode(ts.status)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"code":"overloaded","message":"injected"}}`)
			return
		}
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"model":"m","version":"1","predictions":[],"n":%d}`, n)
	case path == "/metrics":
		// Like the sidecar's feature-store miss counter: one miss per two candidates.
		ctx.SetContentType("text/plain; version=0.0.4")
		fmt.Fprintf(ctx, "# HELP predictd_features_cache_misses_total Entity lookups that went to the backend.\n"+
			"# TYPE predictd_features_cache_misses_total counter\n"+
			"predictd_features_cache_misses_total{group=\"a\",otel_scope_name=\"predictd\"} %d\n"+
			"predictd_features_cache_misses_total{group=\"b\"} 0\n"+
			"predictd_features_cache_misses_bytes 12345\n", ts.candidates.Load()/2)
	case path == "/v1/models":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"models":[{"name":"demo","versions":[{"version":"1"}]}]}`)
	case path == "/v1/models/demo":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"name":"demo","versions":[{"version":"1","features":["a","b",{"name":"c"},{"name":"s","group":"store"}]}]}`)
	case strings.HasPrefix(path, "/debug/pprof"):
		pprofhandler.PprofHandler(ctx)
	default:
		ctx.SetStatusCode(404)
	}
}

// countCandidates decodes just enough of a request to count its candidates or rows.
func countCandidates(contentType string, body []byte) (int, bool) {
	if strings.Contains(contentType, "json") {
		var req struct {
			Model      string            `json:"model"`
			Candidates []json.RawMessage `json:"candidates"`
			Rows       [][]*float64      `json:"rows"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&req); err != nil || req.Model == "" {
			return 0, false
		}
		return len(req.Candidates) + len(req.Rows), true
	}
	n := 0
	for len(body) > 0 {
		num, typ, l := protowire.ConsumeTag(body)
		if l < 0 {
			return n, false
		}
		body = body[l:]
		if (num == 4 || num == 5) && typ == protowire.BytesType {
			n++
		}
		l = protowire.ConsumeFieldValue(num, typ, body)
		if l < 0 {
			return n, false
		}
		body = body[l:]
	}
	return n, true
}

// fixedDelay injects the same delay into every request.
func fixedDelay(d time.Duration) func(time.Time) time.Duration {
	return func(time.Time) time.Duration { return d }
}

// stallingDelay adds base to every request and freezes the server for stall out of every
// period: a request arriving inside a stall is held until the stall ends.
func stallingDelay(epoch time.Time, base, stall, period time.Duration) func(time.Time) time.Duration {
	return func(now time.Time) time.Duration {
		in := now.Sub(epoch) % period
		if in < stall {
			return stall - in + base
		}
		return base
	}
}
