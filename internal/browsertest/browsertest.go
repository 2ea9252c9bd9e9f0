// Package browsertest drives a headless Chromium tab for the tests of the pages predictd
// serves or writes (the portal, the load-test report): it finds the browser, records every
// console error, JavaScript exception and (optionally) failed or non-2xx load as a problem,
// bounds each action, and saves screenshots in 256 colours.
//
// A missing Chromium fails the test: CI installs Debian's chromium (scripts/ci/deps.sh),
// and a browser test that skips proves nothing.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color/palette"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// ScreenshotsEnv set to anything makes Shot write its files (docs/img/ regenerated).
const ScreenshotsEnv = "PREDICTD_UI_SCREENSHOTS"

// Options configure a Browser.
type Options struct {
	Width, Height int // the window, in CSS pixels
	// Viewport also emulates a Width×Height viewport (a page measured against a screen).
	Viewport bool
	// FailedLoads records a resource that failed to load or answered 400 or above.
	FailedLoads bool
}

// Browser is a headless Chromium tab. Ctx is the tab's context: bound an action with Run,
// never by cancelling Ctx (which stops the browser).
type Browser struct {
	Ctx context.Context

	mu       sync.Mutex
	problems []string
}

// chromium finds Debian's chromium (or another Chrome) on PATH, failing t without one.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: install Debian's chromium (apt-get install chromium; scripts/ci/deps.sh does it for CI) to run the browser tests")
	return ""
}

// New starts a browser for t; it stops when t ends.
func New(t testing.TB, o Options) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, chromedp.WindowSize(o.Width, o.Height))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &Browser{Ctx: ctx}
	messages := chromedp.Console(ctx) // starts the browser, subscribed from here on
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() || m.Type == "assert" {
				b.problem(fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			}
		}
	}()
	if o.FailedLoads {
		if err := chromedp.Listen(ctx, func(ev any) {
			switch e := ev.(type) {
			case *network.EventResponseReceived:
				if e.Response != nil && e.Response.Status >= 400 {
					b.problem(fmt.Sprintf("%s answered %d", e.Response.URL, e.Response.Status))
				}
			case *network.EventLoadingFailed:
				b.problem(fmt.Sprintf("a %s failed to load: %s", e.Type, e.ErrorText))
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if o.Viewport {
		b.Do(t, "viewport", chromedp.EmulateViewport(int64(o.Width), int64(o.Height)))
	}
	return b
}

func (b *Browser) problem(p string) {
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// Run runs one action, bounded to 30 s, failing t (naming what) on an error.
func Run[T any](t testing.TB, b *Browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Do runs steps as one action (Run).
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	Run(t, b, what, chromedp.Steps(steps...))
}

// Check fails t on every problem recorded since the last Check, naming the page.
func (b *Browser) Check(t testing.TB, page string) {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // let late events arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("%s: %s", page, p)
	}
	b.problems = nil
}

// Shot saves the viewport as the PNG file path when ScreenshotsEnv is set, in 256 colours:
// plenty for flat pages and plots, and a third of the bytes in the repository.
func (b *Browser) Shot(t testing.TB, path string) {
	t.Helper()
	if os.Getenv(ScreenshotsEnv) == "" {
		return
	}
	shot := Run(t, b, "screenshot "+filepath.Base(path), chromedp.CaptureScreenshot())
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	pal := image.NewPaletted(img.Bounds(), palette.Plan9)
	draw.Draw(pal, pal.Rect, img, img.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, pal); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
