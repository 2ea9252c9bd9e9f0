//go:build linux

package cputime

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestThreadResolution: a few microseconds of work show as a few microseconds (the
// ticks of getrusage show 0 or 4 ms), and the clock counts this thread's work only: a
// sleep adds nothing.
func TestThreadResolution(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	small := 0
	for range 20 {
		a := Thread()
		spin(20 * time.Microsecond)
		d := Thread() - a
		if d <= 0 || d > 50*time.Millisecond {
			t.Fatalf("20 µs of work read as %v", d)
		}
		if d < time.Millisecond {
			small++
		}
	}
	if small < 10 { // a busy machine may stretch some, not most
		t.Errorf("only %d of 20 spins of 20 µs read under 1 ms", small)
	}
	a := Thread()
	time.Sleep(20 * time.Millisecond)
	if d := Thread() - a; d > 5*time.Millisecond {
		t.Errorf("a 20 ms sleep cost %v of the thread's CPU", d)
	}
}

// spin works on this thread for d of wall time.
func spin(d time.Duration) {
	x := uint64(1)
	for start := time.Now(); time.Since(start) < d; {
		for range 100 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink = x
}

var sink uint64

// BenchmarkThread: the cost of one reading, beside getrusage(RUSAGE_THREAD).
func BenchmarkThread(b *testing.B) {
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			_ = Thread()
		}
	})
	b.Run("getrusage", func(b *testing.B) {
		var ru syscall.Rusage
		for b.Loop() {
			_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
		}
	})
}
