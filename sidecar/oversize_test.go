package sidecar

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/predictd/predictd/examples"
)

// TestOversizedBodyAnswered: a client that sends a body over --max-body-bytes reads the
// 413 and its error, whether the body is a little or a lot over the limit and whether it
// is still sending when the answer comes. Closing a connection with the body's unread
// bytes in its buffer resets it, and a client still writing would see "broken pipe" or
// "connection reset" instead of the answer; the server reads and drops the rest of the
// body for a while before it closes.
func TestOversizedBodyAnswered(t *testing.T) {
	const limit = 64 << 10
	ts := startServer(t, Config{ModelFS: examples.Models(), MaxBodyBytes: limit})
	for _, network := range []string{"tcp", "unix"} {
		for _, size := range []int{limit + 1, 2 * limit, 16 * limit, 64 * limit} {
			body := `{"model":"claims","candidates":[` + strings.Repeat(`{"id":"x","features":{"DrivAge":40}},`, size/37+1) + `{}]}`
			for i := range 20 {
				c, base := ts.httpClient(network)
				resp, err := c.Post(base+"/v1/predict", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					t.Fatalf("%s, %d-byte body, try %d: %v", network, len(body), i, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s, %d-byte body, try %d: reading the answer: %v", network, len(body), i, err)
				}
				code, msg := apiError(t, b)
				if resp.StatusCode != http.StatusRequestEntityTooLarge || code != "body_too_large" {
					t.Fatalf("%s, %d-byte body: got %d %s (%s)", network, len(body), resp.StatusCode, code, msg)
				}
				if !strings.Contains(msg, fmt.Sprint(limit)) {
					t.Errorf("the message does not name the limit: %s", msg)
				}
			}
		}
	}
}
