package features

import (
	"sync"
	"time"
)

type breakerState int

const (
	breakerClosed   breakerState = iota // reads go to the backend
	breakerOpen                         // reads are refused until the cooldown passes
	breakerHalfOpen                     // one probe read is in flight
)

// breaker is a circuit breaker: failures consecutive failed (or late) backend reads open
// it; while open, Fetch answers from cache and defaults without touching the backend; after
// cooldown one read probes the backend, and its success closes the breaker again.
type breaker struct {
	failures int
	cooldown time.Duration

	mu       sync.Mutex
	state    breakerState
	failed   int
	openedAt time.Time
	opens    int64
}

// allow reports whether a read may go to the backend now. In the open state after the
// cooldown, the first caller becomes the probe.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return true
	case breakerOpen:
		if now.Sub(b.openedAt) >= b.cooldown {
			b.state = breakerHalfOpen
			return true
		}
	}
	return false
}

// record counts a finished backend read.
func (b *breaker) record(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.state, b.failed = breakerClosed, 0
		return
	}
	b.failed++
	if b.state == breakerHalfOpen || (b.state == breakerClosed && b.failed >= b.failures) {
		if b.state == breakerClosed {
			b.opens++
		}
		b.state, b.openedAt = breakerOpen, now
	}
}

// snapshot returns the state and how often the breaker opened, for metrics and tests.
func (b *breaker) snapshot() (breakerState, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.opens
}
