//go:build unix

package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestExecSelfFailureKeepsFileLimit: an exec that fails returns its error and leaves the
// process's open-file limit as it was. syscall.Exec lowers it to the one the process
// started with before it tries, which differs only when the runtime raised it at start:
// so the check runs in a child started with a soft limit under its hard one.
func TestExecSelfFailureKeepsFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PREDICTD_TEST_EXEC_CHILD") == "1" {
		if err := execSelf("/nonexistent/predictd", []string{"predictd"}, nil); err == nil {
			t.Fatal("exec of a missing file succeeded")
		}
		var after syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
			t.Fatal(err)
		}
		if after != lim {
			t.Fatalf("open-file limit %+v after a failed exec, %+v before", after, lim)
		}
		return
	}
	low := lim
	low.Cur = min(lim.Cur, lim.Max/2)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExecSelfFailureKeepsFileLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "PREDICTD_TEST_EXEC_CHILD=1")
	out, err := cmd.CombinedOutput() // the child inherits the lowered soft limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child (soft limit %d): %v\n%s", low.Cur, err, out)
	}
}
