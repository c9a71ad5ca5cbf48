package testenv

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestChromiumMissing(t *testing.T) {
	t.Setenv(ChromiumEnv, filepath.Join(t.TempDir(), "no-such-chromium"))
	_, err := Chromium()
	if !errors.Is(err, ErrNoChromium) {
		t.Fatalf("Chromium() = %v, want ErrNoChromium", err)
	}
	for _, want := range []string{"make setup", ChromiumEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}

// TestBrowser launches the real browser and reads a page back from it.
func TestBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tab := NewBrowser(t, ctx)
	if err := chromedp.Do(tab, chromedp.Navigate("data:text/html,<title>hello</title>")); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(tab, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if title != "hello" {
		t.Errorf("title = %q, want hello", title)
	}
}
