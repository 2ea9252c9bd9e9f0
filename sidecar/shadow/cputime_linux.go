package shadow

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the calling OS thread's CPU time (CLOCK_THREAD_CPUTIME_ID); the
// caller must be locked to its thread (runtime.LockOSThread) between two readings.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

// workerSlice is the time slice asked for a worker's thread: the shortest the kernel
// grants (a custom slice, Linux 6.12+; older kernels ignore it).
const workerSlice = 100 * time.Microsecond

// shortSlice gives the calling thread (locked to its goroutine) workerSlice at its
// current policy and nice value, and reports whether the kernel kept it. Why: a worker
// scores within its CPU budget at normal priority, and EEVDF lets a running thread
// finish its slice (0.75 ms × (1 + log2 CPUs) by default) before a woken thread of the
// same class takes the core; a primary's request thread woken beside a shadow batch
// then waits up to that long. With the short slice it waits about 0.1 ms, and the
// worker keeps its fair share of the CPU (the slice changes when, not how much, it runs).
// The C++ core's background threads do the same at nice 19 (csrc/background.cc).
func shortSlice() bool {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return false
	}
	attr.Size = unix.SizeofSchedAttr
	attr.Runtime = uint64(workerSlice)
	if unix.SchedSetAttr(0, attr, 0) != nil {
		return false
	}
	got, err := unix.SchedGetAttr(0, 0)
	return err == nil && got.Runtime == uint64(workerSlice)
}
