package image

import (
	"net/http"
	"strings"
	"testing"
)

func TestReference(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ref    string
		scheme string
	}{
		{"127.0.0.1:5000/acme/mlflow:abc", "http"},
		{"127.0.0.2:5000/acme/mlflow:abc", "http"}, // all of 127.0.0.0/8
		{"localhost/acme/mlflow:abc", "https"},     // a name, not an address: it could point anywhere
		{"[::1]:5000/acme/mlflow:abc", "http"},
		{"us-central1-docker.pkg.dev/acme/models/mlflow:abc", "https"},
		{"ghcr.io/mlflow/mlflow:v3.17.2-full", "https"},
		{"mlflow/mlflow", "https"},
	} {
		ref, err := Reference(tc.ref)
		if err != nil {
			t.Errorf("Reference(%q): %v", tc.ref, err)
			continue
		}
		if got := ref.Context().Scheme(); got != tc.scheme {
			t.Errorf("Reference(%q) goes over %s, want %s", tc.ref, got, tc.scheme)
		}
	}
	if _, err := Reference("ghcr.io/MLflow:v1:v2"); err == nil {
		t.Error("Reference accepted an invalid reference")
	}
}

func TestHTTPSOnly(t *testing.T) {
	t.Parallel()
	ok := roundTripFunc(func(*http.Request) (*http.Response, error) { return &http.Response{StatusCode: http.StatusOK}, nil })
	tr := httpsOnly{inner: ok}
	for url, allowed := range map[string]bool{
		"https://us-docker.pkg.dev/v2/": true,
		"http://us-docker.pkg.dev/v2/":  false,
		"http://10.0.0.5:5000/v2/":      false,
		"http://192.168.1.2/v2/":        false,
		"http://127.0.0.1:5000/v2/":     true,
		"http://127.9.9.9:5000/v2/":     true,
		"http://localhost:5000/v2/":     false,
		"http://[::1]:5000/v2/":         true,
		"http://localhost.evil.com/v2/": false,
		"http://127.0.0.1.nip.io/v2/":   false,
	} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tr.RoundTrip(req)
		if allowed && err != nil {
			t.Errorf("%s refused: %v", url, err)
		}
		if !allowed && (err == nil || !strings.Contains(err.Error(), "only loopback registries")) {
			t.Errorf("%s: %v, want it refused", url, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
