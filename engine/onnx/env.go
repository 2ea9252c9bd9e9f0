package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// DefaultLibPath is where scripts/fetch-ort.sh installs ONNX Runtime, relative to the
// repository root.
const DefaultLibPath = "third_party/onnxruntime/lib/libonnxruntime.so.1"

// fetchHint ends every "library not found" error.
const fetchHint = "run scripts/fetch-ort.sh or set ORT_LIB"

var env struct {
	mu  sync.Mutex
	lib string // the library the process initialized; "" before a successful Init
}

// Init loads ONNX Runtime and creates its process-wide environment. It is done once per
// process: later calls with the same path or an empty one return nil; a different path
// is an error (a process cannot load two ONNX Runtimes). An empty libPath means $ORT_LIB,
// else DefaultLibPath found in the working directory or one of its parents, else beside
// the executable or one of its parents. Load calls Init("") when nobody has. Safe for
// concurrent use.
func Init(libPath string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.lib != "" {
		if libPath == "" || libPath == env.lib {
			return nil
		}
		return fmt.Errorf("onnx: ONNX Runtime is already loaded from %s; cannot load %s too", env.lib, libPath)
	}
	lib, err := findLib(libPath)
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(lib)
	// ONNX Runtime's own log stays quiet below fatal: every failure reaches the caller as an
	// error, and a client sending bad ids must not flood the sidecar's stderr.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		return fmt.Errorf("onnx: loading ONNX Runtime from %s: %w (%s)", lib, err, fetchHint)
	}
	env.lib = lib
	return nil
}

// LibPath returns the ONNX Runtime library the process loaded, or "" before Init.
func LibPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.lib
}

// Version returns the loaded ONNX Runtime's version, or "" before Init.
func Version() string {
	if LibPath() == "" {
		return ""
	}
	return ort.GetVersion()
}

func findLib(libPath string) (string, error) {
	if libPath != "" {
		return checkLib(libPath, "")
	}
	if p := os.Getenv("ORT_LIB"); p != "" {
		return checkLib(p, "ORT_LIB=")
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, DefaultLibPath)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("onnx: ONNX Runtime library not found: ORT_LIB is unset and no %s in %v or their parents; %s",
		DefaultLibPath, starts, fetchHint)
}

func checkLib(p, what string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("onnx: ONNX Runtime library %s%s does not exist; %s", what, p, fetchHint)
		}
		return "", fmt.Errorf("onnx: ONNX Runtime library %s%s: %w", what, p, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("onnx: ONNX Runtime library %s%s is not a file; %s", what, p, fetchHint)
	}
	return p, nil
}
