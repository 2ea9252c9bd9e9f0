package portal_test

import (
	"encoding/json"
	"testing"

	"github.com/predictd/predictd/sidecar/portal"
)

// BenchmarkModelsPage200Versions renders /ui/ for 20 models × 10 versions (and one
// failed version): the page must stay well under 100 ms. Its baseline,
// BenchmarkModelsJSON200Versions, is GET /v1/models's work for the same registry.
func BenchmarkModelsPage200Versions(b *testing.B) {
	srv := manyVersions(b)
	p, err := portal.New(portal.Config{Server: srv})
	if err != nil {
		b.Fatal(err)
	}
	h := p.Handler()
	b.ReportAllocs()
	for b.Loop() {
		ctx := servePage(h, "/ui/")
		if ctx.Response.StatusCode() != 200 {
			b.Fatal(ctx.Response.StatusCode())
		}
		b.SetBytes(int64(len(ctx.Response.Body())))
	}
}

func BenchmarkModelsJSON200Versions(b *testing.B) {
	srv := manyVersions(b)
	b.ReportAllocs()
	for b.Loop() {
		data, err := json.MarshalIndent(srv.Registry().Models(), "", "  ")
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}
