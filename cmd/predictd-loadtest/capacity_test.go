package main

import "testing"

func TestParseMs(t *testing.T) {
	f := func(in string, want float64, ok bool) {
		t.Helper()
		got, err := parseMs(in)
		if (err == nil) != ok || (ok && got != want) {
			t.Errorf("parseMs(%q) = %v, %v; want %v (ok %v)", in, got, err, want, ok)
		}
	}
	f("20ms", 20, true)
	f("20", 20, true)
	f("0.5s", 500, true)
	f("1.5", 1.5, true)
	f("250us", 0.25, true)
	f("", 0, false)
	f("fast", 0, false)
}

// TestCapacityFlags: the ambiguous --rate and a missing rate are usage errors (exit 2).
func TestCapacityFlags(t *testing.T) {
	f := func(want int, args ...string) {
		t.Helper()
		if got := capacityCmd(args); got != want {
			t.Errorf("capacity %q: exit %d, want %d", args, got, want)
		}
	}
	f(2, "--rate", "5000", "--p99", "20ms", "profile")
	f(2, "--p99", "20ms", "profile")
	f(2, "--rps", "1", "--predictions-per-sec", "1", "--p99", "20ms", "profile")
	f(2, "--rps", "1", "--p99", "soon", "profile")
	f(1, "--rps", "5000", "--candidates", "1000", "--p99", "20ms", t.TempDir()) // no profiles there
}
