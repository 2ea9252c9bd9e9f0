package sidecar

import (
	"bufio"
	"encoding/binary"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/encoding/protowire"
)

// memShape is a request body built to make the decoder hold as much as it can per body
// byte: the smallest encoding of each kind of element, repeated to size bytes.
type memShape struct {
	name  string
	proto bool
	build func(size int) []byte
}

// repeatBody is head, then elem repeated (joined by sep) while the body stays within
// size, then tail.
func repeatBody(head, elem, sep, tail string, size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, head...)
	for len(b)+len(sep)+len(elem)+len(tail) <= size {
		if len(b) > len(head) {
			b = append(b, sep...)
		}
		b = append(b, elem...)
	}
	return append(b, tail...)
}

// protoRepeat is the model field, then field num holding elem, repeated within size.
func protoRepeat(num protowire.Number, elem []byte, size int) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	b = protowire.AppendString(b, "claims")
	one := protowire.AppendTag(nil, num, protowire.BytesType)
	one = protowire.AppendBytes(one, elem)
	for len(b)+len(one) <= size {
		b = append(b, one...)
	}
	return b
}

// memShapes are the worst bodies found for each part of the decoders.
var memShapes = []memShape{
	{"json/keys", false, func(n int) []byte { return repeatBody(`{"model":"claims","keys":{`, `"a":0`, ",", `}}`, n) }},
	{"json/keys-strings", false, func(n int) []byte { return repeatBody(`{"model":"claims","keys":{`, `"a":"b"`, ",", `}}`, n) }},
	{"json/context", false, func(n int) []byte { return repeatBody(`{"model":"claims","context":{`, `"a":0`, ",", `}}`, n) }},
	{"json/features", false, func(n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[{"features":{`, `"a":0`, ",", `}}]}`, n)
	}},
	{"json/candidate-keys", false, func(n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[{"keys":{`, `"a":0`, ",", `}}]}`, n)
	}},
	{"json/many-candidates", false, func(n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[`, `{"features":{"a":0,"a":0,"a":0,"a":0}}`, ",", `]}`, n)
	}},
	{"json/empty-candidates", false, func(n int) []byte { return repeatBody(`{"model":"claims","candidates":[`, `{}`, ",", `]}`, n) }},
	{"json/rows", false, func(n int) []byte { return repeatBody(`{"model":"claims","rows":[[`, `0`, ",", `]]}`, n) }},
	{"json/whitespace", false, func(n int) []byte { return repeatBody(`{"model":"claims"`, ` `, "", `}`, n) }},
	{"json/long-id", false, func(n int) []byte { return repeatBody(`{"model":"claims","candidates":[{"id":"`, `x`, "", `"}]}`, n) }},
	{"proto/keys", true, func(n int) []byte { return protoRepeat(5, []byte{0x0a, 0x01, 'a'}, n) }},
	{"proto/context", true, func(n int) []byte { return protoRepeat(3, []byte{0x0a, 0x01, 'a'}, n) }},
	{"proto/empty-context", true, func(n int) []byte { return protoRepeat(3, nil, n) }},
	{"proto/features", true, func(n int) []byte {
		c := repeatCandidate(2, []byte{0x0a, 0x01, 'a'}, n-16)
		return protoRepeat(4, c, n)
	}},
	{"proto/empty-features", true, func(n int) []byte { return protoRepeat(4, repeatCandidate(2, nil, n-16), n) }},
	{"proto/rows", true, func(n int) []byte {
		var row []byte
		for i := 0; i < 16; i++ {
			row = protowire.AppendTag(row, 1, protowire.Fixed64Type)
			row = binary.LittleEndian.AppendUint64(row, 0)
		}
		return protoRepeat(6, row, n)
	}},
}

// repeatCandidate is a Candidate holding field num with elem, repeated within size.
func repeatCandidate(num protowire.Number, elem []byte, size int) []byte {
	one := protowire.AppendTag(nil, num, protowire.BytesType)
	one = protowire.AppendBytes(one, elem)
	b := make([]byte, 0, size)
	for len(b)+len(one) <= size {
		b = append(b, one...)
	}
	return b
}

// procStatus reads a "kB" field of /proc/self/status in bytes.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Skipf("no %s in /proc/self/status", field)
	return 0
}

// TestMemoryPerRequest sends the worst bodies found (memShapes) at the default body limit
// to a real server, one at a time, and reads the process's peak resident memory around
// each from /proc: the growth must stay within 3× the body (the body itself included).
// The peak (VmHWM) is reset before each request through /proc/self/clear_refs.
func TestMemoryPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 64 MiB bodies")
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak resident size: %v", err)
	}
	ts := startServer(t, Config{ModelFS: examples.Models(), BackgroundAfter: -1})
	size := DefaultMaxBodyBytes - 1024
	for _, sh := range memShapes {
		body := sh.build(size)
		ct := "application/json"
		if sh.proto {
			ct = "application/x-protobuf"
		}
		runtime.GC()
		debug.FreeOSMemory()
		base := procStatus(t, "VmRSS")
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			t.Fatal(err)
		}
		status, resp := ts.post(t, "tcp", "/v1/predict", ct, body)
		growth := procStatus(t, "VmHWM") - base
		ratio := float64(growth) / float64(len(body))
		code := ""
		if status != 200 {
			code, _ = apiError(t, resp)
		}
		t.Logf("%-22s %3d %-20s body %5.1f MiB, peak RSS growth %6.1f MiB = %.2f× the body",
			sh.name, status, code, float64(len(body))/(1<<20), float64(growth)/(1<<20), ratio)
		if status >= 500 {
			t.Errorf("%s: %d %s", sh.name, status, resp)
		}
		if ratio > 3 {
			t.Errorf("%s: peak RSS grew by %.2f× the body, want at most 3×", sh.name, ratio)
		}
	}
}
