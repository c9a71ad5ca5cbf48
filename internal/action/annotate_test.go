package action

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sethvargo/go-githubactions"
	"golang.org/x/oauth2"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

func TestAnnotate(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	gh := githubactions.New(githubactions.WithWriter(&out), githubactions.WithGetenv(func(string) string { return "" }))
	err := errors.Join(
		&config.InputError{Input: "region", Value: "moon_base", Want: "use a Cloud Run region name such as us-central1"},
		&config.InputError{Input: "memory", Value: "100%", Want: "use a size"},
		fmt.Errorf("deploy: %w", errors.New("revision failed\nLogs: https://console.cloud.google.com/run")),
	)
	Annotate(gh, err)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`::error title=deploy-mlflow input region::input region: "moon_base" is not valid: use a Cloud Run region name such as us-central1`,
		`::error title=deploy-mlflow input memory::input memory: "100%25" is not valid: use a size`,
		`::error title=deploy-mlflow::deploy: revision failed%0ALogs: https://console.cloud.google.com/run`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d annotations, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("annotation %d:\n got %s\nwant %s", i, lines[i], want[i])
		}
	}
}

func TestMaskedTokens(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	gh := githubactions.New(githubactions.WithWriter(&out), githubactions.WithGetenv(func(string) string { return "" }))
	tokens := []string{"ya29.first", "ya29.first", "ya29.second"}
	m := &maskedTokens{ts: tokenList(&tokens), gh: gh}
	for range 3 {
		if _, err := m.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if got := out.String(); got != "::add-mask::ya29.first\n::add-mask::ya29.second\n" {
		t.Errorf("masks = %q", got)
	}
}

// tokenList hands out the listed tokens in turn, as a refreshing token source would.
type tokenListSource struct{ tokens *[]string }

func tokenList(tokens *[]string) tokenListSource { return tokenListSource{tokens} }

func (s tokenListSource) Token() (*oauth2.Token, error) {
	tok := (*s.tokens)[0]
	*s.tokens = (*s.tokens)[1:]
	return &oauth2.Token{AccessToken: tok}, nil
}

// TestCommandsWrittenWhole: workflow commands written from several goroutines at once (push progress,
// tokens masked as the registry client refreshes them) reach the log whole, one per line. Under the race
// detector this also fails if the writes are not serialized.
func TestCommandsWrittenWhole(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	gh := newAction(func(string) string { return "" }, &out)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if g%2 == 0 {
					gh.Infof("pushing: %d of %d", i, g)
				} else {
					gh.AddMask(fmt.Sprintf("ya29.token-%d-%d", g, i))
				}
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("got %d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "pushing: ") && !strings.HasPrefix(l, "::add-mask::ya29.token-") {
			t.Errorf("mixed line %q", l)
		}
	}
}
