package sidecar

import (
	"context"
	"fmt"
	"time"

	"github.com/predictd/predictd/sidecar/admission"
)

// Admission control on the request path (docs/production.md): the limiter is
// production.lim, built by newProduction.

// admit takes v's admission slot. The returned bulkhead (nil without admission
// control) must be released. A request waits at most the limiter's queue wait or
// until its deadline: a context with the deadline is only built when the deadline
// comes first, so the common path allocates nothing.
func (p *production) admit(v *version, deadline time.Time) (*admission.Bulkhead, error) {
	if p == nil || p.lim == nil {
		return nil, nil
	}
	// nil: a model of a newer snapshot than the weights, not limited.
	return p.acquire(p.lim.Bulkhead(v.model), deadline)
}

// admitEarly takes the admission slot of the model a request's body names before the
// body is decoded (peekModel): nil model, no admission control or a name without a
// bulkhead (an unknown model, or one newer than the weights) take nothing and leave
// admission to admit, after decoding. Rejections are admit's.
func (p *production) admitEarly(model []byte, deadline time.Time) (*admission.Bulkhead, error) {
	if p == nil || p.lim == nil || model == nil {
		return nil, nil
	}
	return p.acquire(p.lim.BulkheadBytes(model), deadline)
}

// acquire waits for b's slot within the deadline (see admit); a nil b takes nothing.
func (p *production) acquire(b *admission.Bulkhead, deadline time.Time) (*admission.Bulkhead, error) {
	if b == nil {
		return nil, nil
	}
	ctx := bg
	if !deadline.IsZero() {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w before admission (raise X-Deadline-Ms or --default-deadline)", errDeadline)
		}
		if left < p.queueWait {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(bg, deadline)
			defer cancel()
		}
	}
	if err := b.Acquire(ctx); err != nil {
		return nil, err
	}
	return b, nil
}
