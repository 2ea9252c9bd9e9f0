//go:build linux

package loadtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/predictd/predictd/internal/cputime"
)

// TestReadProcResolution: the CPU time ReadProc reports resolves a few milliseconds of
// work, which /proc/<pid>/stat's 10 ms ticks show as 0 or 10 ms, and agrees with the
// ticks to within them; another process's clock reads as well.
func TestReadProcResolution(t *testing.T) {
	if _, ok := processCPU(os.Getpid()); !ok {
		t.Skip("no process CPU clock on this system")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range 5 {
		a, err := ReadProc(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		burn(3 * time.Millisecond)
		b, err := ReadProc(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if d := b.CPUSeconds - a.CPUSeconds; d < 0.0025 || d > 0.5 {
			t.Fatalf("3 ms of work read as %.4f s of CPU", d)
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := parseProcStat(data)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := processCPU(os.Getpid())
	if d := float64(ns)/1e9 - ticks.CPUSeconds; d < -0.05 || d > 0.05 {
		t.Errorf("process clock %.3f s, stat's %.3f s", float64(ns)/1e9, ticks.CPUSeconds)
	}
	// A child that spins: its clock, read from here, advances by its work.
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	c1, ok := processCPU(cmd.Process.Pid)
	time.Sleep(300 * time.Millisecond)
	c2, _ := processCPU(cmd.Process.Pid)
	if !ok || c2 <= c1 {
		t.Errorf("child's clock %d then %d ns, ok %v", c1, c2, ok)
	}
}

// burn spins on this thread for d of its CPU time.
func burn(d time.Duration) {
	start := cputime.Thread()
	x := uint64(1)
	for cputime.Thread()-start < d {
		for range 1000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sinkU64 = x
}

var sinkU64 uint64
