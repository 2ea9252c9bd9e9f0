package portal

import (
	"context"
	"fmt"
	"time"

	"github.com/predictd/predictd/features"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

// featuresPage is /ui/features: the store's groups and cache, and one entity when the
// query names a group and key.
type featuresPage struct {
	Nav      string
	HasStore bool
	Backend  string
	Cache    features.CacheStats
	Groups   []groupRow
	Group    string // the lookup form's values
	Key      string
	// NeedToken: the lookup form asks for the admin token (Config.Token).
	NeedToken bool
	Entity    *entityView
	Error     string
}

type groupRow struct {
	G *features.Group
	// Lookups, Hits: the cache counters of /metrics for the group; HitRate is Hits/Lookups
	// (-1 before the first lookup).
	Lookups, Hits, Absent float64
	HitRate               float64
	Features              []featureDecl
}

type featureDecl struct {
	Name, Type, Default string
}

type entityView struct {
	Found   bool
	Updated time.Time
	Age     time.Duration
	Error   string // the backend could not be read
	Rows    []entityRow
}

type entityRow struct {
	Name, Type, Value, From string
	Cached                  string // the cache entry's age and freshness; "" when none
}

// Metric families the hit rate is read from (features/metrics.go's instruments as
// /metrics names them). The hit rate is docs/operations.md's: entity lookups answered
// from the cache (result hit or revalidate) over all entity lookups.
const (
	metricLookups = "predictd_features_cache_lookups_total"
	metricAbsent  = "predictd_features_absent_total"
)

func (p *Portal) features(ctx *fasthttp.RequestCtx) {
	d := featuresPage{Nav: "features", HasStore: p.cfg.Store != nil, NeedToken: p.cfg.Token != "",
		Group: string(ctx.QueryArgs().Peek("group"))}
	if ctx.IsPost() { // an entity lookup (serve has checked the origin and the token)
		d.Group, d.Key = string(ctx.PostArgs().Peek("group")), string(ctx.PostArgs().Peek("key"))
	}
	if p.cfg.Store == nil {
		p.render(ctx, fasthttp.StatusOK, "features", d)
		return
	}
	st := p.cfg.Store
	d.Backend, d.Cache = st.Backend(), st.CacheStats()
	fams, err := p.cfg.Server.MetricFamilies()
	if err != nil {
		d.Error = "cannot read /metrics: " + err.Error()
	}
	for _, g := range st.Groups() {
		r := groupRow{G: g, Lookups: byGroup(fams[metricLookups], g.Name, ""),
			Hits:   byGroup(fams[metricLookups], g.Name, "hit") + byGroup(fams[metricLookups], g.Name, "revalidate"),
			Absent: byGroup(fams[metricAbsent], g.Name, ""), HitRate: -1}
		if r.Lookups > 0 {
			r.HitRate = r.Hits / r.Lookups
		}
		for i := range g.Features {
			f := &g.Features[i]
			def := ""
			if f.Default != nil {
				def = fmtNum(*f.Default)
			}
			r.Features = append(r.Features, featureDecl{Name: f.Name, Type: typeName(f), Default: def})
		}
		d.Groups = append(d.Groups, r)
	}
	if d.Group != "" && d.Key != "" {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		in, err := st.Inspect(c, d.Group, d.Key)
		cancel()
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Entity = p.entity(in)
		}
	}
	p.render(ctx, fasthttp.StatusOK, "features", d)
}

func (p *Portal) entity(in *features.Inspection) *entityView {
	now := p.cfg.Now()
	e := &entityView{Found: in.Found, Updated: in.Updated}
	if in.Found {
		e.Age = now.Sub(in.Updated)
	}
	if in.BackendErr != nil {
		e.Error = in.BackendErr.Error()
	}
	for _, f := range in.Features {
		r := entityRow{Name: f.Feature.Name, Type: typeName(f.Feature), From: f.From}
		switch {
		case f.Stored:
			r.Value = valueText(f.Feature, f.Value)
		case f.From == "cache":
			r.Value = floatsText(f.CachedVals)
		default:
			r.Value = defaultText(f.Feature.Default)
		}
		if !f.Cached.IsZero() {
			fresh := "stale"
			if f.Fresh {
				fresh = "fresh"
			}
			r.Cached = fmt.Sprintf("read %s ago (%s)", fmtSince(now.Sub(f.Cached)), fresh)
		}
		e.Rows = append(e.Rows, r)
	}
	return e
}

// byGroup sums a counter family's series whose group label is g and, unless result is
// empty, whose result label is result.
func byGroup(f *dto.MetricFamily, g, result string) float64 {
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.GetMetric() {
		group, res := false, result == ""
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "group":
				group = l.GetValue() == g
			case "result":
				res = res || l.GetValue() == result
			}
		}
		if group && res {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
