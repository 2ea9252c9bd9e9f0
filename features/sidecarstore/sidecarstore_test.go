//go:build linux

package sidecarstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/examples"
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/redis/go-redis/v9"
)

// These tests start redis-server on ports 7450-7469 (this package's range).
var (
	redisPortMu   sync.Mutex
	nextRedisPort = 7450 + os.Getpid()%20
)

type testRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func (r *testRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func startTestRedis(t *testing.T) *testRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not on PATH (apt-get install redis-server): %v", err)
	}
	r := &testRedis{t: t, dir: t.TempDir()}
	redisPortMu.Lock()
	for tries := 0; ; tries++ {
		p := 7450 + (nextRedisPort-7450)%20
		nextRedisPort++
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			r.port = p
			break
		}
		if tries == 20 {
			redisPortMu.Unlock()
			t.Fatal("no free port in 7450-7469")
		}
	}
	redisPortMu.Unlock()
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *testRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"), "--protected-mode", "no")
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	waitFor(r.t, "redis-server to answer", 10*time.Second, func() bool { return c.Ping(context.Background()).Err() == nil })
}

// kill stops the server at once (SIGKILL), as a crash would.
func (r *testRedis) kill() {
	if r.cmd != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

const usersGroup = `name: users
key: user_id
ttl: 50ms
max_stale: 1h
features:
  - {name: BonusMalus, type: float64, default: 100}
  - {name: Density, type: float32}
`

// The demo model with two columns from the users group.
const storeManifest = "format: lightgbm\nfile: model.txt\n" + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 77}, {name: Density, group: users, key: user_id}]
`

// usersCSV is nusers users; user i has BonusMalus 50+i and Density 10.5×i (exact in float32).
func usersCSV(n int) string {
	var b strings.Builder
	b.WriteString("user_id,BonusMalus,Density\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "u%d,%d,%g\n", i, 50+i, 10.5*float64(i))
	}
	return b.String()
}

func loadUsers(t *testing.T, g *features.Group, addr string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	st, err := features.Load(context.Background(), strings.NewReader(usersCSV(n)), features.LoadConfig{Group: g, Sink: features.RedisSink{Client: c}})
	if err != nil || st.Rows != n {
		t.Fatalf("load: %+v %v", st, err)
	}
}

// TestFeatureStoreRedisE2E: store-backed features from a real redis-server reach the
// model over real HTTP (scores equal the engine on the assembled rows, per-candidate
// and request-level keys); killing Redis under load fails no request and marks
// responses degraded; after a restart and reload the answers are fresh again.
func TestFeatureStoreRedisE2E(t *testing.T) {
	rs := startTestRedis(t)
	root := storeRepo(t)
	groups, err := features.LoadGroups(root)
	if err != nil {
		t.Fatal(err)
	}
	const nusers = 20
	loadUsers(t, groups["users"], rs.addr(), nusers)
	client := redis.NewClient(&redis.Options{Addr: rs.addr(), MaxRetries: -1})
	defer client.Close()
	st, err := features.Open(features.Config{Groups: groups, Redis: client, FetchTimeout: 200 * time.Millisecond,
		BreakerCooldown: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts := startServer(t, sidecar.Config{ModelDir: root, FeatureStore: New(st, "redis")})

	m := claimsEngine(t, root)
	names := m.FeatureNames() // the demo's order; BonusMalus and Density are columns 7 and 8
	nf := len(names)
	// One request: candidate i has user u(i) (or, for i%4 == 3, no key of its own and the
	// request's user u5; for i == 0, an unknown user: defaults), and its other features.
	const ncand = 12
	rows := randomRows(m, ncand, 42)
	var body strings.Builder
	body.WriteString(`{"model":"claims","keys":{"user_id":"u5"},"candidates":[`)
	for i := 0; i < ncand; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"id":"c%d",`, i)
		user := i % nusers
		switch {
		case i == 0:
			body.WriteString(`"keys":{"user_id":"nobody"},`)
			rows[i*nf+7], rows[i*nf+8] = 77, math.NaN() // the manifest's default; Density has none
		case i%4 == 3:
			user = 5
			fallthrough
		default:
			if i%4 != 3 {
				fmt.Fprintf(&body, `"keys":{"user_id":"u%d"},`, user)
			}
			rows[i*nf+7], rows[i*nf+8] = float64(50+user), float64(float32(10.5*float64(user)))
		}
		body.WriteString(`"features":{`)
		for j := 0; j < 7; j++ {
			if j > 0 {
				body.WriteByte(',')
			}
			v := rows[i*nf+j]
			if math.IsNaN(v) {
				fmt.Fprintf(&body, "%q:null", names[j])
			} else {
				fmt.Fprintf(&body, "%q:%v", names[j], v)
			}
		}
		body.WriteString("}}")
	}
	body.WriteString("]}")
	want := make([]float64, ncand)
	if err := m.PredictF64(rows, ncand, want, false); err != nil {
		t.Fatal(err)
	}
	ask := func() (scores []float64, degraded bool, status int, raw string) {
		status, resp := ts.post(t, "/v1/predict", body.String())
		var r struct {
			jsonResponse
			Degraded       bool     `json:"degraded"`
			DegradedGroups []string `json:"degraded_groups"`
		}
		if status == 200 {
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Predictions {
				scores = append(scores, *p.Score)
			}
			if r.Degraded && (len(r.DegradedGroups) != 1 || r.DegradedGroups[0] != "users") {
				t.Errorf("degraded groups %v", r.DegradedGroups)
			}
		}
		return scores, r.Degraded, status, string(resp)
	}
	check := func(scores []float64) {
		t.Helper()
		for i := range want {
			if scores[i] != want[i] {
				t.Fatalf("candidate %d: %v, the engine on the assembled row says %v", i, scores[i], want[i])
			}
		}
	}
	scores, degraded, status, raw := ask()
	if status != 200 || degraded {
		t.Fatalf("%d %s", status, raw)
	}
	check(scores)

	// Redis dies under load: every request still answers (stale cache, the same values).
	var stop atomic.Bool
	var sawDegraded atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				scores, degraded, status, raw := ask()
				if status != 200 {
					t.Errorf("request failed while Redis is down: %d %s", status, raw)
					return
				}
				check(scores)
				if degraded {
					sawDegraded.Add(1)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	rs.kill()
	waitFor(t, "degraded responses", 10*time.Second, func() bool { return sawDegraded.Load() > 0 })
	stop.Store(true)
	wg.Wait()

	// Restart (empty: no persistence) and reload: fresh answers again.
	rs.start()
	loadUsers(t, groups["users"], rs.addr(), nusers)
	waitFor(t, "answers that are not degraded", 10*time.Second, func() bool {
		scores, degraded, status, _ := ask()
		if status == 200 && !degraded {
			check(scores)
			return true
		}
		return false
	})
}

// storeRepo writes a model repository holding the demo model with two columns from the
// users group, and the group's file.
func storeRepo(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "claims", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	model, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		filepath.Join(dir, "model.txt"):         model,
		filepath.Join(dir, "model.yaml"):        []byte(storeManifest),
		filepath.Join(root, "users.group.yaml"): []byte(usersGroup),
	} {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// claimsEngine loads the repository's demo model straight into the engine: the
// reference the sidecar's answers are compared with.
func claimsEngine(t *testing.T, root string) *engine.Model {
	t.Helper()
	m, err := engine.LoadFile(filepath.Join(root, "claims", "1", "model.txt"), "", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// randomRows draws n rows for m: values from the model's own split thresholds (so rows
// fall on both sides of real splits, and exactly on some), small integers and ~10%
// missing.
func randomRows(m *engine.Model, n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	ens := m.Ensemble()
	nf := m.NumFeatures()
	byFeat := make([][]float64, nf)
	for i, f := range ens.Feature {
		byFeat[f] = append(byFeat[f], ens.Threshold[i])
	}
	rows := make([]float64, n*nf)
	for i := range rows {
		switch f, r := i%nf, rng.IntN(10); {
		case r == 0:
			rows[i] = math.NaN()
		case r < 3 || len(byFeat[f]) == 0:
			rows[i] = float64(rng.IntN(8))
		default:
			rows[i] = byFeat[f][rng.IntN(len(byFeat[f]))] + rng.NormFloat64()
		}
	}
	return rows
}

// testServer is a sidecar serving on loopback TCP.
type testServer struct {
	*sidecar.Server
	base string
}

func startServer(t *testing.T, cfg sidecar.Config) *testServer {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := sidecar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res := s.Reload(); len(res.Failed) > 0 {
		t.Fatalf("load failures: %v", res.Failed)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ln); close(done) }()
	ts := &testServer{Server: s, base: "http://" + ln.Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	// Shutdown closes only listeners Serve has registered: one answer proves it has.
	waitFor(t, "the sidecar to answer", 10*time.Second, func() bool {
		resp, err := http.Get(ts.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return ts
}

func (ts *testServer) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(ts.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func (ts *testServer) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(ts.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type jsonResponse struct {
	Predictions []struct {
		Score *float64 `json:"score"`
	} `json:"predictions"`
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFillStopsAtDeadline: the binding checks its context while it walks the rows, so
// a request whose deadline passed stops there instead of resolving every row's key
// and fetching.
func TestFillStopsAtDeadline(t *testing.T) {
	root := storeRepo(t)
	st := emptyStore(t, root)
	b, err := New(st, "snapshot").Bind("claims", "1", []sidecar.StoreColumn{
		{Column: 7, Spec: sidecar.FeatureSpec{Name: "BonusMalus", Group: "users", Key: "user_id"}},
		{Column: 8, Spec: sidecar.FeatureSpec{Name: "Density", Group: "users", Key: "user_id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = b.Fill(ctx, &sidecar.StoreQuery{NRows: 3, NCols: 9, F64: make([]float64, 27)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fill past the deadline: %v, want context.DeadlineExceeded", err)
	}
}

// TestBindRejects: a manifest naming an unknown group or feature fails the bind (the
// version's load), not a request.
func TestBindRejects(t *testing.T) {
	root := storeRepo(t)
	st := emptyStore(t, root)
	fs := New(st, "snapshot")
	f := func(spec sidecar.FeatureSpec, want string) {
		t.Helper()
		_, err := fs.Bind("claims", "1", []sidecar.StoreColumn{{Column: 0, Spec: spec}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Bind(%+v): %v, want an error naming %q", spec, err, want)
		}
	}
	f(sidecar.FeatureSpec{Name: "BonusMalus", Group: "nope", Key: "user_id"}, "nope")
	f(sidecar.FeatureSpec{Name: "Nope", Group: "users", Key: "user_id"}, "Nope")
}

// emptyStore opens an embedded store (every entity absent) over root's groups, closed
// when the test ends.
func emptyStore(t *testing.T, root string) *features.Store {
	t.Helper()
	groups, err := features.LoadGroups(root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := features.Open(features.Config{Groups: groups})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
