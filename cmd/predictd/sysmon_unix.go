//go:build unix

package main

import "syscall"

// execSelf replaces the process's image with exe: on success it does not return.
//
// syscall.Exec puts back the open-file limit the process started with (the runtime
// raised the soft limit to the hard one at start) and does not raise it again when
// execve fails, so the limit is restored here for the serving that follows a failure.
func execSelf(exe string, args, env []string) error {
	var lim syscall.Rlimit
	have := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil
	err := syscall.Exec(exe, args, env)
	if have {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return err
}
