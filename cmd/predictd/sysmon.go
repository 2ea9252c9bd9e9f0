package main

import (
	"os"
	"strings"
)

// The Go runtime's monitor thread, sysmon, sleeps while no goroutine runs, and the next
// system call wakes it; after such a wake it checks every 20 µs for its first
// millisecond, and goes back to sleep at the first check that finds nothing running.
// A sidecar that is idle between requests pays for that on every request: on a 2-vCPU
// VM, where a thread's sleep and wake-up cost about 13 µs, 60 requests/s of 1,000
// candidates on the demo model had sysmon's five to six wake-ups per request take 13%
// of the sidecar's CPU (docs/operations.md, "The runtime's monitor thread"). The
// runtime has no setting for the tick (golang/go#18236); what keeps sysmon from its deep
// sleep is a positive schedtrace, and out of it sysmon's tick backs off to 10 ms while
// it has nothing to do. schedtrace's own work, a line of scheduler state on stderr, then
// comes once every 2^31 ms (24.8 days) of the host's uptime, and a fatal error prints
// the scheduler's detailed state (every P, M and goroutine) before its message; the
// operations guide lists these costs.
//
// The runtime reads GODEBUG once, when the process starts, so serve starts itself
// again with schedtrace added (execve: the same process, arguments and environment)
// unless GODEBUG already sets schedtrace (schedtrace=0 keeps the runtime's own
// behaviour) or --steady-sysmon=false.

// steadySchedtrace is the largest schedtrace the runtime takes (an int32 of ms).
const steadySchedtrace = "schedtrace=2147483647"

// steadyGODEBUG returns the GODEBUG value that keeps sysmon steady given the current
// one, and whether it differs: false when godebug already sets schedtrace.
func steadyGODEBUG(godebug string) (string, bool) {
	for _, field := range strings.Split(godebug, ",") {
		if key, _, _ := strings.Cut(field, "="); key == "schedtrace" { // as the runtime reads it: no spaces
			return godebug, false
		}
	}
	if godebug == "" {
		return steadySchedtrace, true
	}
	return godebug + "," + steadySchedtrace, true
}

// withEnv returns env with key set to value, replacing any earlier settings of key.
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// steadySysmon starts this process again with sysmon kept steady, if it is not yet. It
// returns only when it does not (already steady, or the restart failed: the error).
func steadySysmon() error {
	godebug, change := steadyGODEBUG(os.Getenv("GODEBUG"))
	if !change {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return execSelf(exe, os.Args, withEnv(os.Environ(), "GODEBUG", godebug))
}
