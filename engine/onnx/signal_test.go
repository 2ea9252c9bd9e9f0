package onnx

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sigtermChildEnv makes the test binary act as a small server (see sigtermChild).
const sigtermChildEnv = "PREDICTD_ONNX_SIGTERM_CHILD"

// sigtermChild loads ONNX Runtime and a model (on ONNX_TEST_DEVICE), says "ready", waits
// for SIGTERM through os/signal, then still scores (graceful drain) and exits 0. If ONNX
// Runtime had replaced Go's signal handlers (onnxruntime_go issue #140, seen with the CUDA
// EP), SIGTERM would kill the process instead, or never reach the channel.
func sigtermChild() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if err := Init(""); err != nil {
		fmt.Println("init:", err)
		return 2
	}
	tc := mlpCase()
	features := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	cfg := tc.cfg
	cfg.Device = testDevice
	cfg.Batching = &BatchingConfig{}
	m, err := Load(modelPath(tc.name), cfg, features)
	if err != nil {
		fmt.Println("load:", err)
		return 2
	}
	rows := make([]float32, 8)
	out := make([]float64, 1)
	if err := m.PredictF32(rows, 1, out, false); err != nil {
		fmt.Println("predict:", err)
		return 2
	}
	fmt.Printf("ready on %s\n", m.Device())
	select {
	case s := <-sig:
		fmt.Println("got", s)
	case <-time.After(30 * time.Second):
		fmt.Println("no signal within 30s")
		return 3
	}
	if err := m.PredictF32(rows, 1, out, false); err != nil {
		fmt.Println("predict after signal:", err)
		return 2
	}
	if err := m.Close(); err != nil {
		fmt.Println("close:", err)
		return 2
	}
	fmt.Println("clean shutdown")
	return 0
}

func TestSIGTERMWithORTLoaded(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sigtermChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	var got []string
	ready := false
	for !ready && lines.Scan() {
		got = append(got, lines.Text())
		ready = strings.HasPrefix(lines.Text(), "ready on ")
	}
	if !ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child never became ready: %q", got)
	}
	if testDevice != "" && testDevice != "cpu" && !strings.HasPrefix(got[len(got)-1], "ready on cuda") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child with ONNX_TEST_DEVICE=%s is %q: the CUDA EP is not loaded, so this proves nothing about issue #140", testDevice, got[len(got)-1])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		got = append(got, lines.Text())
	}
	err = cmd.Wait()
	if err != nil || got[len(got)-1] != "clean shutdown" {
		t.Fatalf("child after SIGTERM: %v; output %q", err, got)
	}
	t.Logf("child output: %q", got)
}
