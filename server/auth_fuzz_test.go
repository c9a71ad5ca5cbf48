package main

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzBasicAuth checks that the auth check accepts a header iff it decodes to exactly the configured
// user:password, both for headers built from fuzzed credentials and for arbitrary header values.
func FuzzBasicAuth(f *testing.F) {
	const user, pass = "alice", "correct-horse-battery"
	a := newBasicAuth(user, pass)
	f.Fuzz(func(t *testing.T, u, p, header string) {
		built := "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
		want := u == user && p == pass
		if got := a.allowed(built); got != want {
			t.Errorf("allowed(basic(%q:%q)) = %v, want %v", u, p, got, want)
		}
		if !strings.Contains(u, ":") {
			if gu, gp, ok := parseBasicAuth(built); !ok || gu != u || gp != p {
				t.Errorf("parseBasicAuth(basic(%q:%q)) = %q, %q, %v", u, p, gu, gp, ok)
			}
		}
		if a.allowed(header) {
			scheme, token, _ := strings.Cut(strings.TrimSpace(header), " ")
			decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
			if !strings.EqualFold(scheme, "basic") || err != nil || string(decoded) != user+":"+pass {
				t.Errorf("allowed(%q): it does not decode to the configured credentials", header)
			}
		}
	})
}
