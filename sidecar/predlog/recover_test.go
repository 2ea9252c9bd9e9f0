package predlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// writePart writes lines as a killed Logger leaves them: one zstd stream, flushed after
// every line (so each line ends a block), never closed, under a ".part" name; then it
// cuts cut bytes off the end, as a write torn by SIGKILL would.
func writePart(t *testing.T, path string, lines []string, cut int) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		enc.Write([]byte(l + "\n"))
		if err := enc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	if err := os.WriteFile(path, b[:len(b)-cut], 0o644); err != nil {
		t.Fatal(err)
	}
}

func readZst(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	data, err := io.ReadAll(dec) // fails on a torn stream: Recover must write whole ones
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// TestRecoverOrphans: the ".part" files of a killed process become whole files holding
// every complete line; a torn last block loses only its own line; the files of other
// prefixes are recovered too, and an existing final name is never overwritten.
func TestRecoverOrphans(t *testing.T) {
	dir := t.TempDir()
	lines := make([]string, 50)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"ts":"2026-12-04T00:00:%02dZ","predictions":[%d]}`, i, i)
	}
	whole := filepath.Join(dir, "ctr-20261204T000000Z-000001.jsonl.zst")
	torn := filepath.Join(dir, "ctr.g2-20261204T000100Z-000001.jsonl.zst")
	taken := filepath.Join(dir, "cvr-20261204T000200Z-000001.jsonl.zst")
	writePart(t, whole+".part", lines, 0)
	writePart(t, torn+".part", lines, 3) // the last block is torn
	writePart(t, taken+".part", lines, 0)
	if err := os.WriteFile(taken, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Recover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("recovered %+v, want the two files without a final name", got)
	}
	for _, r := range got {
		want := lines
		if r.Path == torn {
			want = lines[:len(lines)-1]
		}
		if r.Lines != len(want) {
			t.Errorf("%s: %d lines recovered, want %d", r.Path, r.Lines, len(want))
		}
		back := readZst(t, r.Path)
		if strings.Join(back, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: read back %d lines, want %d", r.Path, len(back), len(want))
		}
		for _, l := range back {
			if !json.Valid([]byte(l)) {
				t.Errorf("%s: invalid line %q", r.Path, l)
			}
		}
		if _, err := os.Stat(r.Path + ".part"); !os.IsNotExist(err) {
			t.Errorf("%s.part still there: %v", r.Path, err)
		}
	}
	if b, _ := os.ReadFile(taken); string(b) != "keep" {
		t.Errorf("an existing file was overwritten")
	}
	// A second run finds nothing more to do.
	if again, err := Recover(dir); err != nil || len(again) != 0 {
		t.Errorf("second Recover: %+v %v", again, err)
	}
}

// TestRecoverGarbage: a ".part" file that is not zstd at all becomes an empty whole
// file rather than an error that stops start-up.
func TestRecoverGarbage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m-20261204T000000Z-000001.jsonl.zst")
	os.WriteFile(p+".part", []byte("not zstd"), 0o644)
	got, err := Recover(dir)
	if err != nil || len(got) != 1 || got[0].Lines != 0 {
		t.Fatalf("%+v %v", got, err)
	}
	if l := readZst(t, p); len(l) != 1 || l[0] != "" {
		t.Errorf("read back %q", l)
	}
}
