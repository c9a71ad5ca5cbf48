package gcp

import (
	"testing"

	"golang.org/x/oauth2"
)

func TestRESTClientOptions(t *testing.T) {
	t.Parallel()
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})
	for _, tc := range []struct {
		endpoint string
		n        int
		fails    bool
	}{
		{"", 1, false},
		{"127.0.0.1:8080", 2, false},
		{"cloudresourcemanager.googleapis.com:443", 2, false},
		{"no-port", 0, true},
	} {
		opts, err := RESTClientOptions(tc.endpoint, ts)
		if (err != nil) != tc.fails || len(opts) != tc.n {
			t.Errorf("RESTClientOptions(%q) = %d options, %v", tc.endpoint, len(opts), err)
		}
	}
}
