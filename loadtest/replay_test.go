package loadtest

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/sidecar/predlog"
)

func TestReadBodies(t *testing.T) {
	in := `{"model":"m","candidates":[{"id":"a"},{"id":"b"}]}

{"model":"m","rows":[[1,2],[3,null],[5,6]]}
`
	bs, err := ReadBodies(strings.NewReader(in), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Candidates != 2 || bs[1].Candidates != 3 || string(bs[1].Data) != `{"model":"m","rows":[[1,2],[3,null],[5,6]]}` {
		t.Errorf("bodies %+v", bs)
	}
	if bs, _ := ReadBodies(strings.NewReader(in), 1); len(bs) != 1 {
		t.Errorf("limit 1: %d bodies", len(bs))
	}
	for _, bad := range []string{"", "{", `{"candidates":[{}]}`, `{"model":"m"}`, `{"model":"m","rows":3}`} {
		if _, err := ReadBodies(strings.NewReader(bad), 10); err == nil {
			t.Errorf("ReadBodies(%q) accepted", bad)
		}
	}
}

const predLogSample = `{"header":{"model":"ctr","version":"3","features":["age","price"]}}
{"ts":"2026-11-26T02:30:00.1Z","request_id":"r-1","model":"ctr","version":"3","ids":["a","b"],"features":[[31,9.5],[null,"+Inf"]],"predictions":[0.1,0.2]}
{"ts":"2026-11-26T02:30:00.1Z","request_id":"r-1","model":"ctr2","version":"1","shadow_of":"ctr@3","features":[[31,9.5],[null,"+Inf"]],"predictions":[0.1,0.2]}
{"header":{"model":"ctr","version":"4","features":["age"]}}
{"ts":"2026-11-26T02:30:00.3Z","request_id":"r-2","model":"ctr","version":"4","features":[["-Inf"]],"predictions":[0.3]}
`

func TestReadPredLog(t *testing.T) {
	reqs, err := ReadPredLog(strings.NewReader(predLogSample), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (the shadow's record is a copy)", len(reqs))
	}
	r0, r1 := reqs[0], reqs[1]
	if r0.Model != "ctr" || r0.Version != "3" || len(r0.Rows) != 2 || r0.Rows[0][1] != 9.5 || !math.IsNaN(r0.Rows[1][0]) ||
		!math.IsInf(r0.Rows[1][1], 1) || strings.Join(r0.IDs, ",") != "a,b" || strings.Join(r0.Features, ",") != "age,price" {
		t.Errorf("first: %+v", r0)
	}
	if r1.Version != "4" || len(r1.Features) != 1 || !math.IsInf(r1.Rows[0][0], -1) || r1.At.Sub(r0.At) != 200*time.Millisecond {
		t.Errorf("second: %+v", r1)
	}
	for _, bad := range []string{
		`{"ts":"2026-11-26T02:30:00Z","model":"m","features":[[1]]}`, // no header
		`{"header":{"model":"m","features":["a","b"]}}` + "\n" + `{"model":"m","features":[[1]]}`,
		`{"header":{"model":"m","features":["a"]}}` + "\n" + `{"model":"m","ids":["x","y"],"features":[[1]]}`,
		`{"header":{"model":"m","features":["a"]}}` + "\n" + `{"model":"m","features":[["x"]]}`,
		`{"header":{"model":"m","features":["a"]}}` + "\n" + `{"model":"m","features":[]}`,
		`[`,
	} {
		if _, err := ReadPredLog(strings.NewReader(bad), 10); err == nil {
			t.Errorf("ReadPredLog(%q) accepted", bad)
		}
	}
}

// writePredLog writes n logged requests with the sidecar's own prediction-log writer:
// k candidates of two features each, the i-th at start + gap(i).
func writePredLog(t *testing.T, dir string, n, k int, at func(i int) time.Duration) {
	t.Helper()
	lg, err := predlog.New(predlog.Config{Dir: dir, Prefix: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC)
	names := []string{"a", "b"}
	for i := range n {
		rec := lg.Sample()
		rec.Time = start.Add(at(i))
		rec.Model, rec.Version, rec.FeatureNames = "demo", "1", names
		rows := make([]float64, 2*k)
		for j := range rows {
			rows[j] = float64(i + j)
		}
		rows[1] = math.NaN()
		rec.SetRows(rows, k, 2)
		rec.SetPredictions(make([]float64, k), 1)
		for c := range k {
			rec.AddID("id" + string(rune('a'+c)))
		}
		if !lg.Log(rec) {
			t.Fatal("record dropped")
		}
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReplayPredLog: requests rebuilt from the sidecar's own prediction logs reach a
// real server whole (every candidate), as dense rows over protobuf and as named
// candidates over JSON, and with recorded timing keep the log's bursts: requests logged
// in pairs 1ms apart every 100ms are sent in pairs at any rate.
func TestReplayPredLog(t *testing.T) {
	dir := t.TempDir()
	// Pairs: request 2j at 100j ms, 2j+1 one millisecond later.
	writePredLog(t, dir, 40, 3, func(i int) time.Duration {
		return time.Duration(i/2)*100*time.Millisecond + time.Duration(i%2)*time.Millisecond
	})
	for _, c := range []struct{ protocol, named string }{{"protobuf", "false"}, {"json", "true"}} {
		eventually(t, func(ck *checker) {
			var mu = make(chan struct{}, 1)
			var arrivals []time.Time
			ts := startTestServer(t, func(now time.Time) time.Duration {
				mu <- struct{}{}
				arrivals = append(arrivals, now)
				<-mu
				return 0
			})
			sc := testScenario(t, `
name: replay
protocol: `+c.protocol+`
warmup: 100ms
window: 500ms
steps: [{rate: 40, duration: 2100ms}]
workloads: [{model: auto, replay: {predlog: `+dir+`, named: `+c.named+`, timing: recorded}}]
`)
			res, _ := runTest(t, context.Background(), sc, ts.tcp)
			if ts.badBodies.Load() != 0 {
				ck.Errorf("%s: %d bodies the server could not decode", c.protocol, ts.badBodies.Load())
			}
			if got, want := ts.candidates.Load(), 3*ts.requests.Load(); got != want || want == 0 {
				ck.Errorf("%s: %d candidates in %d requests, want 3 each", c.protocol, got, ts.requests.Load())
			}
			st := res.Steps[0]
			if !within(st.AchievedRPS, 40, 0.15, 0) || st.PredictionsPerSec < 100 {
				ck.Errorf("%s: achieved %.1f/s (want 40), %.0f predictions/s", c.protocol, st.AchievedRPS, st.PredictionsPerSec)
			}
			// At 40/s the log's 10/s is sped up 4×: pairs 0.25ms apart every 25ms.
			// Most gaps are then either short (< 8ms) or long (> 15ms), none in between.
			mu <- struct{}{}
			short, long := 0, 0
			for i := 1; i < len(arrivals); i++ {
				switch g := arrivals[i].Sub(arrivals[i-1]); {
				case g < 8*time.Millisecond:
					short++
				case g > 15*time.Millisecond:
					long++
				}
			}
			<-mu
			if n := len(arrivals) - 1; short < n/3 || long < n/3 {
				ck.Errorf("%s: %d short and %d long gaps of %d: the recorded pairs were not kept", c.protocol, short, long, n)
			}
			if !strings.Contains(strings.Join(res.Notes, "\n"), "replays 40 logged requests") {
				ck.Errorf("notes: %q", res.Notes)
			}
		})
	}
}

// TestReplayBodiesFile: a bodies file is sent line by line, as it is.
func TestReplayBodiesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bodies.jsonl")
	lines := `{"model":"m","candidates":[{"id":"a","features":{"x":1}}]}
{"model":"m","rows":[[1],[2],[3],[4]]}
`
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startTestServer(t, nil)
	sc := testScenario(t, `
name: replay-bodies
protocol: json
warmup: 100ms
window: 500ms
arrival: constant
steps: [{rate: 50, duration: 1100ms}]
workloads: [{model: m, replay: {bodies: `+path+`}}]
`)
	runTest(t, context.Background(), sc, ts.tcp)
	req, cands := ts.requests.Load(), ts.candidates.Load()
	// Alternating 1 and 4 candidates: 2.5 on average.
	if ts.badBodies.Load() != 0 || req < 20 || math.Abs(float64(cands)/float64(req)-2.5) > 0.2 {
		t.Errorf("%d requests, %d candidates, %d bad", req, cands, ts.badBodies.Load())
	}
	if _, err := ParseScenario([]byte(`name: x
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, replay: {bodies: f}}]`)); err == nil || !strings.Contains(err.Error(), "protocol: json") {
		t.Errorf("bodies over protobuf: %v", err)
	}
	for _, bad := range []string{`{bodies: f, predlog: d}`, `{}`, `{predlog: d, timing: now}`, `{bodies: f, timing: recorded}`, `{predlog: d, limit: -1}`} {
		if _, err := ParseScenario([]byte("name: x\nprotocol: json\nsteps: [{rate: 1, duration: 2s}]\nworkloads: [{model: m, replay: " + bad + "}]")); err == nil {
			t.Errorf("replay %s accepted", bad)
		}
	}
}

func FuzzReadBodies(f *testing.F) {
	f.Add([]byte(`{"model":"m","rows":[[1,2]]}` + "\n" + `{"model":"m","candidates":[{}]}`))
	f.Add([]byte("{\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := ReadBodies(strings.NewReader(string(data)), 100)
		if err != nil {
			return
		}
		for _, b := range bs {
			if b.Candidates < 1 || len(b.Data) == 0 {
				t.Fatalf("body %+v", b)
			}
		}
	})
}

func FuzzReadPredLog(f *testing.F) {
	f.Add([]byte(predLogSample))
	f.Add([]byte(`{"header":{"features":[]}}` + "\n" + `{"model":"m","features":[[]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := ReadPredLog(strings.NewReader(string(data)), 100)
		if err != nil {
			return
		}
		for _, r := range reqs {
			p := requestParts{model: r.Model, dense: true, featNames: r.Features, vals: r.Rows, ids: r.IDs, keys: make([][][2]string, len(r.Rows))}
			_ = appendProtoRequest(nil, &p)
			_ = appendJSONRequest(nil, &p)
			for _, row := range r.Rows {
				if len(row) != len(r.Features) {
					t.Fatalf("row of %d values for %d features", len(row), len(r.Features))
				}
			}
		}
	})
}
