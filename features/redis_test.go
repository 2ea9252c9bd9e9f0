package features

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tests start their own redis-server processes in temp dirs on ports 7300-7399 (the
// project's range for this package); CI needs only redis-server and redis-cli on PATH.

var (
	portMu   sync.Mutex
	nextPort = 7300 + os.Getpid()%50
)

// freePort returns a port in 7300-7399 that is free now (and whose cluster bus port,
// +10000, is free too).
func freePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for tries := 0; tries < 100; tries++ {
		p := nextPort
		nextPort++
		if nextPort > 7399 {
			nextPort = 7300
		}
		if portFree(p) && portFree(p+10000) {
			return p
		}
	}
	t.Fatal("no free port in 7300-7399")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

type redisProc struct {
	t    testing.TB
	port int
	dir  string
	bin  string
	args []string
	cmd  *exec.Cmd
}

func (r *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// startRedis starts a redis-server that lives until the test ends. The layout needs hash
// values up to the largest encoded vector to stay in the compact listpack encoding, hence
// hash-max-listpack-value (docs/feature-store.md).
func startRedis(t testing.TB, extra ...string) *redisProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not on PATH (scripts/ci/redis.sh installs it): %v", err)
	}
	r := &redisProc{t: t, port: freePort(t), dir: t.TempDir()}
	r.args = append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"),
		"--hash-max-listpack-value", "1024", "--protected-mode", "no"}, extra...)
	r.bin = bin
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, r.args...)
	r.cmd.Dir = r.dir
	dieWithTest(r.cmd)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	for i := 0; ; i++ {
		if err := c.Ping(context.Background()).Err(); err == nil {
			return
		} else if i == 200 {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.t.Fatalf("redis-server on %s did not answer: %v\n%s", r.addr(), err, log)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// kill stops the server at once (SIGKILL), as a crash would.
func (r *redisProc) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisProc) stop() { r.kill() }

// startCluster starts three masters with cluster mode on and joins them with
// redis-cli --cluster create. It returns the masters' addresses.
func startCluster(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not on PATH (scripts/ci/redis.sh installs it): %v", err)
	}
	var addrs []string
	for i := 0; i < 3; i++ {
		r := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs = append(addrs, r.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for i := 0; ; i++ {
			info, _ := c.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if i == 400 {
				t.Fatalf("cluster node %s not ready:\n%s", a, info)
			}
			time.Sleep(25 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

func newClusterClient(t testing.TB, addrs []string) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	// Wait until every node has learnt the slot layout (a MOVED loop otherwise).
	for i := 0; ; i++ {
		err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
		if err == nil {
			break
		}
		if i == 200 {
			t.Fatalf("cluster client: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return c
}

func newClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the fault tests provoke thousands.
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
