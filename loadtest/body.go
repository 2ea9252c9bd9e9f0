package loadtest

import (
	"math"
	"math/rand"
	"strconv"

	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// Content types of the sidecar's wire formats.
const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// Body is one pregenerated request body.
type Body struct {
	Data       []byte
	Candidates int // predictions it asks for
}

// keyDrawer draws entity-key values from a KeySpec's distribution.
type keyDrawer struct {
	spec KeySpec
	zipf *rand.Zipf
}

func newKeyDrawer(spec KeySpec, r *rand.Rand) *keyDrawer {
	d := &keyDrawer{spec: spec}
	if spec.Dist == "zipf" && spec.Cardinality > 1 {
		d.zipf = rand.NewZipf(r, spec.ZipfS, 1, uint64(spec.Cardinality-1))
	}
	return d
}

func (d *keyDrawer) draw(r *rand.Rand) int {
	if d.zipf != nil {
		return int(d.zipf.Uint64())
	}
	return r.Intn(d.spec.Cardinality)
}

func (d *keyDrawer) value(r *rand.Rand) string {
	return d.spec.Prefix + strconv.Itoa(d.draw(r))
}

// requestParts is one request before encoding, shared by both encoders so JSON and
// protobuf carry the same content.
type requestParts struct {
	model, version, output string
	contextNames           []string
	contextVals            []float64 // NaN is missing
	contextKeys            [][2]string
	ids                    []string
	featNames              []string
	vals                   [][]float64 // per candidate, NaN is missing
	vecs                   []VectorSpec
	vecVals                [][][]float64 // per candidate and vector, NaN is missing
	keys                   [][][2]string
	dense                  bool
}

// BuildBodies generates w.Pool request bodies for workload w in the given protocol. The
// workload must be normalized and its model and feature names resolved (FeatureNames).
// The result is deterministic for a given seed.
func BuildBodies(w *Workload, featNames []string, protocol string) []Body {
	r := rand.New(rand.NewSource(w.Seed))
	keyDrawers := make([]*keyDrawer, len(w.Keys))
	for i, k := range w.Keys {
		keyDrawers[i] = newKeyDrawer(k, r)
	}
	ctxDrawers := make([]*keyDrawer, len(w.ContextKeys))
	for i, k := range w.ContextKeys {
		ctxDrawers[i] = newKeyDrawer(k, r)
	}
	value := func() float64 {
		if w.Features.Missing > 0 && r.Float64() < w.Features.Missing {
			return math.NaN()
		}
		// Two decimals keep JSON bodies short; the model sees a spread of values.
		return math.Round(r.Float64()*10000) / 100
	}
	out := make([]Body, w.Pool)
	var p requestParts
	for b := range out {
		n := w.Candidates.N
		if w.Candidates.Dist == "uniform" {
			n = w.Candidates.Min + r.Intn(w.Candidates.Max-w.Candidates.Min+1)
		}
		p = requestParts{model: w.Model, version: w.Version, output: w.Output, dense: w.Dense, featNames: featNames,
			vecs: w.Features.Vectors}
		for _, name := range w.Features.Context {
			p.contextNames = append(p.contextNames, name)
			p.contextVals = append(p.contextVals, value())
		}
		for _, d := range ctxDrawers {
			p.contextKeys = append(p.contextKeys, [2]string{d.spec.Name, d.value(r)})
		}
		p.ids = make([]string, n)
		p.vals = make([][]float64, n)
		p.keys = make([][][2]string, n)
		for c := 0; c < n; c++ {
			p.ids[c] = "c" + strconv.Itoa(c)
			row := make([]float64, len(featNames))
			for j := range row {
				row[j] = value()
			}
			p.vals[c] = row
			if len(p.vecs) > 0 {
				vs := make([][]float64, len(p.vecs))
				for k, spec := range p.vecs {
					vs[k] = make([]float64, spec.Dim)
					for j := range vs[k] {
						vs[k][j] = value()
					}
				}
				p.vecVals = append(p.vecVals, vs)
			}
			for _, d := range keyDrawers {
				p.keys[c] = append(p.keys[c], [2]string{d.spec.Name, d.value(r)})
			}
		}
		var data []byte
		if protocol == "json" {
			data = appendJSONRequest(nil, &p)
		} else {
			data = appendProtoRequest(nil, &p)
		}
		out[b] = Body{Data: data, Candidates: n}
	}
	return out
}

func appendProtoFeature(dst []byte, name string, v float64) []byte {
	var m []byte
	m = protowire.AppendTag(m, wire.FeatureName, protowire.BytesType)
	m = protowire.AppendString(m, name)
	if !math.IsNaN(v) { // an absent value is missing
		m = protowire.AppendTag(m, wire.FeatureValue, protowire.Fixed64Type)
		m = protowire.AppendFixed64(m, math.Float64bits(v))
	}
	return protowire.AppendBytes(dst, m)
}

// appendProtoVector appends a Feature with packed values (NaN is missing).
func appendProtoVector(dst []byte, name string, vs []float64) []byte {
	var m []byte
	m = protowire.AppendTag(m, wire.FeatureName, protowire.BytesType)
	m = protowire.AppendString(m, name)
	m = protowire.AppendTag(m, wire.FeatureValues, protowire.BytesType)
	m = protowire.AppendVarint(m, uint64(8*len(vs)))
	for _, v := range vs {
		m = protowire.AppendFixed64(m, math.Float64bits(v))
	}
	return protowire.AppendBytes(dst, m)
}

func appendProtoKey(dst []byte, kv [2]string) []byte {
	var m []byte
	m = protowire.AppendTag(m, wire.KeyName, protowire.BytesType)
	m = protowire.AppendString(m, kv[0])
	m = protowire.AppendTag(m, wire.KeyValue, protowire.BytesType)
	m = protowire.AppendString(m, kv[1])
	return protowire.AppendBytes(dst, m)
}

// appendProtoRequest encodes a PredictRequest with protowire and api/wire's field
// numbers, so the generator does not depend on generated code.
func appendProtoRequest(dst []byte, p *requestParts) []byte {
	dst = protowire.AppendTag(dst, wire.RequestModel, protowire.BytesType)
	dst = protowire.AppendString(dst, p.model)
	if p.version != "" {
		dst = protowire.AppendTag(dst, wire.RequestVersion, protowire.BytesType)
		dst = protowire.AppendString(dst, p.version)
	}
	for i, name := range p.contextNames {
		dst = protowire.AppendTag(dst, wire.RequestContext, protowire.BytesType)
		dst = appendProtoFeature(dst, name, p.contextVals[i])
	}
	if p.dense {
		var row []byte
		for _, vals := range p.vals {
			row = row[:0]
			row = protowire.AppendTag(row, wire.RowValues, protowire.BytesType)
			row = protowire.AppendVarint(row, uint64(8*len(vals)))
			for _, v := range vals {
				row = protowire.AppendFixed64(row, math.Float64bits(v))
			}
			dst = protowire.AppendTag(dst, wire.RequestRows, protowire.BytesType)
			dst = protowire.AppendBytes(dst, row)
		}
	} else {
		var cand []byte
		for c, id := range p.ids {
			cand = cand[:0]
			cand = protowire.AppendTag(cand, wire.CandidateID, protowire.BytesType)
			cand = protowire.AppendString(cand, id)
			for j, name := range p.featNames {
				cand = protowire.AppendTag(cand, wire.CandidateFeatures, protowire.BytesType)
				cand = appendProtoFeature(cand, name, p.vals[c][j])
			}
			for k, spec := range p.vecs {
				cand = protowire.AppendTag(cand, wire.CandidateFeatures, protowire.BytesType)
				cand = appendProtoVector(cand, spec.Name, p.vecVals[c][k])
			}
			for _, kv := range p.keys[c] {
				cand = protowire.AppendTag(cand, wire.CandidateKeys, protowire.BytesType)
				cand = appendProtoKey(cand, kv)
			}
			dst = protowire.AppendTag(dst, wire.RequestCandidates, protowire.BytesType)
			dst = protowire.AppendBytes(dst, cand)
		}
	}
	if p.output != "" {
		dst = protowire.AppendTag(dst, wire.RequestOutput, protowire.BytesType)
		dst = protowire.AppendString(dst, p.output)
	}
	for _, kv := range p.contextKeys {
		dst = protowire.AppendTag(dst, wire.RequestKeys, protowire.BytesType)
		dst = appendProtoKey(dst, kv)
	}
	return dst
}

// appendJSONRequest encodes the JSON form of POST /v1/predict with package wire's JSON
// rules (NaN, a missing value, is null).
func appendJSONRequest(dst []byte, p *requestParts) []byte {
	dst = append(dst, `{"model":`...)
	dst = wire.AppendJSONString(dst, p.model)
	if p.version != "" {
		dst = append(dst, `,"version":`...)
		dst = wire.AppendJSONString(dst, p.version)
	}
	if p.output != "" {
		dst = append(dst, `,"output":`...)
		dst = wire.AppendJSONString(dst, p.output)
	}
	if len(p.contextNames) > 0 {
		dst = append(dst, `,"context":{`...)
		for i, name := range p.contextNames {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = wire.AppendJSONString(dst, name)
			dst = append(dst, ':')
			dst = wire.AppendJSONFloat(dst, p.contextVals[i])
		}
		dst = append(dst, '}')
	}
	if len(p.contextKeys) > 0 {
		dst = append(dst, `,"keys":`...)
		dst = appendJSONKeys(dst, p.contextKeys)
	}
	if p.dense {
		dst = append(dst, `,"rows":[`...)
		for c, vals := range p.vals {
			if c > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			for j, v := range vals {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = wire.AppendJSONFloat(dst, v)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	} else {
		dst = append(dst, `,"candidates":[`...)
		for c, id := range p.ids {
			if c > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":`...)
			dst = wire.AppendJSONString(dst, id)
			if len(p.featNames) > 0 || len(p.vecs) > 0 {
				dst = append(dst, `,"features":{`...)
				for j, name := range p.featNames {
					if j > 0 {
						dst = append(dst, ',')
					}
					dst = wire.AppendJSONString(dst, name)
					dst = append(dst, ':')
					dst = wire.AppendJSONFloat(dst, p.vals[c][j])
				}
				for k, spec := range p.vecs {
					if k > 0 || len(p.featNames) > 0 {
						dst = append(dst, ',')
					}
					dst = wire.AppendJSONString(dst, spec.Name)
					dst = append(dst, ":["...)
					for j, v := range p.vecVals[c][k] {
						if j > 0 {
							dst = append(dst, ',')
						}
						dst = wire.AppendJSONFloat(dst, v)
					}
					dst = append(dst, ']')
				}
				dst = append(dst, '}')
			}
			if len(p.keys[c]) > 0 {
				dst = append(dst, `,"keys":`...)
				dst = appendJSONKeys(dst, p.keys[c])
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendJSONKeys(dst []byte, kvs [][2]string) []byte {
	dst = append(dst, '{')
	for i, kv := range kvs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = wire.AppendJSONString(dst, kv[0])
		dst = append(dst, ':')
		dst = wire.AppendJSONString(dst, kv[1])
	}
	return append(dst, '}')
}

// featureNames returns the per-candidate feature names a workload sends, unless they
// come from the model (FromModel), which the caller resolves.
func (w *Workload) featureNames() []string {
	if len(w.Features.Names) > 0 {
		return w.Features.Names
	}
	names := make([]string, w.Features.Count)
	for i := range names {
		names[i] = w.Features.Prefix + strconv.Itoa(i)
	}
	return names
}
