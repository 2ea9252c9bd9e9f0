package portal_test

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzPortal sends arbitrary paths, queries and form bodies to the portal: it must
// answer each without a panic, and no page may hold a script element beyond the one of
// its layout, whatever the input carried.
func FuzzPortal(f *testing.F) {
	e := newEnv(f, false)
	h := e.portal.Handler()
	for _, s := range [][2]string{
		{"/ui/", ""},
		{"/ui/model?name=claims", ""},
		{"/ui/model?name=%3Cscript%3E", ""},
		{"/ui/features?group=users&key=u1", ""},
		{"/ui/profiles/run?id=ranking-1k/example", ""},
		{"/ui/profiles/r/ranking-1k/example/../../x", ""},
		{"/ui/try", "model=claims&f.VehBrand=6&id=%3Cscript%3E"},
		{"/ui/try", "model=claims-store&k.user_id=u1&f.VehBrand=1e309"},
		{"/ui/try", `model=claims&body={"model":"claims","candidates":[{"id":"<script>","features":{"VehBrand":1}}]}`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, uri, form string) {
		var req fasthttp.Request
		req.SetRequestURI(uri)
		if form != "" {
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/x-www-form-urlencoded")
			req.SetBodyString(form)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		h(&ctx)
		if !strings.HasPrefix(string(ctx.Response.Header.ContentType()), "text/html") {
			return
		}
		if n := strings.Count(strings.ToLower(string(ctx.Response.Body())), "<script"); n > 1 {
			t.Fatalf("%s (form %q): %d script elements in the page", uri, form, n)
		}
	})
}
