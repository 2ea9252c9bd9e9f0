package sidecar

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fuzzLimits are far above what a fuzz input can reach, so the limits never hide a
// decoding difference.
var fuzzLimits = decodeLimits{rows: 1 << 30, cells: 1 << 30, presizeAt: math.MaxInt}

// presizeLimits are fuzzLimits with every body counted first (presize.go).
var presizeLimits = decodeLimits{rows: 1 << 30, cells: 1 << 30, presizeAt: 1}

// samePresized fails unless a and b decoded the same numbers of elements.
func samePresized(t *testing.T, a, b *request) {
	t.Helper()
	if len(a.cands) != len(b.cands) || len(a.feats) != len(b.feats) || len(a.candKeys) != len(b.candKeys) ||
		len(a.context) != len(b.context) || len(a.ctxKeys) != len(b.ctxKeys) || len(a.rows) != len(b.rows) || a.nrows != b.nrows {
		t.Fatalf("counting first changed what was decoded: %d/%d/%d/%d/%d/%d/%d, without %d/%d/%d/%d/%d/%d/%d",
			len(b.cands), len(b.feats), len(b.candKeys), len(b.context), len(b.ctxKeys), len(b.rows), b.nrows,
			len(a.cands), len(a.feats), len(a.candKeys), len(a.context), len(a.ctxKeys), len(a.rows), a.nrows)
	}
}

// FuzzDecodeJSON: the JSON decoder never panics, accepts only valid JSON, and what it
// accepts agrees with encoding/json on the model name and the number of candidates and
// rows. A decoded request re-encodes its response without panicking.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","version":"2","context":{"hour":13},"candidates":[{"id":"s1","features":{"f0":0.5,"f1":null}}],"output":"raw"}`,
		`{"model":"m","rows":[[1,2,null],[4,5e-3,-6.25E+2]]}`,
		`{"model":"m\u00e9\ud83d\ude00","keys":{"user":"u1"},"candidates":[{"id":"a\"b","keys":{"k":7}}]}`,
		`{"model": "m", "version": 3, "candidates": []}`,
		`{"model":"\ud800"}`,
		`{"model":"m","rows":[[1],[1,2]]}`,
		// The shapes that hold the most per body byte (TestMemoryPerRequest).
		`{"model":"m","keys":{"a":0,"a":"b","":0}}`,
		`{"model":"m","context":{"a":0,"a":0},"candidates":[{},{},{"id":"features","features":{"a":0,"b":1},"keys":{"k":"v"}}]}`,
		`{"model":"m","candidates":[{"keys":{"a":0,"a":0}},{"features":{"f\u0065":1}},{"f\u0065atures":{}}]}`,
		`{"model":"m","rows":[[0,0,0],[0,0,0]]}`,
		`{"model":"m","rows":[[],[]]}`,
		"{\"model\":\"m\"   \n\t\r   ,  \"candidates\" : [ { \"features\" : { \"a\" : 0 } } ] }",
		`{"model":"m","candidates":[{"id":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]}`,
		`{"model":"m","candidates":[{"features":{"a":[1]}}]}`,
		`{"model":"m","context":{"v":[1,null,2.5]},"candidates":[{"features":{"a":1,"v":[-0,3e2]}},{"features":{"v":[]}}]}`,
		`{"model":"m","candidates":[{"features":{"v":[[1],2]}}]}`,
		// Booleans and category labels (labels.go); strings in vectors and rows are errors.
		`{"model":"m","context":{"region":"R\u00324","ok":true},"candidates":[{"features":{"gas":"Diesel","b":false}}]}`,
		`{"model":"m","candidates":[{"features":{"v":["a"]}}]}`,
		`{"model":"m","rows":[[true,"a"]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// decodeJSON unescapes in place, and the fuzz engine's bytes must not be
		// modified: decode a copy, keep data as the original.
		orig := data
		body := append([]byte(nil), data...)
		r := getRequest()
		defer putRequest(r)
		err := decodeJSON(r, body, fuzzLimits)
		// Counting first (presize.go, for large bodies) changes nothing decoded, and
		// no error.
		pre := getRequest()
		defer putRequest(pre)
		perr := decodeJSON(pre, append([]byte(nil), data...), presizeLimits)
		if (err == nil) != (perr == nil) {
			t.Fatalf("error %v without counting first, %v with: %q", err, perr, orig)
		}
		if err != nil {
			return
		}
		samePresized(t, r, pre)
		if !json.Valid(orig) {
			t.Fatalf("accepted invalid JSON %q", orig)
		}
		var ref struct {
			Model      string            `json:"model"`
			Candidates []json.RawMessage `json:"candidates"`
			Rows       [][]*float64      `json:"rows"`
		}
		if err := json.Unmarshal(orig, &ref); err == nil {
			if ref.Model != string(r.model) {
				t.Fatalf("model %q, encoding/json says %q", r.model, ref.Model)
			}
			if len(ref.Candidates) != len(r.cands) || len(ref.Rows) != r.nrows && r.dense {
				t.Fatalf("%d candidates %d rows, encoding/json says %d and %d", len(r.cands), r.nrows, len(ref.Candidates), len(ref.Rows))
			}
		}
		encodeAny(r)
	})
}

// FuzzDecodeProto: the protobuf decoder never panics, and what it accepts the
// generated decoder accepts too, with the same model, candidates, features and rows.
func FuzzDecodeProto(f *testing.F) {
	v := 0.5
	for _, m := range []*predictpb.PredictRequest{
		{Model: "m", Version: "2", Output: "raw", Context: []*predictpb.Feature{{Name: "hour", Value: &v}},
			Candidates: []*predictpb.Candidate{{Id: "s1", Features: []*predictpb.Feature{{Name: "f0", Value: &v}, {Name: "f1"}}}}},
		{Model: "m", Rows: []*predictpb.Row{{Values: []float64{1, 2, math.NaN()}}, {Values: []float64{4, 5, 6}}}},
		{Model: "m", Keys: []*predictpb.Key{{Name: "user", Value: "u1"}}, Candidates: []*predictpb.Candidate{{Keys: []*predictpb.Key{{Name: "k", Value: "7"}}}}},
		{Model: "m", Context: []*predictpb.Feature{{Name: "v", Values: []float64{1, math.NaN()}}},
			Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{{Name: "f0", Value: &v}, {Name: "v", Values: []float64{2, 3}}}}}},
		{Model: "m", Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{{Name: "v", Value: &v, Values: []float64{2}}}}}},
		// Category labels, and a NaN shaped like a boxed label (labels.go).
		{Model: "m", Context: []*predictpb.Feature{{Name: "region", Label: "R24"}},
			Candidates: []*predictpb.Candidate{{Features: []*predictpb.Feature{{Name: "gas", Label: "Diesel"}, {Name: "v", Values: []float64{math.Float64frombits(0x7FFC_0000_0000_0003)}}}}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x0a\x01m\x2a\x09\x09\x00\x00\x00\x00\x00\x00\xf0\x3f")) // unpacked row value
	// A candidate feature "v" with unpacked values, then an empty packed one.
	f.Add([]byte("\x0a\x01m\x22\x11\x12\x0f\x0a\x01v\x19\x00\x00\x00\x00\x00\x00\xf0\x3f\x1a\x00"))
	// The shapes that hold the most per body byte (TestMemoryPerRequest): empty
	// context features, keys and candidates, a candidate of empty features.
	f.Add([]byte("\x0a\x01m\x1a\x00\x1a\x00\x2a\x00\x2a\x03\x0a\x01a\x22\x00\x22\x00"))
	f.Add([]byte("\x0a\x01m\x22\x08\x12\x00\x12\x00\x1a\x00\x12\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := getRequest()
		defer putRequest(r)
		err := decodeProto(r, data, fuzzLimits)
		pre := getRequest()
		defer putRequest(pre)
		perr := decodeProto(pre, data, presizeLimits)
		if (err == nil) != (perr == nil) {
			t.Fatalf("error %v without counting first, %v with: %q", err, perr, data)
		}
		if err != nil {
			return
		}
		samePresized(t, r, pre)
		var ref predictpb.PredictRequest
		if err := proto.Unmarshal(data, &ref); err != nil {
			t.Fatalf("accepted what the generated decoder rejects (%v): %q", err, data)
		}
		if ref.Model != string(r.model) || ref.Version != string(r.version) {
			t.Fatalf("model %q/%q, generated %q/%q", r.model, r.version, ref.Model, ref.Version)
		}
		// A Feature with values is a vector (r.vecs), whose values are r.vecVals in order.
		ctxVecs, vals := 0, []float64(nil)
		for _, v := range r.vecs {
			if v.row < 0 {
				ctxVecs++
			}
		}
		// Vector values are read as protoDouble reads them: a NaN shaped like a boxed
		// label becomes the canonical NaN.
		canonical := func(xs []float64) []float64 {
			out := make([]float64, len(xs))
			for i, x := range xs {
				out[i] = protoDouble(math.Float64bits(x))
			}
			return out
		}
		for _, f := range ref.Context {
			vals = append(vals, canonical(f.Values)...)
		}
		if len(ref.Candidates) != len(r.cands) || len(ref.Context) != len(r.context)+ctxVecs {
			t.Fatalf("%d candidates %d+%d context, generated %d and %d", len(r.cands), len(r.context), ctxVecs, len(ref.Candidates), len(ref.Context))
		}
		nfeat := 0
		for i, c := range ref.Candidates {
			nfeat += len(c.Features)
			for _, f := range c.Features {
				vals = append(vals, canonical(f.Values)...)
			}
			if c.Id != string(r.id(i)) {
				t.Fatalf("candidate %d id %q, generated %q", i, r.id(i), c.Id)
			}
		}
		if nfeat != len(r.feats)+len(r.vecs)-ctxVecs {
			t.Fatalf("%d features and %d vectors, generated %d", len(r.feats), len(r.vecs)-ctxVecs, nfeat)
		}
		if len(vals) != len(r.vecVals) {
			t.Fatalf("%d vector values, generated %d", len(r.vecVals), len(vals))
		}
		// Context vectors come first in the generated order only when the context
		// precedes the candidates; compare the multiset of bits.
		got, want := bitsSorted(r.vecVals), bitsSorted(vals)
		if !slices.Equal(got, want) {
			t.Fatalf("vector values %v, generated %v", r.vecVals, vals)
		}
		nvals := 0
		for _, row := range ref.Rows {
			nvals += len(row.Values)
		}
		if len(ref.Rows) != r.nrows || nvals != len(r.rows) {
			t.Fatalf("%d rows %d values, generated %d and %d", r.nrows, len(r.rows), len(ref.Rows), nvals)
		}
		k := 0
		for _, row := range ref.Rows {
			for _, x := range row.Values {
				if math.Float64bits(x) != math.Float64bits(r.rows[k]) {
					t.Fatalf("value %d: %v, generated %v", k, r.rows[k], x)
				}
				k++
			}
		}
		encodeAny(r)
	})
}

func bitsSorted(xs []float64) []uint64 {
	b := make([]uint64, len(xs))
	for i, x := range xs {
		b[i] = math.Float64bits(x)
	}
	slices.Sort(b)
	return b
}

// encodeAny encodes a response for every row of r, both forms.
func encodeAny(r *request) {
	n := r.numRows()
	out := make([]float64, 2*n)
	for i := range out {
		out[i] = float64(i) / 3
	}
	for _, width := range []int{1, 2} {
		resp := response{model: string(r.model), version: string(r.version), req: r, out: out, nrows: n, width: width}
		b := appendJSONResponse(nil, &resp)
		if !json.Valid(b) {
			panic("invalid JSON response: " + string(b))
		}
		var pr predictpb.PredictResponse
		if err := proto.Unmarshal(appendProtoResponse(nil, &resp), &pr); err != nil || len(pr.Predictions) != n {
			panic("bad protobuf response")
		}
	}
}

// FuzzParseManifest: model.yaml is outside input (a deploy writes it); any bytes give a
// manifest that passes its own checks or an error, never a panic.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("format: xgboost\nfile: model.json\n"))
	f.Add([]byte("format: lightgbm\nfile: model.txt\nfeatures: [a, {name: b, group: g, key: k, default: 1}]\noutput: raw\n"))
	f.Add([]byte("format: lightgbm\nfile: m.txt\nweight: 3\nshadows: [{model: next, version: \"2\", rate: 0.5, top_k: 5}]\nlog: {rate: 0.1, max_file_age: 1h}\n"))
	f.Add([]byte("format: onnx\nfile: m.onnx\nfeatures: [a]\nonnx: {device: cuda, batching: {max_batch: 8}}\n"))
	f.Add([]byte("format: xgboost\nfile: m.json\nweight: -1\nshadows: [{rate: 2}]\n"))
	f.Add([]byte("format: xgboost\nfile: m.json\nshadows: [{model: next}]\nshadow: {cpu_share: 0.2}\n"))
	f.Add([]byte("format: xgboost\nfile: m.json\nfeatures: [a, {name: r, categories: [x, \"7\", y]}, {name: s, categories: []}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if m.File == "" || m.Weight < 0 || math.IsNaN(m.Weight) {
			t.Fatalf("accepted an invalid manifest: %+v", m)
		}
		for _, s := range m.Shadows {
			if s.Model == "" || !(s.Rate >= 0 && s.Rate <= 1) || s.TopK < 0 {
				t.Fatalf("accepted an invalid shadow: %+v", s)
			}
		}
		if m.Shadow != nil && !(m.Shadow.CPUShare >= 0 && m.Shadow.CPUShare <= maxCPUShare) {
			t.Fatalf("accepted an invalid cpu_share: %+v", m.Shadow)
		}
		if m.Log != nil && !(m.Log.Rate >= 0 && m.Log.Rate <= 1) {
			t.Fatalf("accepted an invalid log rate: %+v", m.Log)
		}
	})
}

// FuzzPeekModel: peekModel never panics, and a name it finds is what the real decoder
// reads from the same bytes: the body's prefix up to the name's end (closed with "}" for
// JSON) decodes to a request for exactly that model, and when the whole body decodes and
// names no other model, to the same model too. The same for the version peekVersion
// reads after it.
func FuzzPeekModel(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","candidates":[]}`,
		" {\n\"model\" :\t\"ranker\" , \"rows\":[[1]]}",
		`{"model":"a\"b"}`,
		`{"model":"m\u00e9"}`,
		`{"version":"1","model":"m"}`,
		`{"model":"m","model":"n"}`,
		`{"model":""}`,
		`{"model":"m","version":"3","rows":[[1]]}`,
		`{"model":"m" , "version" : 12 ,"candidates":[]}`,
		`{"model":"m","version":null}`,
		`{"model":"m","version":"a\"b"}`,
	} {
		f.Add([]byte(s))
	}
	b, err := proto.Marshal(&predictpb.PredictRequest{Model: "m", Version: "2", Candidates: []*predictpb.Candidate{{Id: "x"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("\x12\x011\x0a\x01m")) // version first
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, isProto := range []bool{false, true} {
			name, end := peekModel(data, isProto)
			if name == nil {
				continue
			}
			if end > len(data) || len(name) == 0 || &name[0] != &data[end-len(name)-btoi(!isProto)] {
				t.Fatalf("proto=%v: name %q, end %d: not the bytes before end of %q", isProto, name, end, data)
			}
			prefix := append([]byte(nil), data[:end]...)
			r := getRequest()
			var err error
			if isProto {
				err = decodeProto(r, prefix, fuzzLimits)
			} else {
				err = decodeJSON(r, append(prefix, '}'), fuzzLimits)
			}
			if err != nil || string(r.model) != string(name) {
				t.Fatalf("proto=%v: peeked %q, the decoder reads %q (%v) from %q", isProto, name, r.model, err, data[:end])
			}
			putRequest(r)
			// The whole body: the decoder's model is the peeked one unless the model
			// field appears again.
			r = getRequest()
			body := append([]byte(nil), data...)
			if isProto {
				err = decodeProto(r, body, fuzzLimits)
			} else {
				err = decodeJSON(r, body, fuzzLimits)
			}
			if err == nil && string(r.model) != string(name) && !bytes.Contains(data[end:], []byte(`model`)) &&
				!bytes.Contains(data[end:], []byte(`\u`)) && !isProto {
				t.Fatalf("peeked %q, the decoder reads %q from %q", name, r.model, data)
			}
			// The version that follows the model: what the decoder reads, unless the
			// version field appears again (JSON), or from the fields up to it (protobuf).
			ver, ok := peekVersion(data, end, isProto)
			if !isProto && ok && err == nil && bytes.Count(data, []byte(`version`)) <= 1 &&
				!bytes.Contains(data, []byte(`\u`)) && !bytes.Equal(r.version, ver) {
				t.Fatalf("peeked version %q, the decoder reads %q from %q", ver, r.version, data)
			}
			putRequest(r)
			if isProto && ok && ver != nil {
				_, _, k := protowire.ConsumeTag(data[end:])
				_, m := protowire.ConsumeBytes(data[end+k:])
				r = getRequest()
				err = decodeProto(r, append([]byte(nil), data[:end+k+m]...), fuzzLimits)
				if err != nil || !bytes.Equal(r.version, ver) {
					t.Fatalf("peeked version %q, the decoder reads %q (%v) from %q", ver, r.version, err, data[:end+k+m])
				}
				putRequest(r)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
