package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveH2C serves h on loopback for HTTP/1.1 and h2c, behind the request log, as run does, and returns
// its address.
func serveH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: newLogger(io.Discard, newRedactor()).requests(h), Protocols: &protocols}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestGRPCHealth checks the gRPC health service as Cloud Run's probe calls it: over h2c, without
// credentials, on the port that requires them for everything else.
func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = w.Write([]byte("from mlflow"))
	}))
	defer upstream.Close()
	var logs bytes.Buffer
	mlflowUp := func() *httputil.ReverseProxy {
		return newProxy(strings.TrimPrefix(upstream.URL, "http://"), true, newLogger(&logs, newRedactor()))
	}
	h := newHandler(newBasicAuth("alice", "s3cret-password"))
	addr := serveH2C(t, h)
	client := healthpb.NewHealthClient(grpcConn(t, addr))

	check := func(step string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Cloud Run's probe sends the service named in the spec; ours names none: the server as a whole.
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
		if err != nil {
			t.Fatalf("%s: Check: %v", step, err)
		}
		if resp.GetStatus() != want {
			t.Fatalf("%s: Check = %v, want %v", step, resp.GetStatus(), want)
		}
	}
	check("before MLflow is up", healthpb.HealthCheckResponse_NOT_SERVING)
	h.setMLflow(mlflowUp())
	check("once MLflow is up", healthpb.HealthCheckResponse_SERVING)

	// An unknown service is NOT_FOUND, as the health-checking protocol says.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "mlflow"}); status.Code(err) != codes.NotFound {
		t.Errorf(`Check("mlflow") = %v, want NotFound`, err)
	}
	if reached.Load() != 0 {
		t.Errorf("health checks reached MLflow %d times", reached.Load())
	}

	h.setMLflow(nil)
	check("after MLflow exited", healthpb.HealthCheckResponse_NOT_SERVING)
	h.setMLflow(mlflowUp())
	h.probe.shutdown()
	check("once shutdown has begun", healthpb.HealthCheckResponse_NOT_SERVING)
	h.setMLflow(mlflowUp())
	check("after shutdown began, MLflow up again", healthpb.HealthCheckResponse_NOT_SERVING)

	// The HTTP health path still answers, over HTTP/1.1.
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health = %d, want 200", resp.StatusCode)
	}
}

// TestGRPCOtherPathsNeedCredentials checks that only the health service skips auth: any other gRPC call,
// or a health path spelled otherwise, is refused without credentials and never reaches MLflow.
func TestGRPCOtherPathsNeedCredentials(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer upstream.Close()
	var logs bytes.Buffer
	h := newHandler(newBasicAuth("alice", "s3cret-password"))
	h.setMLflow(newProxy(strings.TrimPrefix(upstream.URL, "http://"), true, newLogger(&logs, newRedactor())))
	conn := grpcConn(t, serveH2C(t, h))

	for _, method := range []string{
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.health.v1.HealthX/Check",
		"/grpc.health.v1.Health/Check/extra",
		"/grpc.health.v1.health/Check",
		"//grpc.health.v1.Health/Check",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := conn.Invoke(ctx, method, &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
		cancel()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without credentials: %v, want Unauthenticated (HTTP 401)", method, err)
		}
	}
	if reached.Load() != 0 {
		t.Errorf("calls without credentials reached MLflow %d times", reached.Load())
	}
}

func TestIsGRPCHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, contentType string
		proto                           int
		want                            bool
	}{
		{"check", "POST", "/grpc.health.v1.Health/Check", "application/grpc", 2, true},
		{"watch", "POST", "/grpc.health.v1.Health/Watch", "application/grpc+proto", 2, true},
		{"HTTP/1.1", "POST", "/grpc.health.v1.Health/Check", "application/grpc", 1, false},
		{"not gRPC", "POST", "/grpc.health.v1.Health/Check", "application/json", 2, false},
		{"content type prefix only", "POST", "/grpc.health.v1.Health/Check", "application/grpcx", 2, false},
		{"GET", "GET", "/grpc.health.v1.Health/Check", "application/grpc", 2, false},
		{"other service", "POST", "/mlflow.MlflowService/getRun", "application/grpc", 2, false},
		{"deeper path", "POST", "/grpc.health.v1.Health/Check/x", "application/grpc", 2, false},
		{"encoded", "POST", "/grpc.health.v1.Health/%43heck", "application/grpc", 2, false},
		{"dot segments", "POST", "/grpc.health.v1.Health/../x", "application/grpc", 2, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.path, nil)
		r.ProtoMajor = tt.proto
		r.Header.Set("Content-Type", tt.contentType)
		if got := isGRPCHealth(r); got != tt.want {
			t.Errorf("%s: isGRPCHealth = %v, want %v", tt.name, got, tt.want)
		}
	}
}
