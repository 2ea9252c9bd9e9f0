package portal_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/features/sidecarstore"
	"github.com/predictd/predictd/loadtest"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/portal"
)

// env is a real sidecar on loopback with the portal: the demo model "claims" (with the
// shadow "claims-next" and a prediction log), the store-backed "claims-store" (its
// BonusMalus and Density from the users group of an embedded store holding
// examples/feature-store/users.csv), admission control on, and two load-test profiles.
type env struct {
	srv      *sidecar.Server
	portal   *portal.Portal
	store    *features.Store
	base     string // http://127.0.0.1:port: the predict listener
	admin    string // the admin listener
	repo     string // the model repository
	profiles string // the profiles directory
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	claimsYAML = "format: lightgbm\nfile: model.txt\nweight: 2\n" +
		"shadows:\n  - {model: claims-next, rate: 1, top_k: 5}\nlog: {rate: 1}\n"
	claimsNextYAML = "format: lightgbm\nfile: model.txt\noutput: raw\n" // same trees, raw margins: the ranks agree, the scores do not
)

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(data))
}

func writeFile(t testing.TB, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newEnv starts the sidecar; onAdmin puts the portal on an admin listener (else on the
// predict one, as predictd does without --admin-listen).
func newEnv(t testing.TB, onAdmin bool) *env {
	t.Helper()
	repo := t.TempDir()
	model := filepath.Join("..", "..", "examples", "models", "claims", "1", "model.txt")
	fsDir := filepath.Join("..", "..", "examples", "feature-store")
	for name, yaml := range map[string]string{"claims": claimsYAML, "claims-next": claimsNextYAML} {
		copyFile(t, model, filepath.Join(repo, name, "1", "model.txt"))
		writeFile(t, filepath.Join(repo, name, "1", "model.yaml"), yaml)
	}
	copyFile(t, model, filepath.Join(repo, "claims-store", "1", "model.txt"))
	copyFile(t, filepath.Join(fsDir, "models", "claims", "1", "model.yaml"), filepath.Join(repo, "claims-store", "1", "model.yaml"))
	copyFile(t, filepath.Join(fsDir, "models", "users.group.yaml"), filepath.Join(repo, "users.group.yaml"))

	groups, err := features.LoadGroups(repo)
	if err != nil {
		t.Fatal(err)
	}
	emb := features.NewEmbedded()
	csv, err := os.Open(filepath.Join(fsDir, "users.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	if _, err := features.Load(context.Background(), csv, features.LoadConfig{Group: groups["users"], Sink: emb, Format: "csv",
		Timestamp: time.Now().Add(-90 * time.Second)}); err != nil {
		t.Fatal(err)
	}

	logs := t.TempDir()
	srv, err := sidecar.New(sidecar.Config{ModelDir: repo, AdmissionCapacity: 8, PredictionLogDir: logs,
		Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	st, err := features.Open(features.Config{Groups: groups, Embedded: emb, Meter: srv.Meter()})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFeatureStore(sidecarstore.NewReloading(st, "snapshot", repo))
	if res := srv.Reload(); len(res.Failed) > 0 {
		t.Fatalf("reload: %v", res.Failed)
	}
	profiles := writeProfiles(t)
	p, err := portal.New(portal.Config{Server: srv, Store: st, Profiles: profiles})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetUI(p.Handler(), onAdmin)
	e := &env{srv: srv, portal: p, store: st, repo: repo, profiles: profiles}
	listen := func(serve func(net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go serve(ln)
		return "http://" + ln.Addr().String()
	}
	e.base = listen(srv.ServePredict)
	e.admin = listen(srv.ServeAdmin)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		p.Close()
		st.Close()
	})
	return e
}

// ui is the base URL of the listener that serves the portal.
func (e *env) ui(onAdmin bool) string {
	if onAdmin {
		return e.admin
	}
	return e.base
}

// writeProfiles puts two runs of the checked-in ranking-1k profile under a profiles
// directory: the example as recorded, and a copy whose latencies are 30% higher.
func writeProfiles(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "profiles", "ranking-1k", "example", "result.json")
	r, err := loadtest.LoadResult(src)
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(dir, "ranking-1k", "example")
	copyFile(t, src, filepath.Join(a, "result.json"))
	r.RunID = "slower"
	for i := range r.Steps {
		l := &r.Steps[i].Latency
		l.P50, l.P90, l.P95, l.P99, l.P999, l.Max = l.P50*1.3, l.P90*1.3, l.P95*1.3, l.P99*1.3, l.P999*1.3, l.Max*1.3
	}
	b := filepath.Join(dir, "ranking-1k", "slower")
	if err := os.MkdirAll(b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := loadtest.WriteResult(b, r); err != nil {
		t.Fatal(err)
	}
	return dir
}

// get fetches url and returns the status and body.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// apiScore is /v1/predict's transformed score of body's first candidate.
func apiScore(t testing.TB, base, body string) float64 {
	t.Helper()
	resp, err := http.Post(base+"/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Predictions []struct {
			Score float64 `json:"score"`
		} `json:"predictions"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &a); err != nil || resp.StatusCode != 200 || len(a.Predictions) != 1 {
		t.Fatalf("/v1/predict: %d %s (%v)", resp.StatusCode, data, err)
	}
	return a.Predictions[0].Score
}

// postJSON posts body to /v1/predict and returns the status.
func postJSON(t testing.TB, base, body string) int {
	t.Helper()
	resp, err := http.Post(base+"/v1/predict", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
