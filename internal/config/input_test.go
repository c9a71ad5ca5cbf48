package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInputNames(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"INPUT_SOME_NAME":  "  spaced value \n",
		"INPUT_OTHER-NAME": "hyphenated",
	}
	p := newParser(func(k string) string { return env[k] })
	for _, tc := range []struct{ name, want string }{
		{"some_name", "spaced value"}, // upper-cased and trimmed
		{"SOME_NAME", "spaced value"},
		{"some name", "spaced value"}, // spaces become underscores
		{"some-name", ""},             // hyphens stay hyphens
		{"other-name", "hyphenated"},
		{"other_name", ""},
	} {
		if got := p.input(tc.name); got != tc.want {
			t.Errorf("input(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestInputErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  InputError
		want string
	}{
		{InputError{Input: "region", Want: "is required"}, "input region: is required"},
		{InputError{Input: "region", Value: "moon", Want: "use us-central1"}, `input region: "moon" is not valid: use us-central1`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestParseTrimsInputs(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_REGION"] = " europe-west1\n"
	env["INPUT_MAX_INSTANCES"] = "\t7 "
	env["INPUT_TIMEOUT"] = " 60 "
	c, err := parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "europe-west1" || c.MaxInstances != 7 || c.Timeout != time.Minute {
		t.Errorf("region %q, max_instances %d, timeout %s: inputs not trimmed", c.Region, c.MaxInstances, c.Timeout)
	}
}

func TestParseGitHubContext(t *testing.T) {
	t.Parallel()
	garbage := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(garbage, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	const sha = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name       string
		change     map[string]string
		wantSource string
	}{
		{"as set", nil, "https://github.com/acme/ml"},
		{"sha padded", map[string]string{"GITHUB_SHA": " " + sha + "\n"}, "https://github.com/acme/ml"},
		{"no server", map[string]string{"GITHUB_SERVER_URL": ""}, "https://github.com/acme/ml"},
		{"enterprise server", map[string]string{"GITHUB_SERVER_URL": "https://git.example.com/"}, "https://git.example.com/acme/ml"},
		{"no repository", map[string]string{"GITHUB_REPOSITORY": ""}, ""},
		// Parse has no use for the event payload, nor for numbers it does not read.
		{"unreadable event", map[string]string{"GITHUB_EVENT_PATH": garbage, "GITHUB_RUN_ID": "x"}, "https://github.com/acme/ml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tc.change {
				env[k] = v
			}
			c, err := parse(env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Commit != sha || c.Source != tc.wantSource {
				t.Errorf("commit %q, source %q; want %q, %q", c.Commit, c.Source, sha, tc.wantSource)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a, b ,,c", []string{"a", "b", "c"}},
		{"A=1,2\n\n B=3 \n", []string{"A=1,2", "B=3"}}, // by lines, so values may hold commas
	} {
		got := splitList(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
				break
			}
		}
	}
}
