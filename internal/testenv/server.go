package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServerPackage is the import path of the server program that the image runs.
const ServerPackage = "github.com/deploy-mlflow/deploy-mlflow/server"

// BuildServer compiles the server program into dir as the image carries it, a static binary
// (CGO_ENABLED=0), for this machine's OS and architecture, and returns its path.
func BuildServer(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "deploy-mlflow-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ServerPackage)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", ServerPackage, err, b)
	}
	return out, nil
}

// ModuleRoot is the module's directory, found from this file's path, so that go build works from whatever
// directory a test or a demo runs in.
func ModuleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Server is a running server program: a process, as Cloud Run runs it.
type Server struct {
	proc *process
	port int

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced whenever a line arrives
	copied  sync.WaitGroup
}

// StartServer runs bin with this process's environment minus any DEPLOY_MLFLOW_* variables, plus env (a list
// of KEY=value). Unless env sets PORT, the server gets a free one. It returns at once; see WaitHealthy.
// Every line the server writes to stdout or stderr is kept (see Lines).
func StartServer(bin string, env []string) (*Server, error) {
	s := &Server{changed: make(chan struct{})}
	var base []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLOY_MLFLOW_") {
			base = append(base, kv)
		}
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PORT="); ok {
			port, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("server: PORT=%q is not a number", v)
			}
			s.port = port
		}
	}
	if s.port == 0 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		env = append(env, "PORT="+strconv.Itoa(port))
	}
	env = append(base, env...)
	// Plain pipes rather than cmd.StdoutPipe: exec.Cmd.Wait closes those as soon as the process exits,
	// which would lose the last lines (often the one that says why) to the race with the readers.
	var writeEnds []*os.File
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		writeEnds = append(writeEnds, w)
		s.copied.Add(1)
		go func() {
			defer r.Close()
			s.collect(r)
		}()
	}
	var proc *process
	var err error
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(bin)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = writeEnds[0], writeEnds[1]
		proc, err = startProcess(cmd)
		// A program written just before it runs (a test's stand-in) is "text file busy" while a child
		// that another goroutine forked meanwhile still holds the write descriptor; that ends at the
		// child's exec, within moments.
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, w := range writeEnds {
		w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("server: start %s: %w", bin, err)
	}
	s.proc = proc
	return s, nil
}

func (s *Server) collect(r io.Reader) {
	defer s.copied.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		s.mu.Lock()
		s.lines = append(s.lines, sc.Text())
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// URL returns http://127.0.0.1:PORT.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Addr returns 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// PID returns the server's process ID.
func (s *Server) PID() int { return s.proc.cmd.Process.Pid }

// Signal sends sig to the server process (not to its children: the server must pass it on).
func (s *Server) Signal(sig os.Signal) error { return s.proc.cmd.Process.Signal(sig) }

// Exited is closed when the server process has exited.
func (s *Server) Exited() <-chan struct{} { return s.proc.done }

// Wait waits for the server to exit and returns its exit code (-1 if a signal killed it). ctx must have a
// deadline.
func (s *Server) Wait(ctx context.Context) (int, error) {
	if err := needDeadline(ctx, "the server's exit"); err != nil {
		return 0, err
	}
	select {
	case <-s.proc.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("server (pid %d) still running: %w", s.PID(), ctx.Err())
	}
	s.copied.Wait()
	return s.proc.cmd.ProcessState.ExitCode(), nil
}

// WaitHealthy polls the health path until it answers 200, and fails if the server exits first. ctx must
// have a deadline.
func (s *Server) WaitHealthy(ctx context.Context) error {
	if err := needDeadline(ctx, "the server to be healthy"); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/health", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.proc.done:
			s.copied.Wait()
			return fmt.Errorf("server exited (%v) before it was healthy; its output:\n%s", s.proc.err, strings.Join(s.Lines(), "\n"))
		case <-ctx.Done():
			return fmt.Errorf("server not healthy: %w; its output:\n%s", ctx.Err(), strings.Join(s.Lines(), "\n"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Lines returns every line the server has written so far.
func (s *Server) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// WaitForLine waits until a line satisfying match has been written, and returns it. ctx must have a
// deadline; what describes the line for the error when none comes (e.g. "the ready event").
func (s *Server) WaitForLine(ctx context.Context, what string, match func(string) bool) (string, error) {
	if err := needDeadline(ctx, what); err != nil {
		return "", err
	}
	seen := 0
	for {
		s.mu.Lock()
		lines, changed := s.lines[seen:], s.changed
		seen = len(s.lines)
		s.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, nil
			}
		}
		select {
		case <-changed:
		case <-s.proc.done:
			// Look once more at what arrived before the exit.
			s.copied.Wait()
			for _, l := range s.Lines()[seen:] {
				if match(l) {
					return l, nil
				}
			}
			return "", fmt.Errorf("server exited (%v) before writing %s; its output:\n%s", s.proc.err, what, strings.Join(s.Lines(), "\n"))
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s in the server's output: %w; its output:\n%s", what, ctx.Err(), strings.Join(s.Lines(), "\n"))
		}
	}
}

// Stop sends SIGTERM, waits up to 20 s for the server to exit, then kills it and every process below it.
func (s *Server) Stop() error {
	s.proc.stop(syscall.SIGTERM, 20*time.Second)
	s.copied.Wait()
	return nil
}

// needDeadline refuses a wait that could last for ever: a test that waits for something that never
// comes must fail, saying what it waited for, rather than hang until the test binary's timeout.
func needDeadline(ctx context.Context, what string) error {
	if _, ok := ctx.Deadline(); !ok {
		return fmt.Errorf("waiting for %s: the context has no deadline; use context.WithTimeout", what)
	}
	return nil
}
