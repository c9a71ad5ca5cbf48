package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumEnv names a Chromium (or Chrome) executable to use instead of Debian's chromium on PATH.
const ChromiumEnv = "DEPLOY_MLFLOW_CHROMIUM"

// ErrNoChromium means no browser was found for the browser tests; run internal/testenv/setup.sh.
var ErrNoChromium = errors.New("Chromium not found")

// Chromium returns the browser the browser tests drive: $DEPLOY_MLFLOW_CHROMIUM, or chromium on PATH (Debian's
// package, which internal/testenv/setup.sh installs).
func Chromium() (string, error) {
	name := os.Getenv(ChromiumEnv)
	if name == "" {
		name = "chromium"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (%v): run make setup (internal/testenv/setup.sh installs Debian's chromium), or set %s to a Chromium or Chrome executable",
			ErrNoChromium, err, ChromiumEnv)
	}
	return path, nil
}

// browserOptions are the flags StartBrowser runs the browser with: chromedp's defaults (headless, no first-run
// UI, no background traffic), a fixed window so screenshots compare, a profile in dir, and no sandbox as root,
// where Chromium refuses to start with one.
func browserOptions(exe, dir string, root bool) []chromedp.ExecAllocatorOption {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1400, 1000),
	)
	if root {
		opts = append(opts, chromedp.NoSandbox)
	}
	return opts
}

// StartBrowser launches Chromium (see Chromium) headless with its profile in dir, and returns a chromedp
// context for its first tab and a function that closes the browser. The browser also ends when ctx does.
func StartBrowser(ctx context.Context, dir string) (context.Context, func(), error) {
	exe, err := Chromium()
	if err != nil {
		return nil, nil, err
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, browserOptions(exe, dir, os.Geteuid() == 0)...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	stop := func() { cancelTab(); cancelAlloc() }
	// chromedp starts the browser on the first Run; start it here so a launch failure is reported as one.
	if err := chromedp.Do(tab); err != nil {
		stop()
		return nil, nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	return tab, stop, nil
}

// NewBrowser starts a browser (see StartBrowser) for the test and closes it when the test ends; it fails the
// test, saying how to install Chromium, if there is none. Under -short it skips the test.
func NewBrowser(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	skipShort(t, "Chromium")
	tab, stop, err := StartBrowser(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return tab
}
