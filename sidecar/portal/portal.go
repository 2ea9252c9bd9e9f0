// Package portal is predictd's web UI, served by the sidecar at /ui/ (docs/portal.md):
// the models and their versions, shadows, logs and admission; a live view per model
// from the server's in-process ring (sidecar.Server.Live); a form to try a prediction
// through the same path as POST /v1/predict; the feature store's groups, cache and
// entities; and the load generator's profiles, one by one or two side by side.
//
// Pages are rendered on the server with html/template (every value escaped); a little
// plain JavaScript (assets/static/portal.js) draws the live charts. Everything is
// embedded: no CDN, no build step. The portal changes nothing: its only POSTs run a
// prediction (/ui/try) and look up an entity (/ui/features), and it reloads nothing (POST /v1/admin/reload, behind the admin token,
// does that).
package portal

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/valyala/fasthttp"
)

//go:embed assets
var assets embed.FS

// Config configures a Portal.
type Config struct {
	// Server is the sidecar whose models the portal shows and scores with.
	Server *sidecar.Server
	// Store is the feature store the sidecar reads; nil: no store pages.
	Store *features.Store
	// Profiles is the directory of load-test profiles (--profiles); empty: none.
	Profiles string
	// Logger receives the portal's own errors; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now (tests fix it).
	Now func() time.Time
	// Token, when set (the sidecar's admin token, PREDICTD_ADMIN_TOKEN), is asked for by
	// the two forms that reach beyond what GET /v1/models shows: a prediction and an
	// entity's stored values. A browser cannot send a bearer header from a form, so the
	// forms carry it as a field (posted, never in a URL).
	Token string
	// Hosts are the host names (without port) besides IP literals and localhost that a
	// request's Host header may name (--ui-hosts). Checking Host defeats DNS rebinding: a
	// page on another site whose name is made to resolve to this address would otherwise
	// read the portal as if it were its own origin.
	Hosts []string
}

// Portal serves the UI. It is safe for concurrent use.
type Portal struct {
	cfg   Config
	pages map[string]*template.Template
	files fs.FS // assets/static

	reportsMu sync.Mutex
	reports   map[string]*report // rendered profile reports, by run id
	tmp       string             // where they are rendered; "" until the first

	runsMu   sync.Mutex
	runsList []run     // the last profiles listing (read-only once stored)
	runsAt   time.Time // when it was taken
}

// New builds a Portal; Handler serves it.
func New(cfg Config) (*Portal, error) {
	if cfg.Server == nil {
		return nil, fmt.Errorf("portal: no server")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Portal{cfg: cfg, pages: map[string]*template.Template{}, reports: map[string]*report{}}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	p.files = static
	for _, name := range []string{"models", "model", "try", "features", "profiles", "profile", "compare", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// Close removes the rendered profile reports.
func (p *Portal) Close() error {
	p.reportsMu.Lock()
	defer p.reportsMu.Unlock()
	return p.removeReports()
}

// Handler serves every path under /ui/.
func (p *Portal) Handler() fasthttp.RequestHandler { return p.serve }

// securityHeaders keep the pages to their own scripts and styles: no inline script runs,
// so even a value that escaped escaping could not execute; no other site may frame them.
func securityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" makes a browser send Origin: null on the form post
	h.Set("Cache-Control", "no-store")
}

func (p *Portal) serve(ctx *fasthttp.RequestCtx) {
	securityHeaders(ctx)
	if !p.hostAllowed(string(ctx.Host())) {
		// The name is not echoed: error text carries no raw input.
		p.fail(ctx, fasthttp.StatusMisdirectedRequest, "the portal answers requests for an IP address, localhost or a name listed with --ui-hosts; the Host header named another")
		return
	}
	if string(ctx.Path()) == "/favicon.ico" {
		p.static(ctx, "favicon.svg")
		return
	}
	rest := strings.TrimPrefix(string(ctx.Path()), sidecar.UIPrefix)
	if strings.HasPrefix(rest, "static/") {
		p.static(ctx, strings.TrimPrefix(rest, "static/"))
		return
	}
	if strings.HasPrefix(rest, "profiles/r/") {
		p.reportFile(ctx, strings.TrimPrefix(rest, "profiles/r/"))
		return
	}
	if (rest == "try" || rest == "features") && ctx.IsPost() {
		if !sameOrigin(ctx) {
			p.fail(ctx, fasthttp.StatusForbidden, "this form may only be posted from the portal's own pages (the Origin header names another site)")
			return
		}
		if !p.tokenOK(ctx) {
			p.fail(ctx, fasthttp.StatusUnauthorized, "this sidecar has an admin token (PREDICTD_ADMIN_TOKEN): enter it in the form's token field")
			return
		}
		if rest == "try" {
			p.tryPost(ctx)
		} else {
			p.features(ctx)
		}
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		p.fail(ctx, fasthttp.StatusMethodNotAllowed, "the portal is read-only: use GET (only the prediction and entity forms post, to /ui/try and /ui/features)")
		return
	}
	switch rest {
	case "":
		p.models(ctx)
	case "model":
		p.model(ctx)
	case "try":
		p.tryGet(ctx)
	case "features":
		p.features(ctx)
	case "profiles":
		p.profiles(ctx)
	case "profiles/run":
		p.profile(ctx)
	case "profiles/compare":
		p.compare(ctx)
	case "profiles/compare.svg":
		p.compareSVG(ctx)
	case "api/live":
		p.liveJSON(ctx)
	default:
		p.fail(ctx, fasthttp.StatusNotFound, "no such page")
	}
}

// tokenOK reports whether the posted form carries Config.Token (compared in constant
// time); true when no token is set.
func (p *Portal) tokenOK(ctx *fasthttp.RequestCtx) bool {
	if p.cfg.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare(ctx.PostArgs().Peek("token"), []byte(p.cfg.Token)) == 1
}

// sameOrigin refuses a cross-site form post: a browser names the posting page's origin,
// which must be this host. A request without Origin (curl, an old browser) is allowed:
// it is what POST /v1/predict accepts anyway.
// hostAllowed reports whether a request's Host header (host[:port]) names an IP literal,
// localhost or one of Config.Hosts. An empty Host (HTTP/1.0) is allowed: a browser always
// sends one.
func (p *Portal) hostAllowed(host string) bool {
	if host == "" {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	for _, h := range p.cfg.Hosts {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

func sameOrigin(ctx *fasthttp.RequestCtx) bool {
	o := string(ctx.Request.Header.Peek("Origin"))
	if o == "" {
		return true
	}
	_, host, ok := strings.Cut(o, "://")
	return ok && host == string(ctx.Host())
}

func (p *Portal) static(ctx *fasthttp.RequestCtx, name string) {
	data, err := fs.ReadFile(p.files, name)
	if err != nil || strings.Contains(name, "/") {
		p.fail(ctx, fasthttp.StatusNotFound, "no such file")
		return
	}
	ctx.SetContentType(mime.TypeByExtension(path.Ext(name)))
	ctx.Response.Header.Set("Cache-Control", "max-age=300")
	ctx.SetBody(data)
}

// render executes page with data inside the layout.
func (p *Portal) render(ctx *fasthttp.RequestCtx, status int, page string, data any) {
	var b bytes.Buffer
	if err := p.pages[page].Execute(&b, data); err != nil {
		p.cfg.Logger.Error("BUG: portal page does not render", "page", page, "err", err)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("internal error: the page does not render\n")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(b.Bytes())
}

type errorPage struct {
	Title, Message string
	Nav            string
}

func (p *Portal) fail(ctx *fasthttp.RequestCtx, status int, msg string) {
	p.render(ctx, status, "error", errorPage{Title: fasthttp.StatusMessage(status), Message: msg})
}

func (p *Portal) writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		p.fail(ctx, fasthttp.StatusInternalServerError, "cannot encode: "+err.Error())
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// liveJSON serves one loaded model's ring for the live charts ("" for the requests that
// named no loaded model).
func (p *Portal) liveJSON(ctx *fasthttp.RequestCtx) {
	name := string(ctx.QueryArgs().Peek("model"))
	if _, ok := p.cfg.Server.Registry().Model(name); !ok && name != "" {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		p.writeJSON(ctx, map[string]string{"error": "no such model is loaded"})
		return
	}
	p.writeJSON(ctx, p.cfg.Server.Live(name))
}

var funcs = template.FuncMap{
	"num":   fmtNum,
	"exact": func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) },
	"ms":    func(s float64) string { return strconv.FormatFloat(s*1e3, 'f', 1, 64) },
	"pct":   func(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" },
	"since": fmtSince,
	"time": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"bytes": fmtBytes,
	"last":  func(col, width int) int { return col + width - 1 },
	"sum64": func(a, b uint64) uint64 { return a + b },
	"ptr":   func(t time.Time) *time.Time { return &t },
	"dur":   func(d features.Duration) string { return time.Duration(d).String() },
}

// fmtNum prints a float exactly when short, else to 6 significant digits.
func fmtNum(x float64) string {
	if math.IsNaN(x) {
		return "NaN"
	}
	s := strconv.FormatFloat(x, 'g', -1, 64)
	if len(s) > 10 {
		s = strconv.FormatFloat(x, 'g', 6, 64)
	}
	return s
}

func fmtSince(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Microsecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
