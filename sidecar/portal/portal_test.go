package portal_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/loadtest"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/portal"
	"github.com/valyala/fasthttp"
)

// Script-y inputs: a script element, an element with a handler, and values that try to
// leave an attribute.
var hostile = []string{
	`<script>alert(1)</script>`,
	`<img src=x onerror=alert(1)>`,
	`"><script>alert(2)</script>`,
	`' onmouseover='alert(3)`,
}

// unescaped matches any hostile input as markup: an element, or a quote that closed an
// attribute and opened a handler.
var unescaped = regexp.MustCompile(`<script>alert|<img src=x|"><script|' onmouseover='`)

func post(t *testing.T, u string, form url.Values, origin string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEscapesUserInput sends hostile text everywhere the portal takes input (query
// parameters, every field of the prediction form, a pasted body, an entity key) and
// where it shows what others wrote (a model directory's name, a profile's scenario and
// directory): none of it may come back as markup.
func TestEscapesUserInput(t *testing.T) {
	e := newEnv(t, false)
	// A model whose directory name is markup, and a profile whose scenario and run
	// directory are.
	name := hostile[1]
	copyFile(t, filepath.Join(e.repo, "claims", "1", "model.txt"), filepath.Join(e.repo, name, "1", "model.txt"))
	writeFile(t, filepath.Join(e.repo, name, "1", "model.yaml"), "format: lightgbm\nfile: model.txt\n")
	if res := e.srv.Reload(); len(res.Failed) > 0 {
		t.Fatal(res.Failed)
	}
	r, err := loadtest.LoadResult(filepath.Join(e.profiles, "ranking-1k", "example"))
	if err != nil {
		t.Fatal(err)
	}
	r.Scenario, r.Description, r.Machine.Label = hostile[0], hostile[2], hostile[3]
	bad := filepath.Join(e.profiles, hostile[0][:7], hostile[1])
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := loadtest.WriteResult(bad, r); err != nil {
		t.Fatal(err)
	}
	badID := hostile[0][:7] + "/" + hostile[1]

	ui := e.ui(false) + "/ui/"
	check := func(what string, status int, body string) {
		t.Helper()
		if loc := unescaped.FindStringIndex(body); loc != nil {
			t.Errorf("%s (status %d) reflects input unescaped: …%s…", what, status, body[max(0, loc[0]-80):min(len(body), loc[1]+80)])
		}
	}
	for _, h := range hostile {
		q := url.QueryEscape(h)
		for _, path := range []string{"", "model?name=" + q, "try?model=" + q, "features?group=" + q + "&key=" + q,
			"features?group=users&key=" + q, "profiles/run?id=" + q, "profiles/compare?a=" + q + "&b=" + q,
			"profiles/compare.svg?a=" + q + "&b=" + q, "profiles/r/" + q + "/index.html", "api/live?model=" + q, q} {
			st, body := get(t, ui+path)
			check("GET /ui/"+path, st, body)
		}
		for _, g := range []string{h, "users"} {
			st, body := post(t, ui+"features", url.Values{"group": {g}, "key": {h}}, "")
			check("an entity lookup of group "+g, st, body)
		}
		form := url.Values{"model": {"claims-store"}, "id": {h}, "k.user_id": {h}, "f.VehBrand": {h}, "f.VehPower": {"3"}}
		st, body := post(t, ui+"try", form, "")
		check("the form with a hostile feature value", st, body)
		if !strings.Contains(body, "is not a number") {
			t.Errorf("a feature value %q should be refused as not a number:\n%s", h, body)
		}
		form.Set("f.VehBrand", "6")
		st, body = post(t, ui+"try", form, "")
		check("the form with a hostile id and key", st, body)
		if !strings.Contains(body, `id="score-0"`) {
			t.Errorf("the form with id and key %q should score:\n%s", h, body)
		}
		for _, pasted := range []string{
			fmt.Sprintf(`{"model":%q,"candidates":[{"id":"a","features":{}}]}`, h),
			fmt.Sprintf(`{"model":"claims","candidates":[{"id":%q,"features":{%q:1}}]}`, h, h),
			fmt.Sprintf(`{"model":"claims","candidates":[{"id":%q,"features":{"VehBrand":1}}]}`, h),
			h,
		} {
			st, body := post(t, ui+"try", url.Values{"model": {"claims"}, "body": {pasted}}, "")
			check("a pasted body "+pasted, st, body)
		}
		st, body = post(t, ui+"try", url.Values{"model": {h}}, "")
		check("the form for a hostile model name", st, body)
	}
	// The hostile model and profile, shown everywhere they are listed.
	for _, path := range []string{"", "model?name=" + url.QueryEscape(name), "try?model=" + url.QueryEscape(name), "profiles",
		"profiles/run?id=" + url.QueryEscape(badID), "profiles/compare?a=" + url.QueryEscape(badID) + "&b=ranking-1k%2Fexample",
		"profiles/compare.svg?a=" + url.QueryEscape(badID) + "&b=ranking-1k%2Fexample",
		"profiles/r/" + url.PathEscape(hostile[0][:7]) + "/" + url.PathEscape(hostile[1]) + "/index.html"} {
		st, body := get(t, ui+path)
		check("GET /ui/"+path, st, body)
		if st != http.StatusOK {
			t.Errorf("GET /ui/%s: %d", path, st)
		}
		if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") && !strings.Contains(body, "&lt;script&gt;") &&
			!strings.Contains(body, `\u003c`) && !strings.Contains(body, "%3cimg") && !strings.Contains(body, "%3Cimg") {
			t.Errorf("GET /ui/%s does not show the hostile name at all (escaped)", path)
		}
	}
	st, body := post(t, ui+"try", url.Values{"model": {name}, "f.VehBrand": {"6"}}, "")
	check("the form of the hostile model", st, body)
	if !strings.Contains(body, `id="score-0"`) {
		t.Errorf("the hostile model's form should score:\n%s", body)
	}
}

// TestPortalSurfaces: the portal is on the admin listener when there is one, and then
// not on the predict listener; without one it is on the predict listener.
func TestPortalSurfaces(t *testing.T) {
	e := newEnv(t, true)
	if st, _ := get(t, e.admin+"/ui/"); st != http.StatusOK {
		t.Errorf("admin listener: /ui/ %d", st)
	}
	if st, body := get(t, e.base+"/ui/"); st != http.StatusNotFound || !strings.Contains(body, "admin listener") {
		t.Errorf("predict listener with an admin listener: /ui/ %d %s", st, body)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(e.admin + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasSuffix(resp.Header.Get("Location"), "/ui/") {
		t.Errorf("/ui: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	e2 := newEnv(t, false)
	if st, _ := get(t, e2.base+"/ui/"); st != http.StatusOK {
		t.Errorf("predict listener without an admin listener: /ui/ %d", st)
	}
}

// TestPortalReadOnly: only /ui/try takes a POST, only from the portal's own origin, and
// every page carries the policy that keeps out scripts it did not serve.
func TestPortalReadOnly(t *testing.T) {
	e := newEnv(t, false)
	ui := e.base + "/ui/"
	for _, path := range []string{"", "model?name=claims", "profiles", "profiles/run?id=ranking-1k%2Fexample", "api/live?model=claims"} {
		st, _ := post(t, ui+path, url.Values{"model": {"claims"}}, "")
		if st != http.StatusMethodNotAllowed {
			t.Errorf("POST /ui/%s: %d, want 405", path, st)
		}
	}
	form := url.Values{"model": {"claims"}, "f.VehBrand": {"6"}}
	if st, body := post(t, ui+"try", form, "http://evil.example"); st != http.StatusForbidden || strings.Contains(body, "score-0") {
		t.Errorf("a cross-site post: %d", st)
	}
	if st, body := post(t, ui+"try", form, e.base); st != http.StatusOK || !strings.Contains(body, "score-0") {
		t.Errorf("a same-origin post: %d", st)
	}
	resp, err := http.Get(ui)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// The prediction the form ran went through the predict path: it counts in /metrics.
	_, metrics := get(t, e.admin+"/metrics")
	if !regexp.MustCompile(`predictd_requests_total\{[^}]*model="claims"[^}]*\} 2`).MatchString(metrics) {
		t.Errorf("the form's two requests (transformed and raw) are not in predictd_requests_total")
	}
}

// TestPortalToken: with an admin token, the prediction and entity forms need it; the
// read-only pages do not.
func TestPortalToken(t *testing.T) {
	e := newEnv(t, false)
	p, err := portal.New(portal.Config{Server: e.srv, Store: e.store, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetUI(p.Handler(), false)
	ui := e.base + "/ui/"
	if st, body := get(t, ui+"try?model=claims"); st != 200 || !strings.Contains(body, `name="token"`) {
		t.Errorf("the form does not ask for the token: %d", st)
	}
	for _, tc := range []struct {
		path string
		form url.Values
		want string
	}{
		{"try", url.Values{"model": {"claims"}, "f.VehBrand": {"6"}}, `id="score-0"`},
		{"features", url.Values{"group": {"users"}, "key": {"u1"}}, `id="entity"`},
	} {
		for _, tok := range []string{"", "wrong", "s3cret"} {
			f := url.Values{"token": {tok}}
			for k, v := range tc.form {
				f[k] = v
			}
			st, body := post(t, ui+tc.path, f, "")
			if ok := tok == "s3cret"; ok != (st == 200 && strings.Contains(body, tc.want)) || !ok && st != http.StatusUnauthorized {
				t.Errorf("POST /ui/%s with token %q: %d", tc.path, tok, st)
			}
		}
	}
	if st, _ := get(t, ui); st != 200 {
		t.Errorf("the models page needs no token: %d", st)
	}
}

// manyVersions is a repository of 20 models × 10 versions of a small XGBoost model
// (sidecar/testdata/agaricus), plus one version that fails to load.
func manyVersions(t testing.TB) *sidecar.Server {
	t.Helper()
	repo := t.TempDir()
	src := filepath.Join("..", "testdata", "agaricus", "model.json")
	for m := range 20 {
		for v := 1; v <= 10; v++ {
			dir := filepath.Join(repo, fmt.Sprintf("ranker-%02d", m), fmt.Sprint(v))
			copyFile(t, src, filepath.Join(dir, "model.json"))
			writeFile(t, filepath.Join(dir, "model.yaml"), "format: xgboost\nfile: model.json\n")
		}
	}
	writeFile(t, filepath.Join(repo, "ranker-00", "11", "model.yaml"), "format: xgboost\nfile: missing.json\n")
	srv, err := sidecar.New(sidecar.Config{ModelDir: repo, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srv.Reload()
	t.Cleanup(srv.Close)
	return srv
}

// servePage answers one GET of path from the portal's handler, in-process.
func servePage(h fasthttp.RequestHandler, path string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.SetRequestURI(path)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	return &ctx
}

// TestModelsPage200Versions: the models page lists every one of 200 loaded versions and
// the failed one with its error. (How long it takes: BenchmarkModelsPage200Versions.)
func TestModelsPage200Versions(t *testing.T) {
	srv := manyVersions(t)
	p, err := portal.New(portal.Config{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := servePage(p.Handler(), "/ui/")
	body := string(ctx.Response.Body())
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("%d %s", ctx.Response.StatusCode(), body)
	}
	if !strings.Contains(body, "20 models, 201 versions") {
		t.Errorf("the summary does not count 20 models and 201 versions")
	}
	rows := regexp.MustCompile(`(?s)<tr class="state-(\w+)">\s*<td>(?:<a href="/ui/model\?name=([\w-]+)">)?[^<]*(?:</a>)?</td>\s*<td>(\w+)</td>`).FindAllStringSubmatch(body, -1)
	if len(rows) != 201 {
		t.Fatalf("%d version rows, want 201", len(rows))
	}
	states := map[string]int{}
	model := ""
	seen := map[string]bool{}
	for _, r := range rows {
		states[r[1]]++
		if r[2] != "" {
			model = r[2]
		}
		seen[model+"@"+r[3]] = true
	}
	if states["serving"] != 20 || states["loaded"] != 180 || states["failed"] != 1 {
		t.Errorf("states %v: want 20 serving, 180 loaded, 1 failed", states)
	}
	for m := range 20 {
		for v := 1; v <= 10; v++ {
			if k := fmt.Sprintf("ranker-%02d@%d", m, v); !seen[k] {
				t.Errorf("%s is missing", k)
			}
		}
	}
	if !seen["ranker-00@11"] || !strings.Contains(body, "missing.json") {
		t.Errorf("the failed version ranker-00@11 and its error are not shown")
	}
}

// TestPortalHost: a Host header naming another site's DNS name (DNS rebinding) gets 421
// and no page; IP literals, localhost and the names given in Config.Hosts are served.
func TestPortalHost(t *testing.T) {
	e := newEnv(t, false)
	p, err := portal.New(portal.Config{Server: e.srv, Store: e.store, Hosts: []string{"predictd-admin.ns.svc"}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetUI(p.Handler(), false)
	_, port, _ := strings.Cut(strings.TrimPrefix(e.base, "http://"), ":")
	for host, want := range map[string]int{
		"":                                   http.StatusOK, // the listener's own address
		"localhost:" + port:                  http.StatusOK,
		"LOCALHOST":                          http.StatusOK,
		"[::1]:" + port:                      http.StatusOK,
		"predictd-admin.ns.svc:" + port:      http.StatusOK,
		"rebind.attacker.example:" + port:    http.StatusMisdirectedRequest,
		"attacker.example":                   http.StatusMisdirectedRequest,
		"127.0.0.1.attacker.example:" + port: http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequest(http.MethodGet, e.base+"/ui/features", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %q: %d, want %d", host, resp.StatusCode, want)
		}
		if want != http.StatusOK && (strings.Contains(string(body), "attacker") || strings.Contains(string(body), "<table")) {
			t.Errorf("Host %q: the refusal echoes the name or shows a page:\n%s", host, body)
		}
	}
}

// TestProfilesListingReused: the profiles listing is kept for a moment (a report page's
// many file requests share one) and then taken again: a run written meanwhile shows, and
// a run whose result.json changed is redrawn from the new one.
func TestProfilesListingReused(t *testing.T) {
	src := filepath.Join("..", "..", "profiles", "ranking-1k", "example", "result.json")
	dir := t.TempDir()
	copyFile(t, src, filepath.Join(dir, "a", "result.json"))
	now := time.Unix(1_800_000_000, 0)
	p, err := portal.New(portal.Config{Server: manyVersions(t), Profiles: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := p.Handler()
	status := func(path string) (int, string) {
		ctx := servePage(h, path)
		return ctx.Response.StatusCode(), string(ctx.Response.Body())
	}
	if st, body := status("/ui/profiles/r/a/index.html"); st != 200 {
		t.Fatalf("run a: %d %s", st, body)
	}
	copyFile(t, src, filepath.Join(dir, "b", "result.json"))
	if st, _ := status("/ui/profiles/r/b/index.html"); st != 404 {
		t.Errorf("run b within the reuse window: %d, want 404 (the kept listing)", st)
	}
	r, err := loadtest.LoadResult(src)
	if err != nil {
		t.Fatal(err)
	}
	r.Scenario = "renamed-scenario"
	if err := loadtest.WriteResult(filepath.Join(dir, "a"), r); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute) // a modification time unlike the copy's
	if err := os.Chtimes(filepath.Join(dir, "a", "result.json"), later, later); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if st, body := status("/ui/profiles/r/b/index.html"); st != 200 {
		t.Errorf("run b after the reuse window: %d %s", st, body)
	}
	if st, body := status("/ui/profiles/r/a/index.html"); st != 200 || !strings.Contains(body, "renamed-scenario") {
		t.Errorf("run a after its result.json changed: %d, scenario shown: %v", st, strings.Contains(body, "renamed-scenario"))
	}
}
