//go:build linux

// Package cputime reads the calling thread's CPU time with nanosecond resolution, for
// the benchmarks that charge work by the CPU it took rather than by the wall clock.
//
// getrusage(RUSAGE_THREAD), which they read before, counts in scheduler ticks on Linux
// (4 ms at HZ=250): a benchmark that runs 60 ms of work per sample reads it as 14, 15 or
// 16 ticks, a step of 7%. The thread's CPU clock has no such step (TestThreadResolution);
// a reading costs about what getrusage's does (BenchmarkThread).
package cputime

import (
	"time"

	"golang.org/x/sys/unix"
)

// Thread is the calling OS thread's CPU time, user and system (CLOCK_THREAD_CPUTIME_ID).
// Lock the goroutine to its thread (runtime.LockOSThread) around what is measured.
func Thread() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic("BUG: clock_gettime(CLOCK_THREAD_CPUTIME_ID): " + err.Error())
	}
	return time.Duration(ts.Nano())
}
