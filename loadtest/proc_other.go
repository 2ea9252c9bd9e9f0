//go:build !linux

package loadtest

// processCPU: no process CPU clock of another process here (ReadProc fails anyway, as
// there is no /proc).
func processCPU(pid int) (int64, bool) { return 0, false }
