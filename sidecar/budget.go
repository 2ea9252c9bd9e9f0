package sidecar

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/otel/metric"
)

// DefaultMaxInflightBytes is Config.MaxInflightBytes's default: 256 MiB, which holds one
// body of the default MaxBodyBytes (64 MiB) with its decoding (decodeReserve) and leaves
// half of a 512 MiB container to the models, the pools and the collector's headroom.
const DefaultMaxInflightBytes = 256 << 20

// byteBudget bounds the bytes that predictions hold at once, process-wide
// (Config.MaxInflightBytes): each request's body, what its decoder builds from it, and the
// matrix, float32 copy and scores its model needs. A request takes its share before it
// decodes (body and decoding) and before it assembles (matrix and scores), without
// waiting: when the budget cannot cover it, the request gets 503 busy with Retry-After
// at once instead of growing the process. A request that needs more than the whole
// budget on its own gets 413 too_many_cells. Safe for concurrent use.
type byteBudget struct {
	capacity int64
	used     atomic.Int64
	rejected metric.Int64Counter
}

// decodeReserve is how many bytes per body byte a request reserves for what its
// decoder builds before it decodes: the compact elements (feature and key 16 bytes,
// candidate 24; span) of a realistic body take less, and what a body takes beyond it is
// charged once decoded (chargeDecoded).
const decodeReserve = 2

func newByteBudget(capacity int64, meter metric.Meter) (*byteBudget, error) {
	b := &byteBudget{capacity: capacity}
	var err error
	if b.rejected, err = meter.Int64Counter("predictd_inflight_bytes_rejected_total",
		metric.WithDescription("predictions answered 503 because --max-inflight-bytes was in use")); err != nil {
		return nil, err
	}
	_, err = meter.Int64ObservableGauge("predictd_inflight_bytes",
		metric.WithDescription("bytes held by predictions in flight (bodies, decoded requests, matrices), bounded by --max-inflight-bytes"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(b.used.Load())
			return nil
		}))
	return b, err
}

// acquire takes n more bytes for a request already holding held, or fails without
// taking any.
func (b *byteBudget) acquire(n, held int64, what string) error {
	if n <= 0 {
		return nil
	}
	if held+n > b.capacity {
		return fmt.Errorf("%w: this request needs %d bytes for %s, more than all requests together may hold (--max-inflight-bytes=%d)",
			errTooManyCells, held+n, what, b.capacity)
	}
	for {
		u := b.used.Load()
		if u+n > b.capacity {
			b.rejected.Add(bg, 1)
			return fmt.Errorf("%w: %d of %d bytes of requests in flight are taken and this one needs %d more for %s (--max-inflight-bytes); retry later",
				ErrBusy, u, b.capacity, n, what)
		}
		if b.used.CompareAndSwap(u, u+n) {
			return nil
		}
	}
}

// release returns n bytes.
func (b *byteBudget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
	}
}

// The sizes of the decoded elements.
const (
	featureBytes   = int64(unsafe.Sizeof(feature{}))
	keyBytes       = int64(unsafe.Sizeof(key{}))
	candidateBytes = int64(unsafe.Sizeof(candidate{}))
)

// decodedBytes is what r's decoded elements take: their lengths, not the capacities a
// pooled request kept from earlier requests.
func (r *request) decodedBytes() int64 {
	return featureBytes*int64(len(r.context)+len(r.feats)) + keyBytes*int64(len(r.ctxKeys)+len(r.candKeys)) +
		candidateBytes*int64(len(r.cands)) + int64(len(r.ids)) + 8*int64(len(r.rows)+len(r.vecVals)) + int64(unsafe.Sizeof(vector{}))*int64(len(r.vecs)) +
		r.dir.matrixBytes(r)
}

// reserveDecoded makes r hold its body plus decoded bytes of decoded elements in the
// byte budget, taking what it lacks (presize.reserve). Without a budget (tests,
// benchmarks) it takes nothing.
func (r *request) reserveDecoded(decoded int64) error {
	if r.budget == nil {
		return nil
	}
	return r.take(int64(len(r.body))+decoded-r.held, "its decoded values")
}

// take adds n bytes of the byte budget to what r holds.
func (r *request) take(n int64, what string) error {
	if n <= 0 {
		return nil
	}
	if err := r.budget.acquire(n, r.held, what); err != nil {
		return err
	}
	r.held += n
	return nil
}

// settle returns to the budget what r holds beyond its body and decoded elements, or
// takes what they hold beyond it.
func (r *request) settle() error {
	used := int64(len(r.body)) + r.decodedBytes()
	if used < r.held {
		r.budget.release(r.held - used)
		r.held = used
		return nil
	}
	return r.take(used-r.held, "its decoded values")
}

// releaseBytes returns all r holds to the budget.
func (r *request) releaseBytes() {
	if r.budget != nil {
		r.budget.release(r.held)
	}
	r.budget, r.held = nil, 0
}

// matrixBytes is what the direct path's matrix takes (decode_direct.go), 0 when off.
func (d *direct) matrixBytes(r *request) int64 {
	if !d.on() {
		return 0
	}
	return 8 * int64(len(r.m64))
}

// matrixBytes is what assembling and scoring r for v allocates: the float64 matrix
// (none for dense rows, which are the matrix and counted with the decoding), its float32
// copy for a float32 model, and the scores.
func (r *request) matrixBytes(v *version) int64 {
	nrows, nf := int64(r.numRows()), int64(v.nfeat)
	outs := int64(max(v.pred.NumOutputs(true), v.pred.NumOutputs(false)))
	var n int64
	if !r.dense && !r.dir.on() { // the direct path's matrix is counted with the decoding
		n += 8 * nrows * nf
	}
	if v.f32 {
		n += 4 * nrows * nf
	}
	return n + 8*nrows*outs
}
