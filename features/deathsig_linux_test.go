package features

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes a child redis-server die with the test binary, even when the test is
// killed before its cleanups run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
