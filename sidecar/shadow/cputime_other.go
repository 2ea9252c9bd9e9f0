//go:build !linux

package shadow

import "time"

// threadCPU has no per-thread clock here: the caller charges wall time instead, an upper
// bound of the CPU time.
func threadCPU() (time.Duration, bool) { return 0, false }

// shortSlice: no custom time slices here.
func shortSlice() bool { return false }
