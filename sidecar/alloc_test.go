//go:build !race

package sidecar

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/examples"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"
)

// allocsPerRequest runs body through the handler (no network) and returns the average
// allocations per request once the pools are warm.
func allocsPerRequest(t *testing.T, s *Server, contentType string, body []byte) float64 {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	ctx.Init(&req, nil, nil)
	run := func() {
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/predict")
		ctx.Request.Header.SetContentType(contentType)
		ctx.Request.SetBody(body)
		ctx.Response.Reset()
		s.handle(&ctx)
		if sc := ctx.Response.StatusCode(); sc != 200 {
			t.Fatalf("status %d: %s", sc, ctx.Response.Body())
		}
	}
	for i := 0; i < 10; i++ {
		run()
	}
	// A collection empties sync.Pools, and refilling them is not per-request work:
	// measure with the collector off.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	return testing.AllocsPerRun(30, run)
}

// TestAllocsIndependentOfCandidates: a warm server serves a prediction without
// allocating, at 10 and at 1,000 candidates, for JSON and protobuf, candidates and
// dense rows (so allocations cannot grow with the number of candidates either).
//
// Every request is scored on its own thread (BackgroundAfter < 0): on a loaded machine
// the 1,000-row request would otherwise pass the 1 ms cost threshold some of the time and
// be handed to the background threads, whose path this test does not cover.
func TestAllocsIndependentOfCandidates(t *testing.T) {
	s, err := New(Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler), BackgroundAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Reload()
	m := claimsEngine(t)
	names := m.FeatureNames()
	for _, form := range []string{"json-candidates", "json-rows", "proto-candidates", "proto-rows"} {
		var allocs [2]float64
		for i, n := range []int{10, 1000} {
			rows := randomRows(m, n, 1)
			var body []byte
			ct := "application/json"
			switch form {
			case "json-candidates", "json-rows":
				body = jsonRequest("claims", "", "", names, rows, form == "json-rows")
			default:
				body, err = proto.Marshal(protoRequest("claims", "", names, rows, form == "proto-rows"))
				if err != nil {
					t.Fatal(err)
				}
				ct = "application/x-protobuf"
			}
			allocs[i] = allocsPerRequest(t, s, ct, body)
		}
		t.Logf("%s: %.0f allocs at 10 candidates, %.0f at 1,000", form, allocs[0], allocs[1])
		if allocs[0] != 0 || allocs[1] != 0 {
			t.Errorf("%s: %.0f allocs at 10 candidates, %.0f at 1,000; want 0 and 0", form, allocs[0], allocs[1])
		}
	}
}

// TestAllocsWithAdmission: with admission control on, a served request (its slot taken
// before decoding, as peekModel allows, or after it when the body does not name the model
// first) still allocates nothing. On its own thread, as above.
func TestAllocsWithAdmission(t *testing.T) {
	s, err := New(Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler), AdmissionCapacity: 2,
		BackgroundAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Reload()
	m := claimsEngine(t)
	names := m.FeatureNames()
	rows := randomRows(m, 200, 1)
	pb, err := proto.Marshal(protoRequest("claims", "", names, rows, false))
	if err != nil {
		t.Fatal(err)
	}
	js := jsonRequest("claims", "", "", names, rows, false)
	// The same request with the model named last: admitted after decoding.
	late := append([]byte(`{"candidates"`), js[bytes.Index(js, []byte(`:[`)):len(js)-1]...)
	late = append(late, `,"model":"claims"}`...)
	for _, c := range []struct {
		name, ct string
		body     []byte
	}{{"proto", "application/x-protobuf", pb}, {"json", "application/json", js}, {"json-model-last", "application/json", late}} {
		if n := allocsPerRequest(t, s, c.ct, c.body); n != 0 {
			t.Errorf("%s: %.0f allocs, want 0", c.name, n)
		}
	}
}

// TestAllocsNamedLayouts: named candidates allocate nothing whichever way the learned
// layout meets them: every candidate in one order, features left out, each candidate in
// another order, with context, in JSON and protobuf, at 10 and 1,000 candidates (on its
// own thread, as above).
func TestAllocsNamedLayouts(t *testing.T) {
	s, err := New(Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler), BackgroundAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Reload()
	m := claimsEngine(t)
	names := m.FeatureNames()
	for _, shape := range []string{"one-order", "omitted", "rotated", "context"} {
		for _, n := range []int{10, 1000} {
			rows := randomRows(m, n, 2)
			req := &predictpb.PredictRequest{Model: "claims"}
			for i := range n {
				c := &predictpb.Candidate{}
				for j := range names {
					k := j
					if shape == "rotated" {
						k = (j + i) % len(names)
					}
					if shape == "omitted" && (i+j)%4 == 0 || shape == "context" && k == 0 {
						continue
					}
					c.Features = append(c.Features, &predictpb.Feature{Name: names[k], Value: proto.Float64(rows[i*len(names)+k])})
				}
				req.Candidates = append(req.Candidates, c)
			}
			if shape == "context" {
				req.Context = []*predictpb.Feature{{Name: names[0], Value: proto.Float64(1)}}
			}
			pb, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			js := []byte(`{"model":"claims"`)
			if shape == "context" {
				js = fmt.Appendf(js, `,"context":{%q:1}`, names[0])
			}
			js = append(js, `,"candidates":[`...)
			for i, c := range req.Candidates {
				if i > 0 {
					js = append(js, ',')
				}
				js = append(js, `{"features":{`...)
				for j, f := range c.Features {
					if j > 0 {
						js = append(js, ',')
					}
					js = fmt.Appendf(js, "%q:%s", f.GetName(), jsonNumber(f.GetValue()))
				}
				js = append(js, "}}"...)
			}
			js = append(js, "]}"...)
			if a := allocsPerRequest(t, s, "application/x-protobuf", pb); a != 0 {
				t.Errorf("%s, %d candidates, protobuf: %.0f allocs, want 0", shape, n, a)
			}
			if a := allocsPerRequest(t, s, "application/json", js); a != 0 {
				t.Errorf("%s, %d candidates, JSON: %.0f allocs, want 0", shape, n, a)
			}
		}
	}
}

// jsonNumber writes x for a JSON body: null for NaN.
func jsonNumber(x float64) string {
	if math.IsNaN(x) {
		return "null"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}
