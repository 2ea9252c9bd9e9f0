//go:build unix

package sidecar

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ModelDirFS is os.DirFS(dir) for a model repository: Open follows symbolic links (a
// mounted ConfigMap is made of them) but refuses anything that is neither a regular file
// nor a directory, and never blocks doing so: the file is opened O_NONBLOCK (a FIFO's open
// returns at once) and checked with fstat before anyone reads it.
func ModelDirFS(dir string) fs.FS { return modelDir(dir) }

type modelDir string

func (d modelDir) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	f, err := os.OpenFile(filepath.Join(string(d), filepath.FromSlash(name)), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() && !st.IsDir() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	return f, nil
}

// ReadDir and Stat let fs.ReadDir and fs.Stat skip Open (Stat follows links, like Open).
func (d modelDir) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	return os.ReadDir(filepath.Join(string(d), filepath.FromSlash(name)))
}

func (d modelDir) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	return os.Stat(filepath.Join(string(d), filepath.FromSlash(name)))
}
