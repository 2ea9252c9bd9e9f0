package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const getGroup = `name: store_stats
key: store_id
features:
  - {name: rating, type: float32, default: 0}
  - {name: orders_7d, type: int64}
  - {name: recent_prices, type: list, len: 3}
  - {name: embedding, type: embedding, dim: 2}
`

const getCSV = "store_id,rating,orders_7d,recent_prices,embedding\n" +
	"42,4.5,120,1.5 2.5 3.5,0.25 -1\n" +
	"44,3.25,9,,0 1\n"

// checkGet runs `features get` against a store holding getCSV and checks what it prints.
func checkGet(t *testing.T, dir string, target ...string) {
	t.Helper()
	var out bytes.Buffer
	args := append([]string{"--group", "store_stats", "--groups", dir, "--json"}, target...)
	code := runFeaturesGet(append(args, "42", "44", "nope"), &out)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (key nope is not in the store)", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want one per key:\n%s", len(lines), out.String())
	}
	var got []entityView
	for _, l := range lines {
		var v entityView
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, v)
	}
	e42, e44, nope := got[0], got[1], got[2]
	if !e42.Found || e42.Updated == nil || *e42.AgeSec < 0 || *e42.AgeSec > 600 {
		t.Errorf("42: %+v", e42)
	}
	if b, _ := json.Marshal(e42.Values); string(b) != `[{"name":"rating","type":"float32","stored":true,"value":4.5},`+
		`{"name":"orders_7d","type":"int64","stored":true,"value":120},`+
		`{"name":"recent_prices","type":"list[3]","stored":true,"value":[1.5,2.5,3.5]},`+
		`{"name":"embedding","type":"embedding[2]","stored":true,"value":[0.25,-1]}]` {
		t.Errorf("42: %s", b)
	}
	if e44.Values[2].Stored || e44.Values[0].Value != 3.25 {
		t.Errorf("44: recent_prices was not written, rating 3.25: %+v", e44.Values)
	}
	if nope.Found || nope.Values[0].Default != 0.0 || nope.Values[0].Stored {
		t.Errorf("nope: %+v", nope)
	}
	// The text form names the source and the defaults.
	out.Reset()
	runFeaturesGet(append(append([]string{"--group", "store_stats", "--groups", dir}, target...), "42", "nope"), &out)
	for _, want := range []string{"store_stats 42: from " + e42.Source + ", updated", "[1.5,2.5,3.5]",
		"store_stats nope: not in the " + e42.Source + " store", "absent (default 0)", "absent (missing: NaN)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestFeaturesGetSnapshot: what `features load` wrote to a snapshot reads back decoded,
// with its write time, and unknown keys show the defaults.
func TestFeaturesGetSnapshot(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "store_stats.group.yaml"), getGroup)
	writeFile(t, filepath.Join(dir, "stores.csv"), getCSV)
	snap := filepath.Join(dir, "features.snap")
	if code := runFeatures([]string{"load", "--group", "store_stats", "--file", filepath.Join(dir, "stores.csv"),
		"--groups", dir, "--snapshot", snap, "--quiet"}); code != 0 {
		t.Fatalf("load: exit status %d", code)
	}
	checkGet(t, dir, "--snapshot", snap)
	var out bytes.Buffer
	if code := runFeaturesGet([]string{"--group", "store_stats", "--groups", dir, "42"}, &out); code != 2 {
		t.Errorf("no store named: exit status %d, want 2", code)
	}
}

// TestFeaturesGetRedis: the same through a real redis-server.
func TestFeaturesGetRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not on PATH (scripts/ci/deps.sh installs it): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	writeFile(t, filepath.Join(dir, "store_stats.group.yaml"), getGroup)
	writeFile(t, filepath.Join(dir, "stores.csv"), getCSV)
	if code := runFeatures([]string{"load", "--group", "store_stats", "--file", filepath.Join(dir, "stores.csv"),
		"--groups", dir, "--redis", addr, "--quiet"}); code != 0 {
		t.Fatalf("load: exit status %d", code)
	}
	checkGet(t, dir, "--redis", addr)
}
