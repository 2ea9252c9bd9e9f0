//go:build linux

package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
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

	"github.com/predictd/predictd/engine/features"
	"github.com/redis/go-redis/v9"
)

// Sidecar tests start redis-server on ports 7400-7449 (this package's range).
var (
	redisPortMu   sync.Mutex
	nextRedisPort = 7400 + os.Getpid()%50
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
		p := 7400 + (nextRedisPort-7400)%50
		nextRedisPort++
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			r.port = p
			break
		}
		if tries == 50 {
			redisPortMu.Unlock()
			t.Fatal("no free port in 7400-7449")
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
const storeManifest = lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
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
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: storeManifest})
	if err := os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte(usersGroup), 0o644); err != nil {
		t.Fatal(err)
	}
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
	ts := startServer(t, Config{ModelDir: root, FeatureStore: NewFeatureStore(st, "redis")})

	m := claimsEngine(t)
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
		status, resp := ts.post(t, "tcp", "/v1/predict", "application/json", []byte(body.String()))
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
	if st := modelStatus(t, ts, "claims"); st.Serving != "1" {
		t.Errorf("%+v", st)
	}
}

// TestServeBinaryEmbeddedFeatureStore: with no Redis the real binary serves
// store-backed features from the embedded store, filled from a snapshot written by
// "predictd features load --snapshot"; "predictd check" validates the feature groups
// and the models' use of them.
func TestServeBinaryEmbeddedFeatureStore(t *testing.T) {
	bin := predictdBinary(t)
	root := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo", manifest: storeManifest})
	if err := os.WriteFile(filepath.Join(root, "users.group.yaml"), []byte(usersGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	csv, snap := filepath.Join(tmp, "users.csv"), filepath.Join(tmp, "users.snap")
	if err := os.WriteFile(csv, []byte(usersCSV(10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "features", "load", "--group", "users", "--file", csv, "--groups", root,
		"--snapshot", snap).CombinedOutput(); err != nil {
		t.Fatalf("features load: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "check", root).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok   claims/1") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	// A model naming an unknown group, and a broken group file, fail the check.
	bad := newRepo(t, repoVersion{model: "claims", version: "1", src: "demo",
		manifest: strings.Replace(storeManifest, "group: users", "group: nope", 1)})
	os.WriteFile(filepath.Join(bad, "users.group.yaml"), []byte(usersGroup), 0o644)
	out, err := exec.Command(bin, "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAIL claims/1") ||
		!strings.Contains(string(out), "nope") {
		t.Errorf("check with an unknown group: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(bad, "users.group.yaml"), []byte(usersGroup+"colour: blue\n"), 0o644)
	out, err = exec.Command(bin, "check", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAIL feature groups") {
		t.Errorf("check with a broken group file: %v\n%s", err, out)
	}

	dir, err := os.MkdirTemp("", "pdfeat")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	cmd, hc, stderr := serveBinary(t, bin, sock, nil, "--models", root, "--listen", "", "--unix", sock, "--features-snapshot", snap)
	m := claimsEngine(t)
	rows := randomRows(m, 2, 3)
	rows[7], rows[8] = 53, float64(float32(31.5)) // u3
	rows[9+7], rows[9+8] = 77, math.NaN()         // unknown user: defaults
	want := make([]float64, 2)
	m.PredictF64(rows, 2, want, false)
	feats := func(r int) string {
		var parts []string
		for j := 0; j < 7; j++ {
			if v := rows[r*9+j]; !math.IsNaN(v) {
				parts = append(parts, fmt.Sprintf("%q:%v", m.FeatureNames()[j], v))
			}
		}
		return strings.Join(parts, ",")
	}
	body := fmt.Sprintf(`{"model":"claims","candidates":[{"id":"a","keys":{"user_id":"u3"},"features":{%s}},{"id":"b","keys":{"user_id":"zz"},"features":{%s}}]}`,
		feats(0), feats(1))
	resp, err := hc.Post("http://predictd/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var r jsonResponse
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(r.Predictions) != 2 || *r.Predictions[0].Score != want[0] || *r.Predictions[1].Score != want[1] {
		t.Fatalf("%d %+v, want %v\n%s", resp.StatusCode, r, want, stderr.String())
	}
	// The store records on the server's meter: its metrics are at /metrics.
	mresp, err := hc.Get("http://predictd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), "predictd_features_cache_") {
		t.Errorf("no feature-store metrics at /metrics")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
}
