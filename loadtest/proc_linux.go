//go:build linux

package loadtest

import "golang.org/x/sys/unix"

// processCPU reads pid's process CPU clock in nanoseconds. Any process's may be read,
// without privileges.
func processCPU(pid int) (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(processCPUClock(pid), &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}

// processCPUClock is the clock id of pid's process CPU clock, the kernel's
// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED): the pid's complement shifted past the
// three clock bits, CPUCLOCK_SCHED (2) in them, the per-thread bit (4) clear.
func processCPUClock(pid int) int32 {
	const cpuclockSched = 2
	return int32((^pid)<<3 | cpuclockSched)
}
