package localcloud

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// TestStopEndsTheWholeRevision checks that stopping a revision ends every process it started, also one
// in a process group of its own (as MLflow's workers are), as the end of a container does.
func TestStopEndsTheWholeRevision(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	p := &revisionProc{name: "svc-00001-abc", done: make(chan struct{}), tail: newLineTail(10, &out, "svc")}
	// A parent that puts its child in a process group of its own, then waits.
	p.cmd = exec.Command("python3", "-c", "import subprocess, time\n"+
		"c = subprocess.Popen(['sleep', '300'], process_group=0)\n"+
		"print('child=%d' % c.pid, flush=True)\ntime.sleep(300)")
	p.cmd.Stdout = p.tail
	p.cmd.WaitDelay = time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, v, ok := strings.Cut(p.tail.String(), "child="); ok {
			child, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if child == 0 {
		t.Fatal("the child's pid was not printed")
	}
	p.stop(2 * time.Second)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Errorf("process %d, in its own group in the revision's session, outlived the revision", child)
}

// TestProbeKinds checks that the local runtime runs the kind of probe the spec names, as Cloud Run does:
// a gRPC probe passes only on a SERVING health check over h2c, not on an open port or an HTTP answer.
func TestProbeKinds(t *testing.T) {
	t.Parallel()
	grpcHealth := func(st healthpb.HealthCheckResponse_ServingStatus) http.Handler {
		srv, hs := grpc.NewServer(), health.NewServer()
		hs.SetServingStatus("", st)
		healthpb.RegisterHealthServer(srv, hs)
		return srv
	}
	ok200 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "OK") })
	grpcProbe := &runpb.Probe{ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 8080}}}
	httpProbe := &runpb.Probe{ProbeType: &runpb.Probe_HttpGet{HttpGet: &runpb.HTTPGetAction{Path: "/health", Port: 8080}}}
	tcpProbe := &runpb.Probe{ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 8080}}}
	tests := []struct {
		name   string
		probe  *runpb.Probe
		server http.Handler // nil: nothing listens
		pass   bool
	}{
		{"gRPC, SERVING", grpcProbe, grpcHealth(healthpb.HealthCheckResponse_SERVING), true},
		{"gRPC, NOT_SERVING", grpcProbe, grpcHealth(healthpb.HealthCheckResponse_NOT_SERVING), false},
		{"gRPC, no health service", grpcProbe, grpc.NewServer(), false},
		{"gRPC, an HTTP server", grpcProbe, ok200, false},
		{"HTTP, 200", httpProbe, ok200, true},
		{"HTTP, 503", httpProbe, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }), false},
		{"TCP, listening", tcpProbe, ok200, true},
		{"TCP, nothing listening", tcpProbe, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			if tt.server == nil {
				ln.Close()
			} else {
				var protocols http.Protocols
				protocols.SetHTTP1(true)
				protocols.SetUnencryptedHTTP2(true)
				srv := &http.Server{Handler: tt.server, Protocols: &protocols}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
			}
			pr := proto.Clone(tt.probe).(*runpb.Probe)
			pr.PeriodSeconds, pr.TimeoutSeconds, pr.FailureThreshold = 1, 1, 2
			p := &revisionProc{port: port, done: make(chan struct{})}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = p.probe(ctx, pr)
			if (err == nil) != tt.pass {
				t.Errorf("probe passed = %v, want %v (err %v)", err == nil, tt.pass, err)
			}
		})
	}
}
