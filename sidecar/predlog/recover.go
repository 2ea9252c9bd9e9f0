package predlog

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Recovered is one ".part" file that Recover finalized.
type Recovered struct {
	Path  string // the final name
	Lines int    // the complete lines kept
	Lost  int64  // bytes of a torn last line or block that were dropped
}

// Recover finalizes the ".part" files a process left in dir when it was killed
// (SIGKILL, a crash, the OOM killer) before it could rename them: each is decoded as far
// as its zstd stream reads, its complete lines are written to a new, whole stream under
// the final name, and the ".part" file is removed. A torn last line is dropped (its
// bytes are reported in Lost) so that readers see only whole records. A file whose
// final name already exists is left alone.
//
// Call Recover at start-up, before any Logger writes to dir: it would take a running
// Logger's file for an orphan.
func Recover(dir string) ([]Recovered, error) {
	parts, err := filepath.Glob(filepath.Join(dir, "*.jsonl.zst.part"))
	if err != nil {
		return nil, fmt.Errorf("predlog: %w", err)
	}
	var out []Recovered
	var errs []error
	for _, part := range parts {
		r, err := recoverFile(part)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Path != "" {
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

func recoverFile(part string) (Recovered, error) {
	final := strings.TrimSuffix(part, ".part")
	if st, err := os.Lstat(part); err != nil || !st.Mode().IsRegular() {
		return Recovered{}, nil // gone meanwhile, or not a file this package wrote
	}
	if _, err := os.Lstat(final); err == nil {
		return Recovered{}, nil
	}
	in, err := os.Open(part)
	if err != nil {
		return Recovered{}, fmt.Errorf("predlog: recover %s: %w", part, err)
	}
	defer in.Close()
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return Recovered{}, fmt.Errorf("predlog: recover %s: %w", part, err)
	}
	defer dec.Close()
	tmp := final + ".recover"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Recovered{}, fmt.Errorf("predlog: recover %s: %w", part, err)
	}
	enc, err := zstd.NewWriter(f, zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return Recovered{}, fmt.Errorf("predlog: recover %s: %w", part, err)
	}
	r := Recovered{Path: final}
	// Decoding stops at the first torn block; everything before it is whole.
	br := bufio.NewReaderSize(dec, 64<<10)
	var werr error
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: collect it whole.
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			// io.EOF after a whole stream, else the decoder met the torn end of the
			// stream: either way the readable prefix ends here.
			r.Lost += int64(len(line))
			break
		}
		if _, werr = enc.Write(line); werr != nil {
			break
		}
		r.Lines++
	}
	if werr == nil {
		werr = enc.Close()
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, final)
	}
	if werr != nil {
		os.Remove(tmp)
		return Recovered{}, fmt.Errorf("predlog: recover %s: %w", part, werr)
	}
	if err := os.Remove(part); err != nil {
		return r, fmt.Errorf("predlog: recover %s: %w", part, err)
	}
	return r, nil
}
