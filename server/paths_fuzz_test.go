package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// FuzzCredentialFreePaths checks the two exemptions from credentials on any request line: the health
// path is only ever the exact /health, and the gRPC health exemption only an HTTP/2 gRPC POST to a
// method of grpc.health.v1.Health written plainly.
func FuzzCredentialFreePaths(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, target, contentType string, h2 bool) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + contentType + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		if h2 {
			r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
		}
		escaped := r.URL.EscapedPath()
		if isHealth(r) && (escaped != serverenv.HealthPath || r.URL.Path != serverenv.HealthPath) {
			t.Fatalf("%s %q taken for the health path (path %q, escaped %q)", r.Method, target, r.URL.Path, escaped)
		}
		if isGRPCHealth(r) {
			method, ok := strings.CutPrefix(escaped, grpcHealthPrefix)
			if !h2 || r.Method != "POST" || !ok || strings.ContainsAny(method, "/%") ||
				!strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") || escaped != r.URL.Path {
				t.Fatalf("%s %q (HTTP/2 %v, Content-Type %q) taken for a gRPC health call", r.Method, target, h2, contentType)
			}
		}
	})
}
