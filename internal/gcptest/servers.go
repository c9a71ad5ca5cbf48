package gcptest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
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
	srv *http.Server
	url string
	wg  sync.WaitGroup
}

func serveHTTP(h http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	s := &httpServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, url: "http://" + ln.Addr().String()}
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
	// Every method the stand-ins serve is unary: no stream interceptor is needed.
	s := &grpcServer{srv: grpc.NewServer(grpc.UnaryInterceptor(UnaryAuth(auth))), addr: ln.Addr().String()}
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
