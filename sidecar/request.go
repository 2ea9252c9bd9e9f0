package sidecar

import (
	"sync"
	"unsafe"
)

// outputMode is a request's choice of raw margins or transformed predictions.
type outputMode uint8

const (
	outputDefault outputMode = iota // the manifest's output
	outputTransformed
	outputRaw
)

// span is a byte range of the request body: 8 bytes where a []byte is 24, so a decoded
// element costs at most about twice the bytes that encode it (docs/operations.md,
// "Memory"). Bodies are limited to 4 GiB (maxDecodeBody) so that offsets fit a uint32.
type span struct{ off, n uint32 }

// feature is a named value; name is a span of the request body. 16 bytes.
type feature struct {
	name  span
	value float64
}

// key is an entity key for feature-store lookups; both are spans of the body. 16 bytes.
type key struct {
	name, value span
}

// candidate is one candidate; its id is a span of ids (not of the body), its features
// are feats[f0:f1] and keys candKeys[k0:k1].
// 24 bytes.
type candidate struct {
	id     span
	f0, f1 uint32
	k0, k1 uint32
}

// vector is a vector feature sent whole (a JSON array, protobuf Feature.values): its
// values are vals[v0:v1] of the request, row its candidate or -1 for the context. apply
// writes it over the store's vector, after the scalars of the same candidate or context.
// 20 bytes.
type vector struct {
	name   span
	row    int32
	v0, v1 uint32
}

// maxDecodeBody is the largest body a decoder accepts: spans are uint32 offsets.
const maxDecodeBody = 1<<32 - 1

// bytes returns the body bytes of sp (nil when empty). They are valid while the
// handler runs.
func (r *request) bytes(sp span) []byte { return sp.in(r.body) }

// in returns the bytes of sp in buf (nil when empty), capped at their end.
func (sp span) in(buf []byte) []byte {
	if sp.n == 0 {
		return nil
	}
	return buf[sp.off : sp.off+sp.n : sp.off+sp.n]
}

// spanOf returns the span of b, a subslice of r.body.
func (r *request) spanOf(b []byte) span {
	if len(b) == 0 {
		return span{}
	}
	return span{off: uint32(cap(r.body) - cap(b)), n: uint32(len(b))}
}

// id returns candidate i's id (nil when absent or empty).
func (r *request) id(i int) []byte { return r.cands[i].id.in(r.ids) }

// idSpan copies a candidate's id into r.ids and returns where it is there. The ids
// are read again to write the response, after scoring: from a large body (1,000
// candidates of 100 named features is 2 MB) each would be a cache miss, about 1.5% of
// such a request's CPU; read from one short buffer written while the body was in
// cache, they cost a few nanoseconds.
func (r *request) idSpan(id []byte) span {
	if len(id) == 0 {
		return span{}
	}
	off := len(r.ids)
	r.ids = append(r.ids, id...)
	return span{off: uint32(off), n: uint32(len(id))}
}

// request is a decoded prediction request plus the buffers that score it. Byte slices
// and spans point into the HTTP request body (which the decoders may rewrite in place to unescape
// JSON strings), candidates' ids into ids: a request is valid only while the handler runs. Requests are pooled
// (getRequest/putRequest); reset keeps every buffer's capacity, so a warm server decodes
// and scores without allocating per candidate.
type request struct {
	body           []byte      // the body being decoded; spans are offsets into it (ids': into ids)
	budget         *byteBudget // the server's byte budget (nil: none), see budget.go
	held           int64       // bytes of it this request holds, returned by releaseBytes
	model, version []byte
	output         outputMode
	labels         bool // a feature value was a category label (labels.go)

	context  []feature
	ctxKeys  []key
	cands    []candidate
	ids      []byte    // the candidates' ids, one after another (idSpan)
	feats    []feature // all candidates' features, in order
	candKeys []key
	vecs     []vector  // inline vectors, candidates' and context's, in order
	vecVals  []float64 // their values

	// Dense form: nrows rows of width values each, row-major.
	dense bool
	rows  []float64
	nrows int
	width int

	// Scoring buffers.
	ctxCols  []colValue    // context resolved to columns, one per column (apply)
	ctxAt    []int32       // per column, 1 + its entry in ctxCols (apply)
	lcols    []int32       // the learned layout's columns (writeFeatures)
	layoutAt []int32       // per column, 1 + its place in the learned layout (writeFeatures)
	ctxKeyOf []resolvedKey // request-level keys the feature store asked for (StoreQuery.Key)
	m64      []float64
	m32      []float32
	out      []float64
	degraded []string
	resp     []byte

	dir direct // the direct path's state (decode_direct.go)
}

func (r *request) reset() {
	r.body, r.model, r.version = nil, nil, nil
	r.budget, r.held = nil, 0 // returned by releaseBytes
	r.output = outputDefault
	r.labels = false
	r.context = r.context[:0]
	r.ctxKeys = r.ctxKeys[:0]
	r.cands, r.ids = r.cands[:0], r.ids[:0]
	r.feats = r.feats[:0]
	r.candKeys = r.candKeys[:0]
	r.vecs, r.vecVals = r.vecs[:0], r.vecVals[:0]
	r.dense = false
	r.rows = r.rows[:0]
	r.nrows, r.width = 0, 0
	r.degraded = r.degraded[:0]
	r.ctxCols = r.ctxCols[:0]
	r.lcols, r.layoutAt = r.lcols[:0], r.layoutAt[:0]
	clear(r.ctxKeyOf) // drop the views of the old body
	r.ctxKeyOf = r.ctxKeyOf[:0]
	r.resp = r.resp[:0]
	r.dir.reset()
}

// numRows is the number of rows to score.
func (r *request) numRows() int {
	if r.dense {
		return r.nrows
	}
	return len(r.cands)
}

// maxPooledBytes keeps one huge request from pinning its buffers in the pool forever:
// 64 MiB covers a 1,000 × 1,000 float64 matrix several times over.
const maxPooledBytes = 64 << 20

// pooledBytes is what r's buffers hold: every slice, so a request of many empty
// candidates or keys is not pooled either.
func (r *request) pooledBytes() int {
	const (
		featureSize   = int(unsafe.Sizeof(feature{}))
		keySize       = int(unsafe.Sizeof(key{}))
		candidateSize = int(unsafe.Sizeof(candidate{}))
		vectorSize    = int(unsafe.Sizeof(vector{}))
		stringSize    = int(unsafe.Sizeof(""))
	)
	return featureSize*(cap(r.context)+cap(r.feats)) + keySize*(cap(r.ctxKeys)+cap(r.candKeys)) +
		candidateSize*cap(r.cands) + cap(r.ids) + 8*(cap(r.rows)+cap(r.vecVals)+cap(r.m64)+cap(r.out)) + vectorSize*cap(r.vecs) + 4*cap(r.m32) +
		stringSize*cap(r.degraded) + cap(r.resp) + int(unsafe.Sizeof(colValue{}))*cap(r.ctxCols) + 4*cap(r.ctxAt) +
		int(unsafe.Sizeof(resolvedKey{}))*cap(r.ctxKeyOf) + 4*(cap(r.lcols)+cap(r.layoutAt)) + r.dir.pooledBytes()
}

var requestPool = sync.Pool{New: func() any { return new(request) }}

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	if r.pooledBytes() > maxPooledBytes {
		return
	}
	r.reset()
	requestPool.Put(r)
}
