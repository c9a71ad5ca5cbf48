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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
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

// probe runs the startup probe as Cloud Run does: every period, up to the failure threshold.
func (p *revisionProc) probe(ctx context.Context, pr *runpb.Probe) error {
	period, threshold, timeout := time.Duration(max(pr.GetPeriodSeconds(), 1))*time.Second, max(pr.GetFailureThreshold(), 1), time.Duration(max(pr.GetTimeoutSeconds(), 1))*time.Second
	check := func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), timeout)
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	}
	if get := pr.GetHttpGet(); get != nil {
		client := &http.Client{Timeout: timeout}
		u := fmt.Sprintf("http://127.0.0.1:%d%s", p.port, get.GetPath())
		check = func() error {
			resp, err := client.Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 399 {
				return fmt.Errorf("HTTP probe %s answered %s", get.GetPath(), resp.Status)
			}
			return nil
		}
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
		if last = check(); last == nil {
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

// killSession kills every process in session sid.
func killSession(sid int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 3 && fields[3] == strconv.Itoa(sid) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
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
