//go:build unix

package sidecar

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestModelDirFSRefusesSpecialFiles: a FIFO, a device behind a symbolic link and a
// directory in a model file's place are refused at once, with errors that say what they
// are; a symbolic link to a regular file (how a mounted ConfigMap looks) reads normally.
func TestModelDirFSRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "real.txt"), []byte("tree\n"), 0o644)
	os.Symlink("real.txt", filepath.Join(dir, "link.txt"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	fsys := ModelDirFS(dir)
	for _, name := range []string{"fifo", "zero"} {
		done := make(chan error, 1)
		go func() { _, err := readLimited(fsys, name, 1<<20, "--max-model-bytes"); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: %v, want ErrNotRegular", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the read blocked", name)
		}
	}
	if _, err := readLimited(fsys, "sub", 1<<20, "--max-model-bytes"); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("directory: %v", err)
	}
	if data, err := readLimited(fsys, "link.txt", 1<<20, "--max-model-bytes"); err != nil || string(data) != "tree\n" {
		t.Errorf("symlink to a regular file: %q %v", data, err)
	}
	if _, err := readLimited(fsys, "../etc/passwd", 1<<20, "--max-model-bytes"); err == nil {
		t.Error("a path outside the repository was read")
	}
}

// TestReadLimitedSize: a file over the limit is refused before it is read, with an error
// naming the limit and the flag that raises it.
func TestReadLimitedSize(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "model.yaml"), []byte(strings.Repeat("#", 2000)), 0o644)
	_, err := readLimited(ModelDirFS(dir), "model.yaml", 1000, "model.yaml limit")
	if err == nil || !strings.Contains(err.Error(), "2000 bytes, over the limit of 1000 bytes (model.yaml limit)") {
		t.Errorf("%v", err)
	}
	if data, err := readLimited(ModelDirFS(dir), "model.yaml", 2000, "x"); err != nil || len(data) != 2000 {
		t.Errorf("at the limit: %d bytes, %v", len(data), err)
	}
}

// TestReadLimitedChanging: a file rewritten in place while it is read is refused as
// changing, never returned half old, half new.
func TestReadLimitedChanging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.txt")
	os.WriteFile(path, []byte(strings.Repeat("a", 1<<20)), 0o644)
	// A file system that appends to the file between the open and the end of the read,
	// as a slow writer would.
	fsys := hookFS{FS: ModelDirFS(dir), afterOpen: func() {
		f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		f.Write([]byte("more"))
		f.Close()
	}}
	if _, err := readLimited(fsys, "model.txt", 4<<20, "x"); !errors.Is(err, ErrChanging) {
		t.Errorf("%v, want ErrChanging", err)
	}
	// Rewritten with the same size: the modification time tells.
	fsys.afterOpen = func() {
		time.Sleep(10 * time.Millisecond)
		os.WriteFile(path, []byte(strings.Repeat("b", 1<<20+4)), 0o644)
	}
	if _, err := readLimited(fsys, "model.txt", 4<<20, "x"); !errors.Is(err, ErrChanging) {
		t.Errorf("same size: %v, want ErrChanging", err)
	}
}

// hookFS calls afterOpen once a file is open and its size known, before it is read.
type hookFS struct {
	fs.FS
	afterOpen func()
}

func (h hookFS) Open(name string) (fs.File, error) {
	f, err := h.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return hookFile{File: f, hook: h.afterOpen}, nil
}

type hookFile struct {
	fs.File
	hook func()
}

func (h hookFile) Stat() (fs.FileInfo, error) {
	st, err := h.File.Stat()
	if h.hook != nil {
		h.hook() // after the first Stat: the size the reader goes by is the old one
	}
	return st, err
}
