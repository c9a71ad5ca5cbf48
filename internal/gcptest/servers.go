package gcptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// started is how the Start helpers finish: it fails the test on the constructor's error, and closes the
// stand-in when the test ends.
func started[T interface{ Close() }](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// callLog counts the authenticated calls a gRPC stand-in answered, per method; embedded in the stand-in,
// it gives it Calls and CallCounts.
type callLog struct {
	mu    sync.Mutex
	calls map[string]int

	faults faults // Fail and Failed
}

// Fail makes the next n calls of method (e.g. "GetService", "GetOperation", "GetSecretVersion") fail with
// code before they reach the stand-in, as a Google frontend that is overloaded (UNAVAILABLE,
// RESOURCE_EXHAUSTED) or slow (DEADLINE_EXCEEDED) answers. Failed calls are not in Calls.
func (l *callLog) Fail(method string, code codes.Code, n int) {
	l.faults.add(method, fault{code: code}, n)
}

// FailAfter makes the next n calls of method do their work and then fail with code, as a write does whose
// answer is lost: DEADLINE_EXCEEDED after Cloud Run accepted the update, the client none the wiser.
func (l *callLog) FailAfter(method string, code codes.Code, n int) {
	l.faults.add(method, fault{code: code, after: true}, n)
}

// Failed returns how many calls of method a Fail or FailAfter made fail.
func (l *callLog) Failed(method string) int { return l.faults.failed(method) }

// faultTable is how the fault interceptor finds a gRPC stand-in's faults from the service it registered.
type faultTable interface{ faultTable() *faults }

func (a runAPI) faultTable() *faults           { return &a.r.faults }
func (a secretManagerAPI) faultTable() *faults { return &a.s.faults }

// injectFaults fails a call that a Fail of its stand-in asked to fail.
func injectFaults(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if t, ok := info.Server.(faultTable); ok {
		if f, ok := t.faultTable().take(path.Base(info.FullMethod)); ok {
			if f.after {
				if _, err := handler(ctx, req); err != nil {
					return nil, err
				}
			}
			return nil, status.Errorf(f.code, "injected fault: %s is %s", path.Base(info.FullMethod), f.code)
		}
	}
	return handler(ctx, req)
}

// A fault is one injected failure: a gRPC code, an HTTP status, or (drop) a connection closed after
// part of the request body was read.
type fault struct {
	code   codes.Code
	after  bool // the call is carried out first (FailAfter)
	status int
	drop   bool
}

// faults are the failures waiting to be injected, per key (a gRPC method, or "METHOD path" for HTTP),
// and how many were.
type faults struct {
	mu      sync.Mutex
	pending map[string][]fault
	order   []string // HTTP keys, in the order they were added, for prefix matching
	done    map[string]int
}

func (f *faults) add(key string, ft fault, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.pending, f.done = map[string][]fault{}, map[string]int{}
	}
	if _, ok := f.pending[key]; !ok {
		f.order = append(f.order, key)
	}
	for range n {
		f.pending[key] = append(f.pending[key], ft)
	}
}

func (f *faults) take(key string) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.pending[key]
	if len(q) == 0 {
		return fault{}, false
	}
	f.pending[key] = q[1:]
	f.done[key]++
	return q[0], true
}

func (f *faults) failed(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done[key]
}

// httpKey is the key of FailHTTP's faults: the method ("" for any) and a part of the path.
func httpKey(method, pathPart string) string { return method + " " + pathPart }

// takeHTTP takes the first pending fault whose method and path part match r.
func (f *faults) takeHTTP(r *http.Request) (fault, bool) {
	f.mu.Lock()
	var match string
	for _, key := range f.order {
		method, part, _ := strings.Cut(key, " ")
		if len(f.pending[key]) > 0 && (method == "" || method == r.Method) && strings.Contains(r.URL.Path, part) {
			match = key
			break
		}
	}
	f.mu.Unlock()
	if match == "" {
		return fault{}, false
	}
	return f.take(match)
}

// serve answers r with a pending fault, if one matches, and tells whether it did. A drop reads part of
// the body (so the client is mid-upload) and closes the connection without an answer.
func (f *faults) serve(w http.ResponseWriter, r *http.Request) bool {
	ft, ok := f.takeHTTP(r)
	if !ok {
		return false
	}
	if ft.drop {
		_, _ = io.CopyN(io.Discard, r.Body, 512)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return true
		}
		panic(http.ErrAbortHandler) // HTTP/2: reset the stream
	}
	writeJSON(w, ft.status, map[string]any{"error": map[string]any{"code": ft.status, "message": "injected fault: " + http.StatusText(ft.status)}})
	return true
}

// httpFaults gives an HTTP stand-in FailHTTP, DropHTTP and FailedHTTP.
type httpFaults struct{ faults faults }

// FailHTTP makes the next n requests whose method is method ("" for any) and whose path contains
// pathPart fail with status, before they reach the stand-in.
func (h *httpFaults) FailHTTP(method, pathPart string, status, n int) {
	h.faults.add(httpKey(method, pathPart), fault{status: status}, n)
}

// DropHTTP makes the next n such requests lose their connection after part of their body was read, as a
// connection that breaks mid-upload does.
func (h *httpFaults) DropHTTP(method, pathPart string, n int) {
	h.faults.add(httpKey(method, pathPart), fault{drop: true}, n)
}

// FailedHTTP returns how many requests a FailHTTP or DropHTTP with these arguments failed.
func (h *httpFaults) FailedHTTP(method, pathPart string) int {
	return h.faults.failed(httpKey(method, pathPart))
}

// The HTTP stand-ins served by serveHTTP share their server's faults.
func (s *TokenServer) FailHTTP(method, pathPart string, status, n int) {
	s.srv.faults.FailHTTP(method, pathPart, status, n)
}
func (s *TokenServer) DropHTTP(method, pathPart string, n int) {
	s.srv.faults.DropHTTP(method, pathPart, n)
}
func (s *TokenServer) FailedHTTP(method, pathPart string) int {
	return s.srv.faults.FailedHTTP(method, pathPart)
}
func (rm *ResourceManager) FailHTTP(method, pathPart string, status, n int) {
	rm.srv.faults.FailHTTP(method, pathPart, status, n)
}
func (rm *ResourceManager) DropHTTP(method, pathPart string, n int) {
	rm.srv.faults.DropHTTP(method, pathPart, n)
}
func (rm *ResourceManager) FailedHTTP(method, pathPart string) int {
	return rm.srv.faults.FailedHTTP(method, pathPart)
}

func (l *callLog) count(method string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls == nil {
		l.calls = map[string]int{}
	}
	l.calls[method]++
}

// Calls returns how many authenticated calls of the named method (e.g. "GetService", "GetOperation",
// "AccessSecretVersion") it answered.
func (l *callLog) Calls(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[method]
}

// CallCounts returns the authenticated calls per method.
func (l *callLog) CallCounts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.calls)
}

// httpServer serves a handler on a loopback port.
type httpServer struct {
	srv    *http.Server
	url    string
	wg     sync.WaitGroup
	faults httpFaults
}

func serveHTTP(h http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	s := &httpServer{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.faults.faults.serve(w, r) {
			h.ServeHTTP(w, r)
		}
	})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(fmt.Sprintf("gcptest: serving HTTP on %s: %v", s.url, err))
		}
	}()
	return s, nil
}

func (s *httpServer) close() {
	s.srv.Close()
	s.wg.Wait()
}

// grpcServer serves gRPC services on a loopback port, each call authenticated by auth.
type grpcServer struct {
	srv  *grpc.Server
	addr string
	wg   sync.WaitGroup
}

func serveGRPC(auth Authenticator, register func(*grpc.Server)) (*grpcServer, error) {
	if auth == nil {
		return nil, errors.New("gcptest: a stand-in needs an Authenticator (a *TokenServer, or StaticTokens)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	// Every method the stand-ins serve is unary: no stream interceptor is needed. Injected faults come
	// first, as a frontend's do: they need no valid token.
	s := &grpcServer{srv: grpc.NewServer(grpc.ChainUnaryInterceptor(injectFaults, UnaryAuth(auth))), addr: ln.Addr().String()}
	register(s.srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln) // returns when stopped
	}()
	return s, nil
}

func (s *grpcServer) close() {
	s.srv.Stop()
	s.wg.Wait()
}
