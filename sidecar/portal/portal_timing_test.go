package portal_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

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

// BenchmarkReportFile100Profiles serves one file of a rendered report (the latency plot)
// with 100 runs under --profiles: what each of the several requests a report page makes
// costs. Its baseline, BenchmarkReportFile100ProfilesRelisted, moves the portal's clock
// past the listing's reuse window before each request, so every request walks the
// directory and reads every result.json again, as each did before the listing was kept.
func BenchmarkReportFile100Profiles(b *testing.B) { benchReportFile(b, false) }

func BenchmarkReportFile100ProfilesRelisted(b *testing.B) { benchReportFile(b, true) }

func benchReportFile(b *testing.B, relist bool) {
	src := filepath.Join("..", "..", "profiles", "ranking-1k", "example", "result.json")
	dir := b.TempDir()
	for i := range 100 {
		copyFile(b, src, filepath.Join(dir, "runs", fmt.Sprintf("run-%03d", i), "result.json"))
	}
	now := time.Unix(1_800_000_000, 0)
	p, err := portal.New(portal.Config{Server: manyVersions(b), Profiles: dir, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	h := p.Handler()
	const path = "/ui/profiles/r/runs/run-042/latency.svg"
	if ctx := servePage(h, path); ctx.Response.StatusCode() != 200 { // renders the report once
		b.Fatalf("%d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		if relist {
			now = now.Add(time.Minute)
		}
		if ctx := servePage(h, path); ctx.Response.StatusCode() != 200 {
			b.Fatal(ctx.Response.StatusCode())
		}
	}
}
