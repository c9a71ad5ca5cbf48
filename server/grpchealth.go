package main

import (
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcHealthPrefix is the path prefix of the gRPC health-checking service's methods (Check, Watch, List).
// Cloud Run's gRPC startup probe calls Check on it.
var grpcHealthPrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

// grpcHealth answers grpc.health.v1.Health on the server's own port, over h2c, for Cloud Run's gRPC startup
// probe: an HTTP probe is documented only for services that use HTTP/1, and ours uses HTTP/2 end to end.
// The overall status (service "") is NOT_SERVING until MLflow answers its own /health, SERVING after, and
// NOT_SERVING again once MLflow has exited or shutdown has begun.
type grpcHealth struct {
	srv    *grpc.Server
	status *health.Server
}

func newGRPCHealth() *grpcHealth {
	g := &grpcHealth{srv: grpc.NewServer(), status: health.NewServer()}
	g.status.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(g.srv, g.status)
	return g
}

// serving reports MLflow's state to the probe.
func (g *grpcHealth) serving(up bool) {
	s := healthpb.HealthCheckResponse_NOT_SERVING
	if up {
		s = healthpb.HealthCheckResponse_SERVING
	}
	g.status.SetServingStatus("", s)
}

// shutdown makes every status NOT_SERVING for good: a later serving(true) changes nothing.
func (g *grpcHealth) shutdown() { g.status.Shutdown() }

// isGRPCHealth reports whether r is a gRPC call to the health service: HTTP/2, a gRPC content type, and
// a path under the health service exactly as written. Other gRPC calls are ordinary requests, subject to
// auth like any other, so that the exemption from credentials covers the health service only.
func isGRPCHealth(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && r.Method == http.MethodPost &&
		(ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")) &&
		r.URL.RawPath == "" && strings.HasPrefix(r.URL.Path, grpcHealthPrefix) &&
		!strings.Contains(strings.TrimPrefix(r.URL.Path, grpcHealthPrefix), "/")
}
