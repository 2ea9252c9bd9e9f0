//go:build !unix

package main

// execSelf would replace the process's image; without execve the process goes on as
// it started.
func execSelf(exe string, args, env []string) error { return nil }
