//go:build unix

package main

import "syscall"

// execSelf replaces the process's image with exe: on success it does not return.
func execSelf(exe string, args, env []string) error {
	return syscall.Exec(exe, args, env)
}
