package sidecarstore

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
	"github.com/redis/go-redis/v9"
)

// TestRedisPauseNo504: Redis stops answering (CLIENT PAUSE) again and again while many
// store-backed requests run at a tight deadline. The store gives up --features-reserve
// before each deadline and answers degraded; the time it spent must not turn into a
// 504 (or any other failure) afterwards: every request answers 200.
func TestRedisPauseNo504(t *testing.T) {
	rs := startTestRedis(t)
	root := storeRepo(t)
	groups, err := features.LoadGroups(root)
	if err != nil {
		t.Fatal(err)
	}
	const nusers = 200
	loadUsers(t, groups["users"], rs.addr(), nusers)
	client := redis.NewClient(&redis.Options{Addr: rs.addr(), MaxRetries: -1})
	defer client.Close()
	st, err := features.Open(features.Config{Groups: groups, Redis: client, FetchTimeout: time.Second,
		Reserve: 5 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts := startServer(t, sidecar.Config{ModelDir: root, FeatureStore: New(st, "redis")})

	admin := redis.NewClient(&redis.Options{Addr: rs.addr(), MaxRetries: -1})
	defer admin.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var total, degraded atomic.Int64
	statuses := sync.Map{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				body := fmt.Sprintf(`{"model":"claims","keys":{"user_id":"u%d"},"candidates":[{"id":"a","features":{"DrivAge":40}},{"id":"b","keys":{"user_id":"new-%d-%d"}}]}`,
					(w*7919+i)%nusers, w, i)
				req, _ := newPost(ts.base+"/v1/predict", body)
				req.Header.Set("X-Deadline-Ms", "50")
				status, resp := do(t, req)
				total.Add(1)
				if status != 200 {
					if _, dup := statuses.LoadOrStore(status, resp); !dup {
						t.Errorf("a request failed under Redis pauses: %d %s", status, resp)
					}
					continue
				}
				if strings.Contains(resp, `"degraded":true`) {
					degraded.Add(1)
				}
			}
		}()
	}
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "200", "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests, %d degraded", total.Load(), degraded.Load())
	if degraded.Load() == 0 {
		t.Fatal("no degraded answer: the pauses did not reach the requests")
	}
}

func newPost(url, body string) (*http.Request, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

func do(t *testing.T, req *http.Request) (int, string) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
