package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/valyala/fasthttp"
)

// tryPage is /ui/try: a form built from the serving version's features, and after a
// POST the answer.
type tryPage struct {
	Nav     string
	Model   sidecar.ModelStatus
	Serving *sidecar.VersionStatus
	// Request are the request features' inputs, Keys the entity keys of the store-backed
	// ones (one input per key name), Stored the store-backed features.
	Request []field
	Keys    []field
	Stored  []featureRow
	ID      string
	Body    string // the pasted JSON body, as sent
	// NeedToken: the form asks for the admin token (Config.Token).
	NeedToken bool
	Result    *tryResult
}

// field is one form input and its submitted value. Labels is how many category labels
// the feature takes (sent as a string when the value is not a number), 0 for none.
type field struct {
	Name, Value string
	Labels      int
}

// tryResult is one prediction, asked twice: transformed and raw.
type tryResult struct {
	Sent       string // the body of the transformed request
	Status     int
	Answer     string // the response, indented
	Error      string // the API's error message, when Status is not 200
	Took       time.Duration
	RawTook    time.Duration
	Version    string
	Degraded   []string
	Rows       []tryRow
	Lookups    []lookup // the store-backed features' values, as the store holds them now
	LookupNote string
}

type tryRow struct {
	ID         string
	Score, Raw []float64
}

// lookup is one store-backed feature's value for the keys the form gave.
type lookup struct {
	Group, Key, Entity, Feature, Type string
	Value                             string
	From                              string
	Age                               time.Duration
	Found                             bool
}

func (p *Portal) tryModel(ctx *fasthttp.RequestCtx, name string) (*tryPage, bool) {
	m, ok := p.cfg.Server.Registry().Model(name)
	if !ok {
		p.fail(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no model %q is loaded (the models page lists them)", name))
		return nil, false
	}
	d := &tryPage{Nav: "models", Model: m, NeedToken: p.cfg.Token != ""}
	for i := range m.Versions {
		if m.Versions[i].State == "serving" {
			d.Serving = &m.Versions[i]
		}
	}
	if d.Serving == nil {
		p.fail(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("model %q has no serving version", name))
		return nil, false
	}
	keys := map[string]bool{}
	for _, r := range p.versionFeatures(d.Serving) {
		if r.Group == "" {
			d.Request = append(d.Request, field{Name: r.Name, Labels: d.Serving.CategoryLabels[r.Name]})
			continue
		}
		d.Stored = append(d.Stored, r)
		if !keys[r.Key] {
			keys[r.Key] = true
			d.Keys = append(d.Keys, field{Name: r.Key})
		}
	}
	return d, true
}

func (p *Portal) tryGet(ctx *fasthttp.RequestCtx) {
	d, ok := p.tryModel(ctx, string(ctx.QueryArgs().Peek("model")))
	if !ok {
		return
	}
	d.ID = "candidate-1"
	p.render(ctx, fasthttp.StatusOK, "try", d)
}

// tryPost scores the form (or the pasted body) through the sidecar's predict path.
func (p *Portal) tryPost(ctx *fasthttp.RequestCtx) {
	args := ctx.PostArgs()
	d, ok := p.tryModel(ctx, string(args.Peek("model")))
	if !ok {
		return
	}
	d.ID = string(args.Peek("id"))
	d.Body = strings.TrimSpace(string(args.Peek("body")))
	for i := range d.Request {
		d.Request[i].Value = strings.TrimSpace(string(args.Peek("f." + d.Request[i].Name)))
	}
	for i := range d.Keys {
		d.Keys[i].Value = strings.TrimSpace(string(args.Peek("k." + d.Keys[i].Name)))
	}
	var body []byte
	if d.Body != "" {
		body = []byte(d.Body)
	} else {
		var err error
		if body, err = d.formBody(); err != nil {
			d.Result = &tryResult{Error: err.Error()}
			p.render(ctx, fasthttp.StatusBadRequest, "try", d)
			return
		}
	}
	d.Result = p.score(body)
	d.Result.Lookups, d.Result.LookupNote = p.lookups(d)
	p.render(ctx, fasthttp.StatusOK, "try", d)
}

// formBody is the JSON request of the form: one candidate with the typed-in features,
// the entity keys as request-level keys.
func (d *tryPage) formBody() ([]byte, error) {
	type cand struct {
		ID       string         `json:"id,omitempty"`
		Features map[string]any `json:"features"`
	}
	req := struct {
		Model      string            `json:"model"`
		Keys       map[string]string `json:"keys,omitempty"`
		Candidates []cand            `json:"candidates"`
	}{Model: d.Model.Name, Keys: map[string]string{}}
	c := cand{ID: d.ID, Features: map[string]any{}}
	for _, f := range d.Request {
		if f.Value == "" {
			continue // missing: the model sees NaN
		}
		x, err := strconv.ParseFloat(f.Value, 64)
		switch {
		case err == nil:
			c.Features[f.Name] = x
		case f.Value == "true" || f.Value == "false":
			c.Features[f.Name] = f.Value == "true"
		case f.Labels > 0:
			c.Features[f.Name] = f.Value // a category label
		default:
			return nil, fmt.Errorf("feature %s: %q is not a number", f.Name, f.Value)
		}
	}
	for _, k := range d.Keys {
		if k.Value != "" {
			req.Keys[k.Name] = k.Value
		}
	}
	req.Candidates = []cand{c}
	return json.Marshal(req)
}

// withOutput returns body with "output" set: a JSON object gets the field added (or
// replaced); anything else is sent as it is, for the API to answer its error.
func withOutput(body []byte, output string) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return body
	}
	obj["output"] = json.RawMessage(strconv.Quote(output))
	b, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return b
}

// score asks the sidecar twice, for the transformed score and for the raw margin.
func (p *Portal) score(body []byte) *tryResult {
	tb := withOutput(body, "transformed")
	res := &tryResult{Sent: string(tb)}
	status, resp, took := p.cfg.Server.Predict(tb, "application/json", nil)
	res.Status, res.Took = status, took
	var ind bytes.Buffer
	if json.Indent(&ind, resp, "", "  ") == nil {
		res.Answer = ind.String()
	} else {
		res.Answer = string(resp)
	}
	type answer struct {
		Version     string   `json:"version"`
		Degraded    []string `json:"degraded_groups"`
		Predictions []struct {
			ID     string    `json:"id"`
			Score  *float64  `json:"score"`
			Scores []float64 `json:"scores"`
		} `json:"predictions"`
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	var a answer
	if err := json.Unmarshal(resp, &a); err != nil {
		res.Error = "the answer is not JSON: " + err.Error()
		return res
	}
	if status != fasthttp.StatusOK {
		res.Error = a.Error.Message
		return res
	}
	res.Version, res.Degraded = a.Version, a.Degraded
	for _, pr := range a.Predictions {
		r := tryRow{ID: pr.ID, Score: pr.Scores}
		if len(pr.Scores) == 0 && pr.Score != nil {
			r.Score = []float64{*pr.Score}
		}
		res.Rows = append(res.Rows, r)
	}
	rawStatus, rawResp, rawTook := p.cfg.Server.Predict(withOutput(body, "raw"), "application/json", nil)
	res.RawTook = rawTook
	var ra answer
	if rawStatus == fasthttp.StatusOK && json.Unmarshal(rawResp, &ra) == nil && len(ra.Predictions) == len(res.Rows) {
		for i, pr := range ra.Predictions {
			res.Rows[i].Raw = pr.Scores
			if len(pr.Scores) == 0 && pr.Score != nil {
				res.Rows[i].Raw = []float64{*pr.Score}
			}
		}
	}
	return res
}

// lookups reads the store-backed features for the keys the form gave, with where a
// request reads them from and their age.
func (p *Portal) lookups(d *tryPage) ([]lookup, string) {
	if len(d.Stored) == 0 {
		return nil, ""
	}
	if p.cfg.Store == nil {
		return nil, "the sidecar has no feature store to look the keys up in"
	}
	keyOf := map[string]string{}
	for _, k := range d.Keys {
		keyOf[k.Name] = k.Value
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cache := map[[2]string]*features.Inspection{}
	now := p.cfg.Now()
	var out []lookup
	for _, r := range d.Stored {
		ent := keyOf[r.Key]
		l := lookup{Group: r.Group, Key: r.Key, Entity: ent, Feature: r.Name, Type: r.Type}
		if ent == "" {
			l.From, l.Value = "default", defaultText(r.Default)+" (no "+r.Key+" given)"
			out = append(out, l)
			continue
		}
		in, ok := cache[[2]string{r.Group, ent}]
		if !ok {
			var err error
			if in, err = p.cfg.Store.Inspect(ctx, r.Group, ent); err != nil {
				l.From, l.Value = "error", err.Error()
				out = append(out, l)
				continue
			}
			cache[[2]string{r.Group, ent}] = in
		}
		l.Found = in.Found
		if in.Found {
			l.Age = now.Sub(in.Updated)
		}
		for _, f := range in.Features {
			if f.Feature.Name != r.Name {
				continue
			}
			l.From = f.From
			switch {
			case f.Stored:
				l.Value = valueText(f.Feature, f.Value)
			case f.From == "cache":
				l.Value = floatsText(f.CachedVals)
			default:
				l.Value = defaultText(r.Default)
			}
		}
		out = append(out, l)
	}
	return out, ""
}

func defaultText(d *float64) string {
	if d == nil {
		return "missing (NaN)"
	}
	return "default " + fmtNum(*d)
}

func floatsText(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmtNum(x)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// valueText prints a decoded store value by its feature's type.
func valueText(f *features.Feature, v features.Value) string {
	switch f.Type {
	case features.Int64:
		return strconv.FormatInt(v.I, 10)
	case features.String:
		return strconv.Quote(string(v.S))
	case features.List, features.Embedding:
		xs := make([]float64, len(v.V))
		for i, x := range v.V {
			xs[i] = float64(x)
		}
		return floatsText(xs)
	}
	return fmtNum(v.F)
}
