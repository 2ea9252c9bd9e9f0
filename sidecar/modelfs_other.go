//go:build !unix

package sidecar

import (
	"io/fs"
	"os"
)

// ModelDirFS is os.DirFS(dir): without O_NONBLOCK the open of a FIFO may block, so it
// relies on readLimited's checks after the open.
func ModelDirFS(dir string) fs.FS { return os.DirFS(dir) }
