package localcloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// revisionProc is a revision running as a process, reached through its reverse proxy.
type revisionProc struct {
	name      string
	cmd       *exec.Cmd
	port      int
	h2c       bool
	done      chan struct{}
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	tail      *lineTail
	once      sync.Once
}

// probe runs the startup probe as Cloud Run does: every period, up to the failure threshold, of the kind
// the spec names.
func (p *revisionProc) probe(ctx context.Context, pr *runpb.Probe) error {
	period, threshold, timeout := time.Duration(max(pr.GetPeriodSeconds(), 1))*time.Second, max(pr.GetFailureThreshold(), 1), time.Duration(max(pr.GetTimeoutSeconds(), 1))*time.Second
	// The probe's port is the container port, which the process was told through $PORT.
	check, closeCheck, err := probeCheck(pr, fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		return err
	}
	defer closeCheck()
	try := func() error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return check(cctx)
	}
	select {
	case <-time.After(time.Duration(pr.GetInitialDelaySeconds()) * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	var last error
	for i := int32(0); i < threshold; i++ {
		select {
		case <-p.done:
			return fmt.Errorf("the container exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if last = try(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("the container exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
		}
	}
	return fmt.Errorf("no success in %d tries, %s apart: %v", threshold, period, last)
}

// probeCheck returns one try of probe pr against addr: a gRPC health Check over plaintext HTTP/2 that must
// answer SERVING, an HTTP/1 GET that must answer 2xx or 3xx, or a TCP connection (also when pr names no
// kind, like Cloud Run's default probe).
func probeCheck(pr *runpb.Probe, addr string) (check func(context.Context) error, closeCheck func(), err error) {
	switch {
	case pr.GetGrpc() != nil:
		service := pr.GetGrpc().GetService()
		// A connection per try: a client kept across tries would wait out its reconnect backoff, which
		// grows past the period, after the refusals of a container that has not opened its port yet.
		return func(ctx context.Context) error {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return fmt.Errorf("gRPC probe: %w", err)
			}
			defer conn.Close()
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err != nil {
				return fmt.Errorf("gRPC probe Check(%q): %w", service, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("gRPC probe Check(%q) answered %v", service, resp.GetStatus())
			}
			return nil
		}, func() {}, nil
	case pr.GetHttpGet() != nil:
		get := pr.GetHttpGet()
		// Cloud Run's HTTP probe speaks HTTP/1.
		transport := &http.Transport{Proxy: nil, DisableKeepAlives: true}
		client := &http.Client{Transport: transport}
		u := "http://" + addr + get.GetPath()
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			for _, h := range get.GetHttpHeaders() {
				req.Header.Add(h.GetName(), h.GetValue())
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 399 {
				return fmt.Errorf("HTTP probe %s answered %s", get.GetPath(), resp.Status)
			}
			return nil
		}, transport.CloseIdleConnections, nil
	default:
		var d net.Dialer
		return func(ctx context.Context) error {
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("TCP probe: %w", err)
			}
			return conn.Close()
		}, func() {}, nil
	}
}

func (p *revisionProc) reverseProxy() *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.port)}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // Cloud Run keeps the Host the client used
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, http1LimitMessage, http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "upstream connect error: "+err.Error(), http.StatusBadGateway)
		},
	}
	// HTTP/2 with prior knowledge to a container port named h2c, HTTP/1.1 to any other, as Cloud Run does.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(!p.h2c)
	protocols.SetUnencryptedHTTP2(p.h2c)
	p.transport = &http.Transport{Protocols: protocols, MaxIdleConnsPerHost: 16}
	rp.Transport = p.transport
	return rp
}

// stop sends SIGTERM, as Cloud Run does when it retires an instance, then SIGKILL after grace.
// Whatever the program left behind in its session is killed then, as the end of a container ends
// every process in it.
func (p *revisionProc) stop(grace time.Duration) {
	p.once.Do(func() {
		pid := p.cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
		killSession(pid)
		if p.transport != nil {
			p.transport.CloseIdleConnections()
		}
	})
}

// killSession kills every process in session sid. Session 0 is not one: /proc shows it for
// processes whose session leader is outside this PID namespace, which can be this program itself.
func killSession(sid int) {
	if sid <= 0 {
		return
	}
	procs, _ := testenv.Procs()
	for pid, p := range procs {
		if p.SID == sid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// lineTail keeps a process's last lines for error reports, and copies each line to a log.
type lineTail struct {
	mu     sync.Mutex
	max    int
	lines  []string
	buf    []byte
	log    io.Writer
	prefix string
}

func newLineTail(max int, log io.Writer, prefix string) *lineTail {
	return &lineTail{max: max, log: log, prefix: prefix}
}

func (t *lineTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		line := string(t.buf[:i])
		t.buf = t.buf[i+1:]
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
		if t.log != nil {
			fmt.Fprintf(t.log, "[%s] %s\n", t.prefix, line)
		}
	}
	return len(b), nil
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
