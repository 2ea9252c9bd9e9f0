package loadtest

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

//go:generate protoc --include_imports --descriptor_set_out=testdata/predict.pb -I ../api ../api/predict.proto

// predictRequestType loads PredictRequest from the descriptor set compiled from
// api/predict.proto (see go:generate above), so the protowire encoder is checked against
// the schema, not against itself.
func predictRequestType(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	data, err := os.ReadFile("testdata/predict.pb")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName("predictd.v1.PredictRequest")
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MessageDescriptor)
}

// protoToAPI turns a decoded PredictRequest into the JSON API's shape (maps of features
// and keys), so it can be compared with the JSON body.
func protoToAPI(m protoreflect.Message) map[string]any {
	fd := m.Descriptor().Fields()
	feats := func(l protoreflect.List) map[string]any {
		out := map[string]any{}
		for i := 0; i < l.Len(); i++ {
			f := l.Get(i).Message()
			name := f.Get(f.Descriptor().Fields().ByName("name")).String()
			vf := f.Descriptor().Fields().ByName("value")
			if vl := f.Get(f.Descriptor().Fields().ByName("values")).List(); vl.Len() > 0 {
				var vec []any
				for j := 0; j < vl.Len(); j++ {
					if v := vl.Get(j).Float(); math.IsNaN(v) {
						vec = append(vec, nil)
					} else {
						vec = append(vec, v)
					}
				}
				out[name] = vec
			} else if f.Has(vf) {
				out[name] = f.Get(vf).Float()
			} else {
				out[name] = nil
			}
		}
		return out
	}
	keys := func(l protoreflect.List) map[string]any {
		out := map[string]any{}
		for i := 0; i < l.Len(); i++ {
			k := l.Get(i).Message()
			kf := k.Descriptor().Fields()
			out[k.Get(kf.ByName("name")).String()] = k.Get(kf.ByName("value")).String()
		}
		return out
	}
	out := map[string]any{"model": m.Get(fd.ByName("model")).String()}
	if v := m.Get(fd.ByName("version")).String(); v != "" {
		out["version"] = v
	}
	if v := m.Get(fd.ByName("output")).String(); v != "" {
		out["output"] = v
	}
	if l := m.Get(fd.ByName("context")).List(); l.Len() > 0 {
		out["context"] = feats(l)
	}
	if l := m.Get(fd.ByName("keys")).List(); l.Len() > 0 {
		out["keys"] = keys(l)
	}
	if l := m.Get(fd.ByName("rows")).List(); l.Len() > 0 {
		var rows []any
		for i := 0; i < l.Len(); i++ {
			vals := l.Get(i).Message()
			vl := vals.Get(vals.Descriptor().Fields().ByName("values")).List()
			var row []any
			for j := 0; j < vl.Len(); j++ {
				v := vl.Get(j).Float()
				if math.IsNaN(v) {
					row = append(row, nil)
				} else {
					row = append(row, v)
				}
			}
			rows = append(rows, row)
		}
		out["rows"] = rows
	} else {
		var cands []any
		l := m.Get(fd.ByName("candidates")).List()
		for i := 0; i < l.Len(); i++ {
			c := l.Get(i).Message()
			cf := c.Descriptor().Fields()
			cm := map[string]any{"id": c.Get(cf.ByName("id")).String()}
			if fl := c.Get(cf.ByName("features")).List(); fl.Len() > 0 {
				cm["features"] = feats(fl)
			}
			if kl := c.Get(cf.ByName("keys")).List(); kl.Len() > 0 {
				cm["keys"] = keys(kl)
			}
			cands = append(cands, cm)
		}
		out["candidates"] = cands
	}
	return out
}

// TestBodiesMatchSchema: protobuf bodies decode against api/predict.proto and carry
// exactly what the JSON bodies carry, for named candidates with keys and dense rows.
func TestBodiesMatchSchema(t *testing.T) {
	md := predictRequestType(t)
	f := func(yaml string) {
		t.Helper()
		sc := testScenario(t, yaml)
		w := &sc.Workloads[0]
		pb := BuildBodies(w, w.featureNames(), "protobuf")
		js := BuildBodies(w, w.featureNames(), "json")
		if len(pb) != w.Pool || len(js) != w.Pool {
			t.Fatalf("pool %d: got %d and %d bodies", w.Pool, len(pb), len(js))
		}
		for i := range pb {
			msg := dynamicpb.NewMessage(md)
			if err := proto.Unmarshal(pb[i].Data, msg); err != nil {
				t.Fatalf("body %d does not decode as PredictRequest: %v", i, err)
			}
			var fromJSON map[string]any
			if err := json.Unmarshal(js[i].Data, &fromJSON); err != nil {
				t.Fatalf("JSON body %d: %v\n%s", i, err, js[i].Data)
			}
			// Round-trip through JSON so numbers and nesting compare alike.
			b, _ := json.Marshal(protoToAPI(msg))
			var fromProto map[string]any
			_ = json.Unmarshal(b, &fromProto)
			if !reflect.DeepEqual(fromProto, fromJSON) {
				t.Fatalf("body %d differs:\nprotobuf %s\njson     %s", i, b, js[i].Data)
			}
			if pb[i].Candidates != js[i].Candidates {
				t.Fatalf("candidate counts %d vs %d", pb[i].Candidates, js[i].Candidates)
			}
		}
	}
	f(`
name: b
steps: [{rate: 1, duration: 2s}]
workloads:
  - model: ranker
    version: "2"
    output: raw
    pool: 5
    candidates: {dist: uniform, min: 1, max: 6}
    features: {names: [a, "q\"uote", b], context: [hour], missing: 0.3}
    keys: [{name: store_id, cardinality: 100, dist: zipf, prefix: s}]
    context_keys: [{name: user_id, cardinality: 10}]
`)
	f(`
name: v
steps: [{rate: 1, duration: 2s}]
workloads:
  - model: ranker
    pool: 4
    candidates: 3
    features: {names: [a], missing: 0.2, vectors: [{name: emb, dim: 4}, {name: "p\"air", dim: 2}]}
`)
	f(`
name: vo
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, pool: 2, candidates: 2, features: {vectors: [{name: emb, dim: 3}]}}]
`)
	// The vectors are there, whole, in both forms (the comparison above would pass
	// if both left them out).
	sc := testScenario(t, `
name: vv
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, pool: 2, candidates: 2, features: {vectors: [{name: emb, dim: 3}]}}]
`)
	for _, b := range BuildBodies(&sc.Workloads[0], nil, "json") {
		var req struct {
			Candidates []struct {
				Features map[string][]float64 `json:"features"`
			} `json:"candidates"`
		}
		if err := json.Unmarshal(b.Data, &req); err != nil || len(req.Candidates) != 2 || len(req.Candidates[1].Features["emb"]) != 3 {
			t.Fatalf("want 2 candidates with a 3-vector emb: %v %s", err, b.Data)
		}
	}
	for _, b := range BuildBodies(&sc.Workloads[0], nil, "protobuf") {
		msg := dynamicpb.NewMessage(md)
		if err := proto.Unmarshal(b.Data, msg); err != nil {
			t.Fatal(err)
		}
		c := msg.Get(md.Fields().ByName("candidates")).List().Get(1).Message()
		f := c.Get(c.Descriptor().Fields().ByName("features")).List().Get(0).Message()
		if n := f.Get(f.Descriptor().Fields().ByName("values")).List().Len(); n != 3 {
			t.Fatalf("protobuf: emb has %d values, want 3", n)
		}
	}
	f(`
name: d
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, dense: true, pool: 3, candidates: 4, features: {count: 5, missing: 0.2}}]
`)
}

// TestZipfKeys: Zipf keys hit the most popular entity as often as the distribution says;
// uniform keys spread evenly. This sets the feature-store cache hit rate.
func TestZipfKeys(t *testing.T) {
	count := func(dist string) map[string]int {
		sc := testScenario(t, `
name: z
steps: [{rate: 1, duration: 2s}]
workloads: [{model: m, pool: 20, candidates: 1000, keys: [{name: k, cardinality: 1000, dist: `+dist+`, zipf_s: 1.2}]}]
`)
		w := &sc.Workloads[0]
		out := map[string]int{}
		for _, b := range BuildBodies(w, nil, "json") {
			var req struct {
				Candidates []struct {
					Keys map[string]string `json:"keys"`
				} `json:"candidates"`
			}
			if err := json.Unmarshal(b.Data, &req); err != nil {
				t.Fatal(err)
			}
			for _, c := range req.Candidates {
				out[c.Keys["k"]]++
			}
		}
		return out
	}
	// P(rank 0) = 1 / Σ_{k=1..1000} k^-1.2.
	var h float64
	for k := 1; k <= 1000; k++ {
		h += math.Pow(float64(k), -1.2)
	}
	z := count("zipf")
	if got, want := float64(z["0"])/20000, 1/h; !within(got, want, 0.1, 0) {
		t.Errorf("zipf: rank 0 share %.4f, want %.4f", got, want)
	}
	if z["0"] <= z["1"] || z["1"] <= z["10"] {
		t.Errorf("zipf counts not decreasing: %d %d %d", z["0"], z["1"], z["10"])
	}
	u := count("uniform")
	if len(u) < 990 {
		t.Errorf("uniform: %d distinct keys of 1000", len(u))
	}
	for k, n := range u {
		if n > 50 { // mean 20; P(n > 50) under Poisson(20) is ~1e-8
			t.Errorf("uniform: key %s drawn %d times", k, n)
		}
	}
}
