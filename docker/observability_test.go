package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// These tests keep the dashboard and the alert rules true to the code: every metric
// their queries name must be one a real sidecar serves at /metrics once it has had
// traffic (with a feature store over a real redis-server, a shadow model and a prediction
// log configured, so that those series exist), and the rules must be valid Prometheus
// rules (promtool check rules) whose alerts fire on the series they are meant for
// (promtool test rules).

const (
	dashboardPath = "docker/grafana/predictd-dashboard.json"
	rulesPath     = "docker/prometheus/predictd-alerts.yaml"
	rulesTestPath = "docker/prometheus/predictd-alerts_test.yaml"
)

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func lookPath(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not on PATH (scripts/ci/deps.sh installs %s): %v", tool, pkg, err)
	}
	return p
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, src))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startRedis starts a redis-server on a free port; it is killed when the test ends, or
// earlier by the returned function.
func startRedis(t *testing.T) (addr string, kill func()) {
	t.Helper()
	bin := lookPath(t, "redis-server", "redis-server")
	port := freePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--logfile", "")
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Cleanup(kill)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "redis-server", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprint(c, "PING\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "+PONG\r\n"
	})
	return addr, kill
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sidecarMetrics runs the predictd binary with a store-backed model (the feature-store
// example over a real redis-server), a shadow model, a prediction log and admission
// control, background scoring for every request and a model version that fails to load;
// sends traffic that makes every kind of series appear (store hits, misses and absent
// entities, a failed request, then Redis killed: stale and defaulted answers, backend
// errors, the breaker); and returns the series names of its /metrics page.
func sidecarMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "predictd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/predictd")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	redisAddr, killRedis := startRedis(t)

	models := filepath.Join(dir, "models")
	// The example's group with a 1s TTL, so that entries go stale within the test.
	group := read(t, "examples/feature-store/models/users.group.yaml")
	if !strings.Contains(group, "ttl: 1m") {
		t.Fatal("users.group.yaml no longer says ttl: 1m")
	}
	writeFile(t, filepath.Join(models, "users.group.yaml"), strings.Replace(group, "ttl: 1m", "ttl: 1s", 1))
	// A version that cannot load (its model file is missing): the load-error series.
	writeFile(t, filepath.Join(models, "broken/1/model.yaml"), "format: lightgbm\nfile: model.txt\n")
	copyFile(t, "examples/models/claims/1/model.txt", filepath.Join(models, "claims/1/model.txt"))
	manifest, err := os.ReadFile(filepath.Join(repo, "examples/feature-store/models/claims/1/model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(models, "claims/1/model.yaml"), string(manifest)+
		"shadows: [{model: claims_next, rate: 1}]\nlog: {rate: 1}\n")
	copyFile(t, "examples/models/claims/1/model.txt", filepath.Join(models, "claims_next/1/model.txt"))
	copyFile(t, "examples/models/claims/1/model.yaml", filepath.Join(models, "claims_next/1/model.yaml"))

	load := exec.Command(bin, "features", "load", "--group", "users", "--file",
		filepath.Join(repo, "examples/feature-store/users.csv"), "--groups", models, "--redis", redisAddr)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("features load: %v\n%s", err, out)
	}

	sockDir, err := os.MkdirTemp("", "pdobs") // a Unix socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "s")
	serve := exec.Command(bin, "serve", "--models", models, "--redis", redisAddr, "--listen", "", "--unix", sock,
		"--prediction-log-dir", filepath.Join(dir, "logs"), "--admission-capacity", "4",
		"--features-fetch-timeout", "100ms", "--log-level", "error",
		"--background-after", "1ns") // every request with a known cost per row scores on the background threads
	var stderr strings.Builder
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Kill()
		serve.Wait()
	})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	waitFor(t, "the sidecar to be ready", func() bool {
		resp, err := hc.Get("http://predictd/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	predict := func(user string, want int) {
		t.Helper()
		// 20 candidates: the sidecar learns a version's cost per row from requests of 16
		// rows or more, and then scores on the background threads.
		var cands []string
		for i := range 20 {
			cands = append(cands, fmt.Sprintf(`{"id": "c%d", "features": {"VehBrand": %d, "VehPower": 3, "VehGas": 0, "Region": 4, "Area": 0, "VehAge": %d, "DrivAge": 55}}`, i, i%10, i))
		}
		body := `{"model": "claims", "keys": {"user_id": "` + user + `"}, "candidates": [` + strings.Join(cands, ",") + `]}`
		resp, err := hc.Post("http://predictd/v1/predict", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("predict for %s: %d %s, want %d\n%s", user, resp.StatusCode, b, want, stderr.String())
		}
	}
	for range 3 {
		predict("u1", 200)     // a miss, then hits
		predict("nobody", 200) // absent
	}
	predict("u1\x00", 400) // a bad request: an error series
	killRedis()
	time.Sleep(1100 * time.Millisecond) // u1's entry is past its TTL
	predict("u1", 200)                  // degraded: stale
	for _, u := range []string{"u2", "u3", "u4", "u5", "u6", "u7"} {
		predict(u, 200) // degraded: defaults, backend errors, the breaker opens
	}
	resp, err := hc.Get("http://predictd/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// promql strips what is not a metric name from a PromQL expression: strings, label
// matchers, ranges, offsets, grouping clauses, Grafana variables and numbers.
var promqlNoise = []*regexp.Regexp{
	regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
	regexp.MustCompile(`\{[^}]*\}`),
	regexp.MustCompile(`\[[^\]]*\]`),
	regexp.MustCompile(`\boffset\s+\w+`),
	regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	regexp.MustCompile(`\$\{?\w+\}?`),
	regexp.MustCompile(`\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b`),
}

var (
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "inf": true, "nan": true}
	ourPrefix      = regexp.MustCompile(`\b(?:predictd|process|go)_[a-zA-Z0-9_]+`)
)

// metricNames returns the metric names an expression selects. It fails the test when a
// name with one of our prefixes is in the expression but not found, so the stripping
// above cannot hide one.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	s := expr
	for _, re := range promqlNoise {
		s = re.ReplaceAllString(s, " ")
	}
	var names []string
	for _, m := range promqlIdent.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || promqlKeywords[strings.ToLower(m[0])] {
			continue // a function or an aggregation, or an operator
		}
		names = append(names, m[0])
	}
	stripped := regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(expr, " ")
	for _, n := range ourPrefix.FindAllString(stripped, -1) {
		if !slices.Contains(names, n) {
			t.Fatalf("expression %q: %s not extracted (names %v)", expr, n, names)
		}
	}
	return names
}

// rules is a Prometheus rule file; unknown keys are errors.
type rules struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) rules {
	t.Helper()
	var r rules
	dec := yaml.NewDecoder(strings.NewReader(read(t, rulesPath)))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	return r
}

// dashboardExprs returns every query of the dashboard's panels (rows included) by panel
// title, and the metrics its template variables query.
func dashboardExprs(t *testing.T) (map[string][]string, []string) {
	t.Helper()
	var d struct {
		Title      string            `json:"title"`
		UID        string            `json:"uid"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(read(t, dashboardPath)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", dashboardPath)
	}
	type panel struct {
		Type    string            `json:"type"`
		Title   string            `json:"title"`
		Panels  []json.RawMessage `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	exprs := map[string][]string{}
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if _, dup := exprs[p.Title]; dup {
				t.Errorf("two panels titled %q", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: an empty query", p.Title)
				}
				exprs[p.Title] = append(exprs[p.Title], tg.Expr)
			}
		}
	}
	walk(d.Panels)
	var varMetrics []string
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
		}
		varMetrics = append(varMetrics, m[1])
	}
	return exprs, varMetrics
}

// TestDashboardAndAlertsMatchMetrics: every metric the dashboard and the alert rules
// query is served by a real sidecar after traffic (or recorded by the rules themselves).
func TestDashboardAndAlertsMatchMetrics(t *testing.T) {
	exprs, varMetrics := dashboardExprs(t)
	r := readRules(t)
	served := sidecarMetrics(t)
	recorded := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Record != "" {
				recorded[rule.Record] = true
			}
		}
	}
	check := func(where, expr string) {
		t.Helper()
		names := metricNames(t, expr)
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !served[n] && !recorded[n] {
				t.Errorf("%s: %s is not on a sidecar's /metrics (nor recorded by %s)", where, n, rulesPath)
			}
		}
	}
	used := map[string]bool{}
	for title, es := range exprs {
		for _, e := range es {
			check("dashboard panel "+strconv.Quote(title), e)
			for _, n := range metricNames(t, e) {
				used[n] = true
			}
		}
	}
	for _, m := range varMetrics {
		check("dashboard variable", m)
	}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			check(rulesPath+" "+rule.Record+rule.Alert, rule.Expr)
		}
	}
	// docs/operations.md documents every predictd family served.
	ops := read(t, "docs/operations.md")
	for n := range served {
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(family, "predictd_") && !strings.Contains(ops, "`"+family+"`") {
			t.Errorf("docs/operations.md does not document %s", family)
		}
	}
	// The dashboard shows each area: requests, latency, feature cache, shadows, logs, the
	// process.
	for _, n := range []string{"predictd_requests_total", "predictd_request_duration_seconds_bucket",
		"predictd_features_cache_lookups_total", "predictd_shadow_rank_corr", "predictd_predlog_records_dropped_total",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "go_goroutines"} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}

// TestAlertRules: the rule file has the Prometheus rule-group shape, names the alerts
// operators rely on, passes promtool check rules, and its unit tests (each alert firing on
// the series it is meant for) pass under promtool test rules.
func TestAlertRules(t *testing.T) {
	r := readRules(t)
	alerts := map[string]bool{}
	for _, g := range r.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, rule := range g.Rules {
			if (rule.Record == "") == (rule.Alert == "") || rule.Expr == "" {
				t.Errorf("rule %+v: want one of record or alert, and an expr", rule)
			}
			if rule.Alert != "" {
				alerts[rule.Alert] = true
				if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
					t.Errorf("alert %s: no severity label, summary or description", rule.Alert)
				}
			}
		}
	}
	for _, a := range []string{"PredictdLatencySLOBurnFast", "PredictdLatencySLOBurnSlow", "PredictdErrorRatioHigh",
		"PredictdDegradedRatioHigh", "PredictdFeatureStoreBreakerOpen", "PredictdShadowDisagreement",
		"PredictdPredictionLogDrops", "PredictdAbsentEntityRatioHigh"} {
		if !alerts[a] {
			t.Errorf("%s: no alert %s", rulesPath, a)
		}
	}
	promtool := lookPath(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", filepath.Base(rulesPath)}, {"test", "rules", filepath.Base(rulesTestPath)}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join(repo, filepath.Dir(rulesPath))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
