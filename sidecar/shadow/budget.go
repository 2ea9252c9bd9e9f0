package shadow

import (
	"fmt"
	"sync"
	"time"
)

// Budget is a CPU-time budget for shadow scoring at normal priority: a token bucket of
// CPU nanoseconds refilled at Share cores (Share CPU-seconds per second) and holding at
// most one second of refill (the bounded burst). A worker scores a shadow's job at normal
// priority when the bucket is not empty, then charges the thread CPU time the job took;
// the bucket may go into debt by one job's cost, which later refills repay. Jobs that find
// it empty go to the idle-priority path. The sampling rate of the shadows on a budget is
// lowered so that their expected cost fits it (Mirror's rate adaptation), so the bucket
// running dry is the exception, not the way load is shed.
//
// One Budget may be shared by the shadows of many primaries. Its methods are safe for
// concurrent use.
type Budget struct {
	mu     sync.Mutex
	share  float64 // cores
	tokens float64 // CPU ns; may be negative (debt)
	last   time.Time
	now    func() time.Time

	spent   float64 // CPU ns charged, for Stats
	granted uint64  // jobs admitted at normal priority
	refused uint64  // jobs that found the bucket empty
}

// burstWindow is how much refill the bucket holds: one second of the share, so a shadow
// can take at most share×1 s of CPU at normal priority in one go after a quiet spell.
const burstWindow = time.Second

// NewBudget returns a full bucket for share cores; share must be in (0, 1024].
func NewBudget(share float64) (*Budget, error) {
	return newBudget(share, time.Now)
}

func newBudget(share float64, now func() time.Time) (*Budget, error) {
	if err := checkShare(share); err != nil {
		return nil, err
	}
	b := &Budget{share: share, now: now, last: now()}
	b.tokens = b.burst()
	return b, nil
}

func checkShare(share float64) error {
	if !(share > 0 && share <= 1024) {
		return fmt.Errorf("cpu share %v: want a number of cores in (0, 1024]", share)
	}
	return nil
}

func (b *Budget) burst() float64 { return b.share * float64(burstWindow) }

// SetShare changes the budget's share; the tokens held are kept, capped at the new burst.
func (b *Budget) SetShare(share float64) error {
	if err := checkShare(share); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.share = share
	b.tokens = min(b.tokens, b.burst())
	return nil
}

// Share returns the budget's share in cores.
func (b *Budget) Share() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.share
}

// refill adds the tokens earned since the last call. Called with mu held.
func (b *Budget) refill() {
	now := b.now()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst(), b.tokens+float64(d)*b.share)
	}
	b.last = now
}

// take reports whether a job may run at normal priority now: the bucket is not empty.
func (b *Budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens > 0 {
		b.granted++
		return true
	}
	b.refused++
	return false
}

// charge takes a job's thread CPU time from the bucket.
func (b *Budget) charge(cpu time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens -= float64(cpu)
	b.spent += float64(cpu)
}

// BudgetStats is a snapshot of a Budget.
type BudgetStats struct {
	Share      float64 `json:"cpu_share"`       // cores
	CPUSeconds float64 `json:"cpu_seconds"`     // CPU time charged
	Granted    uint64  `json:"normal_priority"` // jobs scored at normal priority
	Refused    uint64  `json:"over_budget"`     // jobs that found the bucket empty
	Tokens     float64 `json:"tokens_seconds"`  // CPU seconds left in the bucket (negative: debt)
}

// Stats returns a snapshot of the budget.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	return BudgetStats{Share: b.share, CPUSeconds: b.spent / 1e9, Granted: b.granted, Refused: b.refused,
		Tokens: finiteOr0(b.tokens / 1e9)}
}
