package portal

import (
	"fmt"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/valyala/fasthttp"
)

// modelsPage is /ui/: every model and version.
type modelsPage struct {
	Nav        string
	Status     sidecar.ModelsStatus
	Versions   int
	HasStore   bool
	Overloaded uint64
}

func (p *Portal) models(ctx *fasthttp.RequestCtx) {
	st := p.cfg.Server.Registry().Models()
	d := modelsPage{Nav: "models", Status: st, HasStore: p.cfg.Store != nil}
	for _, m := range st.Models {
		d.Versions += len(m.Versions)
	}
	if st.Overloaded != nil {
		d.Overloaded = *st.Overloaded
	}
	p.render(ctx, fasthttp.StatusOK, "models", d)
}

// featureRow is one input of a version: a request feature (one column) or a
// store-backed one (Width columns from Column).
type featureRow struct {
	Column, Width int
	Name, Type    string
	Group, Key    string // empty for request features
	Default       *float64
}

// versionFeatures lists v's inputs in column order, store-backed ones typed by their
// group's declaration.
func (p *Portal) versionFeatures(v *sidecar.VersionStatus) []featureRow {
	stored := map[int]sidecar.StoreFeatureStatus{}
	for _, s := range v.StoreFeatures {
		stored[s.Column] = s
	}
	var rows []featureRow
	for col := 0; col < len(v.Features); col++ {
		s, ok := stored[col]
		if !ok {
			rows = append(rows, featureRow{Column: col, Width: 1, Name: v.Features[col], Type: "number"})
			continue
		}
		r := featureRow{Column: col, Width: s.Width, Name: s.Name, Type: "?", Group: s.Group, Key: s.Key, Default: s.Default}
		if p.cfg.Store != nil {
			if g, ok := p.cfg.Store.Group(s.Group); ok {
				if f, err := g.Feature(s.Name); err == nil {
					r.Type = typeName(f)
					if r.Default == nil {
						r.Default = f.Default
					}
				}
			}
		}
		rows = append(rows, r)
		col += s.Width - 1
	}
	return rows
}

func typeName(f *features.Feature) string {
	switch f.Type {
	case features.List:
		return fmt.Sprintf("list[%d]", f.Len)
	case features.Embedding:
		return fmt.Sprintf("embedding[%d]", f.Dim)
	}
	return string(f.Type)
}

// modelPage is /ui/model?name=: one model in full, with its live charts.
type modelPage struct {
	Nav      string
	Model    sidecar.ModelStatus
	Serving  *sidecar.VersionStatus
	Features []featureRow
}

func (p *Portal) model(ctx *fasthttp.RequestCtx) {
	name := string(ctx.QueryArgs().Peek("name"))
	m, ok := p.cfg.Server.Registry().Model(name)
	if !ok {
		p.fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no model %q is loaded (the models page lists them)", name))
		return
	}
	d := modelPage{Nav: "models", Model: m}
	for i := range m.Versions {
		if m.Versions[i].State == "serving" {
			d.Serving = &m.Versions[i]
			d.Features = p.versionFeatures(d.Serving)
		}
	}
	p.render(ctx, fasthttp.StatusOK, "model", d)
}
