package onnx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLibraryLookup(t *testing.T) {
	f := func(want ...string) {
		t.Helper()
		_, err := findLib("")
		if err == nil {
			t.Fatal("findLib found a library")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not mention %q", err, w)
			}
		}
	}
	t.Setenv("ORT_LIB", "/nonexistent/libonnxruntime.so.1")
	f("ORT_LIB=/nonexistent/libonnxruntime.so.1 does not exist", "run scripts/fetch-ort.sh or set ORT_LIB")
	t.Setenv("ORT_LIB", t.TempDir())
	f("is not a file", "run scripts/fetch-ort.sh or set ORT_LIB")

	// Unset: found from the working directory up.
	t.Setenv("ORT_LIB", "")
	dir := t.TempDir()
	t.Chdir(dir)
	if p, err := findLib(""); err == nil && strings.HasPrefix(p, dir) {
		t.Fatalf("found %s in an empty directory", p)
	}
	lib := filepath.Join(dir, DefaultLibPath)
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)
	if p, err := findLib(""); err != nil || p != lib {
		t.Fatalf("findLib from %s = %q, %v; want %s", deep, p, err, lib)
	}
}

func TestInitOnce(t *testing.T) {
	lib := LibPath()
	if lib == "" || Version() != "1.29.0" {
		t.Fatalf("LibPath %q, Version %q after TestMain's Init", lib, Version())
	}
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	if err := Init(lib); err != nil {
		t.Fatal(err)
	}
	if err := Init("/other/libonnxruntime.so.1"); err == nil || !strings.Contains(err.Error(), "already loaded from") {
		t.Fatalf("Init with another library: %v", err)
	}
}

func TestORTReason(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := ortReason(in); got != want {
			t.Fatalf("ortReason(%q) = %q, want %q", in, got, want)
		}
	}
	f("/onnxruntime_src/x.cc:1988 onnxruntime::Provider& Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library a.so with error: b.so: cannot open\nmore",
		"Failed to load library a.so with error: b.so: cannot open")
	f("cuda provider options: plain error", "cuda provider options: plain error")
	f(" two\nlines ", "two")
}
