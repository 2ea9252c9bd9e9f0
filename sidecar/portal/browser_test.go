package portal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/predictd/predictd/internal/browsertest"

	"github.com/chromedp/chromedp"
)

// PREDICTD_UI_SCREENSHOTS=1 (browsertest.ScreenshotsEnv) makes TestPortalInBrowser save a
// screenshot of each page in docs/img/ (the ones docs/portal.md shows).

// browser is the portal test's headless Chromium; console errors and exceptions are
// problems.
type browser struct{ *browsertest.Browser }

func newBrowser(t *testing.T) *browser {
	return &browser{browsertest.New(t, browsertest.Options{Width: 1200, Height: 820})}
}

func step[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	return browsertest.Run(t, b.Browser, what, a)
}

// shot saves the page as docs/img/portal-NAME.png when screenshots are asked for.
func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	b.Shot(t, filepath.Join("..", "..", "docs", "img", "portal-"+name+".png"))
}

func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	b.Do(t, "wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	return step(t, b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// await evaluates expr until it returns a non-empty string, across the navigation a
// form's submission starts (an evaluation in the page being left fails; it is retried).
func (b *browser) await(t *testing.T, expr string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil && v != "" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", expr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// imageLoaded reports whether the img sel has decoded (a broken image has no width).
func (b *browser) imageLoaded(t *testing.T, sel string) bool {
	t.Helper()
	return step(t, b, "image "+sel, chromedp.Poll[bool](fmt.Sprintf(`(() => { const i = document.querySelector(%q); return i && i.complete && i.naturalWidth > 0; })()`, sel),
		chromedp.WithPollingTimeout(10*time.Second)))
}

var claimsFeatures = map[string]string{"VehBrand": "6", "VehPower": "3", "VehGas": "0", "Region": "4", "Area": "0",
	"VehAge": "18", "DrivAge": "55", "BonusMalus": "50", "Density": "43"}

// fillAndPredict fills the try form of model with the features (those it has) and
// keys, submits it and returns the score the page shows.
func (b *browser) fillAndPredict(t *testing.T, base, model string, feats map[string]string, keys map[string]string) string {
	t.Helper()
	b.Do(t, "try page", chromedp.Navigate(base+"/ui/try?model="+model), chromedp.WaitVisible(chromedp.CSS("#try-form")))
	ids := step(t, b, "form inputs", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#try-form input[id^=f-]")).map(i => i.id)`))
	for _, id := range ids {
		v, ok := feats[strings.TrimPrefix(id, "f-")]
		if !ok {
			t.Fatalf("%s: the form asks for %s, which the test does not know", model, id)
		}
		b.Do(t, "fill "+id, chromedp.SetValue(chromedp.CSS("#"+id), v))
	}
	for k, v := range keys {
		b.Do(t, "fill key "+k, chromedp.SetValue(chromedp.CSS("#k-"+k), v))
	}
	b.Do(t, "submit", chromedp.Click(chromedp.CSS("#submit")))
	got := b.await(t, `(() => { const s = document.querySelector("#score-0"); if (s) return "score:" + s.textContent; const e = document.querySelector("#try-error, #error"); return e ? "error:" + e.textContent : ""; })()`)
	score, ok := strings.CutPrefix(got, "score:")
	if !ok {
		t.Fatalf("%s: the form answered %s", model, got)
	}
	return score
}

// TestPortalInBrowser drives every page in headless Chromium against a real sidecar:
// the models, a model's live charts and shadows, the prediction form (its score must
// equal /v1/predict's), an entity lookup, a profile, two profiles compared. Any console
// error, JavaScript exception or failed load fails it.
func TestPortalInBrowser(t *testing.T) {
	e := newEnv(t, true)
	ui := e.ui(true)
	b := newBrowser(t)

	// Traffic first, so the live charts and the shadow have something to show.
	body := `{"model":"claims","candidates":[` + strings.Repeat(`{"id":"a","features":{"VehBrand":6,"VehPower":3,"DrivAge":55,"BonusMalus":50}},`, 4) +
		`{"id":"b","features":{"VehBrand":2,"VehPower":7,"DrivAge":25,"BonusMalus":90}}]}`
	for range 30 {
		apiScore(t, e.base, `{"model":"claims","candidates":[{"id":"a","features":{"VehBrand":6}}]}`)
	}
	for range 10 {
		postJSON(t, e.base, body)
		time.Sleep(200 * time.Millisecond) // over a few seconds, for the charts
	}
	postJSON(t, e.base, `{"model":"claims","candidates":[{"id":"x","features":{"nope":1}}]}`) // an unknown_feature error

	// Models.
	b.Do(t, "models page", chromedp.Navigate(ui+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#models")))
	models := b.text(t, "#models")
	for _, want := range []string{"claims", "claims-next", "claims-store", "serving", "lightgbm"} {
		if !strings.Contains(models, want) {
			t.Errorf("models page lacks %q:\n%s", want, models)
		}
	}
	b.shot(t, "models")
	b.Check(t, "models page")

	// One model: live charts fed by the ring, the shadow's agreement.
	b.Do(t, "model page", chromedp.Navigate(ui+"/ui/model?name=claims"), chromedp.WaitVisible(chromedp.CSS("#live")))
	status := step(t, b, "live status", chromedp.Poll[string](`(() => { const s = document.getElementById("live-status").textContent; return s.startsWith("41 requests in the last") ? s : false; })()`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if m := regexp.MustCompile(`^(\d+) requests`).FindStringSubmatch(status); m == nil || m[1] != "41" {
		t.Errorf("live status %q: want the 41 predictions sent (30 + 10 + 1 error)", status)
	}
	if codes := b.text(t, "#error-codes"); !strings.Contains(codes, "unknown_feature") {
		t.Errorf("error legend %q lacks unknown_feature", codes)
	}
	drawn := step(t, b, "canvas", chromedp.Evaluate[bool](`(() => { const c = document.getElementById("chart-latency"); const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) return true; } return false; })()`))
	if !drawn {
		t.Error("the latency chart is blank")
	}
	shadows := b.text(t, "#shadows")
	if !strings.Contains(shadows, "claims-next@1") {
		t.Errorf("shadows table: %s", shadows)
	}
	if f := b.text(t, "#features"); !strings.Contains(f, "VehBrand") || !strings.Contains(f, "request") {
		t.Errorf("features table: %s", f)
	}
	b.shot(t, "model")
	b.Check(t, "model page")

	// Try: the demo model, then the store-backed one; each score must be the API's.
	got := b.fillAndPredict(t, ui, "claims", claimsFeatures, nil)
	want := apiScore(t, e.base, `{"model":"claims","candidates":[{"id":"candidate-1","features":{"VehBrand":6,"VehPower":3,"VehGas":0,"Region":4,"Area":0,"VehAge":18,"DrivAge":55,"BonusMalus":50,"Density":43}}]}`)
	if g, err := strconv.ParseFloat(got, 64); err != nil || g != want {
		t.Errorf("claims: the form shows %q, /v1/predict answers %v", got, want)
	}
	b.Check(t, "try claims")
	got = b.fillAndPredict(t, ui, "claims-store", claimsFeatures, map[string]string{"user_id": "u1"})
	want = apiScore(t, e.base, `{"model":"claims-store","keys":{"user_id":"u1"},"candidates":[{"id":"candidate-1","features":{"VehBrand":6,"VehPower":3,"VehGas":0,"Region":4,"Area":0,"VehAge":18,"DrivAge":55}}]}`)
	if g, err := strconv.ParseFloat(got, 64); err != nil || g != want {
		t.Errorf("claims-store: the form shows %q, /v1/predict answers %v", got, want)
	}
	lookups := b.text(t, "#lookups")
	for _, want := range []string{"BonusMalus", "Density", "user_id=u1", "50", "43"} {
		if !strings.Contains(lookups, want) {
			t.Errorf("store lookups lack %q:\n%s", want, lookups)
		}
	}
	if raw := b.text(t, "#raw-0"); raw == "" {
		t.Error("no raw margin shown")
	}
	step(t, b, "scroll to the answer", chromedp.Evaluate[bool](`(document.querySelector("h2").scrollIntoView(), true)`))
	b.shot(t, "try")
	b.Check(t, "try claims-store")

	// Features: u1 was just read by a prediction, so the cache holds it; u2 was not.
	b.Do(t, "features page", chromedp.Navigate(ui+"/ui/features"), chromedp.WaitVisible(chromedp.CSS("#lookup-form")),
		chromedp.SetValue(chromedp.CSS("#in-key"), "u1"), chromedp.Click(chromedp.CSS("#lookup")))
	b.await(t, entityShown("u1"))
	if ent := b.text(t, "#entity"); !strings.Contains(ent, "cache") || !strings.Contains(ent, "50") {
		t.Errorf("u1, read by a prediction, should come from the cache:\n%s", ent)
	}
	if st := b.text(t, "#entity-status"); !regexp.MustCompile(`updated \d+m\d+s ago`).MatchString(st) { // loaded 90 s before the test began
		t.Errorf("u1 was loaded 90s ago; the page says %q", st)
	}
	b.shot(t, "features")
	b.Do(t, "lookup u2", chromedp.SetValue(chromedp.CSS("#in-key"), "u2"), chromedp.Click(chromedp.CSS("#lookup")))
	b.await(t, entityShown("u2"))
	if ent := b.text(t, "#entity"); !strings.Contains(ent, "2100") || !strings.Contains(ent, "embedded") {
		t.Errorf("u2 should come from the embedded store:\n%s", ent)
	}
	b.Check(t, "features page")

	// Profiles: the list, one opened, two compared.
	b.Do(t, "profiles page", chromedp.Navigate(ui+"/ui/profiles"), chromedp.WaitVisible(chromedp.CSS("#runs")))
	if runs := b.text(t, "#runs"); !strings.Contains(runs, "ranking-1k/example") || !strings.Contains(runs, "ranking-1k/slower") {
		t.Errorf("profiles: %s", runs)
	}
	b.shot(t, "profiles")
	b.Do(t, "open a profile", chromedp.Click(chromedp.CSS(`#runs a[href^="/ui/profiles/run"]`)))
	b.await(t, `document.querySelector("#steps") ? "ok" : ""`)
	if !b.imageLoaded(t, `img[src$="latency.svg"]`) {
		t.Error("the profile's latency plot did not load")
	}
	b.shot(t, "profile")
	b.Check(t, "profile page")
	b.Do(t, "compare", chromedp.Navigate(ui+"/ui/profiles"), chromedp.WaitVisible(chromedp.CSS("#compare-form")),
		chromedp.Click(chromedp.CSS("#compare")))
	b.await(t, `document.querySelector("#compare-steps") ? "ok" : ""`)
	if !b.imageLoaded(t, "#compare-plot") {
		t.Error("the comparison plot did not load")
	}
	if f := b.text(t, "#findings"); !strings.Contains(f, "p99") {
		t.Errorf("findings: %s", f)
	}
	b.shot(t, "compare")
	b.Check(t, "compare page")

	// The generator's own report, rendered from result.json.
	b.Do(t, "full report", chromedp.Navigate(ui+"/ui/profiles/r/ranking-1k/example/index.html"),
		chromedp.WaitVisible(chromedp.CSS("h1")))
	title := step(t, b, "report title", chromedp.Title())
	if !strings.Contains(title, "ranking-1k") {
		t.Errorf("report title %q", title)
	}
	b.Check(t, "full report")
}

// entityShown is an expression true once the features page shows entity key.
func entityShown(key string) string {
	return fmt.Sprintf(`(() => { const h = document.querySelector("h2"); return document.querySelector("#entity") && h && h.textContent.endsWith(" " + %q) ? "ok" : ""; })()`, key)
}
