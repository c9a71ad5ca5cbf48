package gcp

import (
	"strings"
	"testing"
)

// TestPlaintext pins the rule of the endpoint variables: plaintext only to a loopback address.
func TestPlaintext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		plain    bool
		err      string
	}{
		{"127.0.0.1:8085", true, ""},
		{"[::1]:8085", true, ""},
		{"localhost:8085", false, ""},
		{"run.googleapis.com:443", false, ""},
		{"10.1.2.3:443", false, ""},
		{"127.0.0.1", false, "not host:port"},
	} {
		plain, err := plaintext(tc.endpoint)
		if plain != tc.plain || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("plaintext(%q) = %v, %v; want %v, %q", tc.endpoint, plain, err, tc.plain, tc.err)
		}
	}
}
