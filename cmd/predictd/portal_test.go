package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServePortal runs the real binary with --admin-listen and --profiles: the portal is
// on the admin listener (not the predict one), lists the checked-in profile and shows the
// store-backed example model's features with their group.
func TestServePortal(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "predictd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", listen, "--admin-listen", admin,
		"--models", filepath.Join("..", "..", "examples", "feature-store", "models"),
		"--profiles", filepath.Join("..", "..", "profiles"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	get := func(url string) (int, string) {
		t.Helper()
		var last error
		for range 100 {
			resp, err := http.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: %v", url, last)
		return 0, ""
	}
	for range 100 {
		if st, _ := get("http://" + admin + "/readyz"); st == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, body := get("http://" + listen + "/ui/"); st != 404 || !strings.Contains(body, "--admin-listen") {
		t.Errorf("the predict listener answers /ui/ with %d %s", st, body)
	}
	if st, body := get("http://" + admin + "/ui/profiles"); st != 200 || !strings.Contains(body, "ranking-1k/example") {
		t.Errorf("/ui/profiles: %d, lists the example: %v", st, strings.Contains(body, "ranking-1k/example"))
	}
	if st, body := get("http://" + admin + "/ui/model?name=claims"); st != 200 || !strings.Contains(body, `store: <a href="/ui/features?group=users">users</a>`) {
		t.Errorf("/ui/model?name=claims: %d, shows the users group: %v", st, strings.Contains(body, "users"))
	}
	if st, body := get("http://" + admin + "/ui/features"); st != 200 || !strings.Contains(body, `id="group-users"`) {
		t.Errorf("/ui/features: %d", st)
	}
}
