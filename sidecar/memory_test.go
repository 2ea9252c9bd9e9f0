// The race detector keeps shadow memory for every allocation (several times its size),
// so RSS under -race says nothing about the sidecar's own use.

//go:build !race

package sidecar

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/predictd/predictd/api/wire"
	"github.com/predictd/predictd/examples"
	"google.golang.org/protobuf/encoding/protowire"
)

// memShape is a request body built to make the decoder hold as much as it can per body
// byte: the smallest encoding of each kind of element, repeated to size bytes but at most
// n times.
type memShape struct {
	name  string
	proto bool
	// per: the cells (or, for candidates, rows) one element takes.
	per   int
	cands bool
	build func(size, n int) []byte
}

// repeatBody is head, then elem repeated (joined by sep) while the body stays within
// size, at most n times, then tail.
func repeatBody(head, elem, sep, tail string, size, n int) []byte {
	b := make([]byte, 0, size)
	b = append(b, head...)
	for i := 0; i < n && len(b)+len(sep)+len(elem)+len(tail) <= size; i++ {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, elem...)
	}
	return append(b, tail...)
}

// protoRepeat is the model field, then field num holding elem, repeated within size, at
// most n times.
func protoRepeat(num protowire.Number, elem []byte, size, n int) []byte {
	b := protowire.AppendTag(nil, wire.RequestModel, protowire.BytesType)
	b = protowire.AppendString(b, "claims")
	one := protowire.AppendTag(nil, num, protowire.BytesType)
	one = protowire.AppendBytes(one, elem)
	for i := 0; i < n && len(b)+len(one) <= size; i++ {
		b = append(b, one...)
	}
	return b
}

// protoOne is the model field, then field num holding elem once.
func protoOne(num protowire.Number, elem []byte) []byte {
	return protoRepeat(num, elem, math.MaxInt, 1)
}

// repeatField is field num holding elem, repeated within size, at most n times.
func repeatField(num protowire.Number, elem []byte, size, n int) []byte {
	one := protowire.AppendTag(nil, num, protowire.BytesType)
	one = protowire.AppendBytes(one, elem)
	b := make([]byte, 0, min(size, 1<<20))
	for i := 0; i < n && len(b)+len(one) <= size; i++ {
		b = append(b, one...)
	}
	return b
}

// memShapes are the worst bodies found for each part of the decoders.
var memShapes = []memShape{
	{"json/keys", false, 1, false, func(z, n int) []byte { return repeatBody(`{"model":"claims","keys":{`, `"a":0`, ",", `}}`, z, n) }},
	{"json/keys-strings", false, 1, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","keys":{`, `"a":"b"`, ",", `}}`, z, n)
	}},
	{"json/context", false, 1, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","context":{`, `"a":0`, ",", `}}`, z, n)
	}},
	// A known name, one column, millions of times: apply keeps one entry per column.
	{"json/context-one-feature", false, 1, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","context":{`, `"Area":0`, ",", `},"candidates":[{}]}`, z, n)
	}},
	{"json/features", false, 1, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[{"features":{`, `"a":0`, ",", `}}]}`, z, n)
	}},
	{"json/candidate-keys", false, 1, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[{"keys":{`, `"a":0`, ",", `}}]}`, z, n)
	}},
	{"json/many-candidates", false, 4, true, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[`, `{"features":{"a":0,"a":0,"a":0,"a":0}}`, ",", `]}`, z, n)
	}},
	{"json/empty-candidates", false, 0, true, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[`, `{}`, ",", `]}`, z, n)
	}},
	{"json/rows", false, 1, false, func(z, n int) []byte { return repeatBody(`{"model":"claims","rows":[[`, `0`, ",", `]]}`, z, n) }},
	{"json/whitespace", false, 0, false, func(z, n int) []byte { return repeatBody(`{"model":"claims"`, ` `, "", `}`, z, n) }},
	{"json/long-id", false, 0, false, func(z, n int) []byte {
		return repeatBody(`{"model":"claims","candidates":[{"id":"`, `x`, "", `"}]}`, z, n)
	}},
	{"proto/keys", true, 1, false, func(z, n int) []byte { return protoRepeat(wire.RequestKeys, []byte{0x0a, 0x01, 'a'}, z, n) }},
	{"proto/context", true, 1, false, func(z, n int) []byte { return protoRepeat(wire.RequestContext, []byte{0x0a, 0x01, 'a'}, z, n) }},
	{"proto/context-one-feature", true, 1, false, func(z, n int) []byte {
		return protoRepeat(wire.RequestContext, []byte{0x0a, 0x04, 'A', 'r', 'e', 'a'}, z, n)
	}},
	{"proto/empty-context", true, 1, false, func(z, n int) []byte { return protoRepeat(wire.RequestContext, nil, z, n) }},
	{"proto/features", true, 1, false, func(z, n int) []byte {
		return protoOne(wire.RequestCandidates, repeatField(wire.CandidateFeatures, []byte{0x0a, 0x01, 'a'}, z-16, n))
	}},
	{"proto/empty-features", true, 1, false, func(z, n int) []byte {
		return protoOne(wire.RequestCandidates, repeatField(wire.CandidateFeatures, nil, z-16, n))
	}},
	{"proto/empty-candidates", true, 0, true, func(z, n int) []byte { return protoRepeat(wire.RequestCandidates, nil, z, n) }},
	{"proto/rows", true, 1, false, func(z, n int) []byte {
		// One row of unpacked doubles: 9 bytes per value, the most values per byte
		// after packed ones (8 bytes, the same as the matrix).
		var row []byte
		for i := 0; i < n && len(row)+9 <= z-16; i++ {
			row = protowire.AppendTag(row, wire.RowValues, protowire.Fixed64Type)
			row = binary.LittleEndian.AppendUint64(row, 0)
		}
		return protoOne(wire.RequestRows, row)
	}},
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

// TestMemoryPerRequest sends the worst bodies found (memShapes) to a real server with the
// default limits, one at a time, and reads the process's peak resident memory around
// each from /proc (VmHWM, reset before each request through /proc/self/clear_refs).
// Each shape is sent twice: at the body limit, where the growth must stay within 3× the
// body (the body itself included), and as the largest body the limits accept (the most
// elements --max-cells and --max-candidates allow), where it must stay within 3×
// --max-body-bytes. A few MiB are allowed for what any request costs besides its body
// and decoding (connection buffers, the collector's metadata).
func TestMemoryPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 64 MiB bodies")
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak resident size: %v", err)
	}
	// No deadline: a 64 MiB body takes a while to decode on a loaded machine.
	ts := startServer(t, Config{ModelFS: examples.Models(), BackgroundAfter: -1, DefaultDeadline: -1})
	const slack = 4 << 20
	limit := DefaultMaxBodyBytes
	for _, sh := range memShapes {
		most := math.MaxInt // elements the limits accept
		switch {
		case sh.cands:
			most = DefaultMaxCandidates
			if sh.per > 0 {
				most = min(most, DefaultMaxCells/sh.per)
			}
		case sh.per > 0:
			most = DefaultMaxCells / sh.per
		}
		for _, atLimit := range []bool{true, false} {
			n, bound, what := math.MaxInt, 0, ""
			if !atLimit {
				if most == math.MaxInt {
					continue // the same body
				}
				n = most - 8 // the other fields of the request take a few cells
			}
			body := sh.build(limit-1024, n)
			if atLimit {
				bound, what = 3*len(body), "3× the body"
			} else {
				bound, what = 3*limit, "3× --max-body-bytes"
			}
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
			status, resp := postDiscard(t, ts.tcp, ct, body)
			growth := procStatus(t, "VmHWM") - base
			code := ""
			if m := regexp.MustCompile(`^\{"error":\{"code":"([a-z_]+)"`).FindSubmatch(resp); m != nil {
				code = string(m[1]) // the message may be cut off at 64 KiB
			}
			t.Logf("%-23s %-8s %3d %-20s body %5.1f MiB, peak RSS growth %6.1f MiB = %.2f× the body",
				sh.name, map[bool]string{true: "limit", false: "accepted"}[atLimit], status, code,
				float64(len(body))/(1<<20), float64(growth)/(1<<20), float64(growth)/float64(len(body)))
			if status >= 500 {
				t.Errorf("%s: %d %s", sh.name, status, resp)
			}
			if growth > int64(bound+slack) {
				t.Errorf("%s: peak RSS grew by %.1f MiB, want at most %s (%.1f MiB)", sh.name,
					float64(growth)/(1<<20), what, float64(bound)/(1<<20))
			}
		}
	}
}

// postDiscard posts body to /v1/predict at addr and returns the status and at most 64
// KiB of the response: a client that kept a large response would add to the resident
// memory measured.
func postDiscard(t *testing.T, addr, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/v1/predict", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, b
}
