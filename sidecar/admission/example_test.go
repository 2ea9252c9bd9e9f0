package admission_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/predictd/predictd/sidecar/admission"
)

// A handler takes its model's slot before scoring and turns a rejection into 429/503
// with Retry-After.
func Example() {
	// The queued request waits up to a second: still waiting when the third arrives,
	// however loaded the machine.
	lim, err := admission.New(admission.Config{Capacity: 4, QueuePerSlot: 1, MaxQueueWait: time.Second})
	if err != nil {
		panic(err)
	}
	defer lim.Close()
	if err := lim.SetWeights(map[string]float64{"ctr": 3, "search": 1}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	// search has one slot and one queue place: the third concurrent request is rejected.
	b, _ := lim.Acquire(ctx, "search")
	go lim.Acquire(ctx, "search")
	for b.Stats().Queued == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err = lim.Acquire(ctx, "search")
	var oe *admission.OverloadedError
	if errors.As(err, &oe) {
		fmt.Println("status", oe.Status, "Retry-After:", oe.RetryAfterHeader())
	}
	b.Release()
	// Output: status 429 Retry-After: 1
}
