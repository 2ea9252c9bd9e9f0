package main

import (
	"slices"
	"testing"
)

func TestSteadyGODEBUG(t *testing.T) {
	for _, c := range []struct {
		in, want string
		change   bool
	}{
		{"", "schedtrace=2147483647", true},
		{"madvdontneed=1", "madvdontneed=1,schedtrace=2147483647", true},
		{"gctrace=1,madvdontneed=1", "gctrace=1,madvdontneed=1,schedtrace=2147483647", true},
		{"scheddetail=1", "scheddetail=1,schedtrace=2147483647", true},
		{"xschedtrace=5", "xschedtrace=5,schedtrace=2147483647", true},
		{" schedtrace=0", " schedtrace=0,schedtrace=2147483647", true}, // the runtime ignores " schedtrace"
		// Set already, to anything (0: the runtime's own behaviour): left as it is.
		{"schedtrace=0", "schedtrace=0", false},
		{"schedtrace=1000", "schedtrace=1000", false},
		{"gctrace=1,schedtrace=0", "gctrace=1,schedtrace=0", false},
		{"schedtrace=2147483647", "schedtrace=2147483647", false},
	} {
		got, change := steadyGODEBUG(c.in)
		if got != c.want || change != c.change {
			t.Errorf("steadyGODEBUG(%q) = %q, %v; want %q, %v", c.in, got, change, c.want, c.change)
		}
	}
}

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"A=1", "GODEBUG=x=1", "B=2", "GODEBUG=y=2", "GODEBUGX=3"}, "GODEBUG", "z=3")
	want := []string{"A=1", "B=2", "GODEBUGX=3", "GODEBUG=z=3"}
	if !slices.Equal(got, want) {
		t.Fatalf("withEnv = %q, want %q", got, want)
	}
}
