//go:build !linux

package features

import "os/exec"

func dieWithTest(*exec.Cmd) {}
