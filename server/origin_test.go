package main

import (
	"strings"
	"testing"
)

func TestCrossOriginWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                            string
		method, host, origin, fetchSite string
		refused                         bool
	}{
		{"client without Origin", "POST", "mlflow-123.us-central1.run.app", "", "", false},
		{"same origin run.app", "POST", "mlflow-123.us-central1.run.app", "https://mlflow-123.us-central1.run.app", "same-origin", false},
		{"same origin custom domain", "DELETE", "mlflow.example.com", "https://mlflow.example.com", "", false},
		{"host name case", "POST", "MLflow.Example.com", "https://mlflow.example.com", "", false},
		{"explicit default port", "POST", "mlflow.example.com", "https://mlflow.example.com:443", "", false},
		{"local run with port", "PUT", "localhost:8080", "http://localhost:8080", "", false},
		{"IPv6 with port", "PATCH", "[::1]:8080", "http://[::1]:8080", "", false},
		{"reads pass", "GET", "mlflow.example.com", "https://evil.example", "cross-site", false},
		{"OPTIONS passes", "OPTIONS", "mlflow.example.com", "https://evil.example", "", false},
		{"other host", "POST", "mlflow.example.com", "https://evil.example", "", true},
		{"sibling run.app service", "POST", "mlflow-123.us-central1.run.app", "https://other-123.us-central1.run.app", "", true},
		{"subdomain", "POST", "mlflow.example.com", "https://a.mlflow.example.com", "", true},
		{"other port", "POST", "localhost:8080", "http://localhost:9090", "", true},
		{"port on origin only", "POST", "mlflow.example.com", "https://mlflow.example.com:8443", "", true},
		{"port on host only", "POST", "localhost:8080", "http://localhost", "", true},
		{"opaque origin", "POST", "mlflow.example.com", "null", "", true},
		{"non-http origin", "POST", "mlflow.example.com", "file://mlflow.example.com", "", true},
		{"garbage origin", "POST", "mlflow.example.com", "::::", "", true},
		{"cross-site without Origin", "PUT", "mlflow.example.com", "", "cross-site", true},
		{"cross-site with matching Origin", "POST", "mlflow.example.com", "https://mlflow.example.com", "cross-site", true},
		{"same-site other host", "POST", "mlflow.example.com", "https://app.example.com", "same-site", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var origins []string
			if tt.origin != "" {
				origins = []string{tt.origin}
			}
			reason := crossOriginWrite(tt.method, tt.host, origins, tt.fetchSite)
			if (reason != "") != tt.refused {
				t.Errorf("crossOriginWrite(%s, %s, %q, %q) = %q, want refused=%v", tt.method, tt.host, tt.origin, tt.fetchSite, reason, tt.refused)
			}
		})
	}
}

// TestMoreThanOneOrigin: browsers send one Origin at most; a request with several is refused whatever its
// method, even when one of them, or each, matches the host.
func TestMoreThanOneOrigin(t *testing.T) {
	t.Parallel()
	const host = "mlflow.example.com"
	tests := []struct {
		method  string
		origins []string
	}{
		{"POST", []string{"https://mlflow.example.com", "https://evil.example"}},
		{"POST", []string{"https://evil.example", "https://mlflow.example.com"}},
		{"PUT", []string{"https://mlflow.example.com", "https://mlflow.example.com"}},
		{"DELETE", []string{"", "https://evil.example"}},
		{"GET", []string{"https://mlflow.example.com", "https://evil.example"}},
		{"OPTIONS", []string{"https://a.example", "https://b.example", "https://c.example"}},
	}
	for _, tt := range tests {
		if reason := crossOriginWrite(tt.method, host, tt.origins, ""); !strings.Contains(reason, "Origin headers") {
			t.Errorf("crossOriginWrite(%s, %s, %q) = %q, want a refusal for several Origin headers", tt.method, host, tt.origins, reason)
		}
	}
}
