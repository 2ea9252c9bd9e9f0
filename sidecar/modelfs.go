package sidecar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// ErrNotRegular refuses a model-repository entry that is neither a regular file nor a
// directory: a FIFO would block every later reload and shutdown on its open or read, and
// a device such as /dev/zero would be read until memory runs out.
var ErrNotRegular = errors.New("not a regular file")

// ErrChanging refuses a file that changed while it was read (an in-place rewrite in
// progress): loading it could serve a half-written model. The watcher retries after its
// debounce; publish versions by renaming a finished directory in instead (docs/operations.md).
var ErrChanging = errors.New("file changed while it was read")

// tooBig is the error for a file over its size limit; it names the flag that raises it.
func tooBig(name string, size, limit int64, flag string) error {
	return fmt.Errorf("%s is %d bytes, over the limit of %d bytes (%s)", name, size, limit, flag)
}

// readLimited reads name from fsys whole, if it is a regular file of at most limit bytes
// and it does not change while it is read (same size and modification time before and
// after). flag names the setting that raises limit, for the error. With a repository
// opened by ModelDirFS the open itself never blocks.
func readLimited(fsys fs.FS, name string, limit int64, flag string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("%w (%s)", ErrNotRegular, kind(before.Mode()))}
	}
	if before.Size() > limit {
		return nil, tooBig(name, before.Size(), limit, flag)
	}
	// One byte past the limit tells a file that grew since the Stat.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooBig(name, int64(len(data)), limit, flag)
	}
	after, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != before.Size() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: ErrChanging}
	}
	return data, nil
}

// kind names a file mode's type for errors.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	}
	return "not a regular file"
}
