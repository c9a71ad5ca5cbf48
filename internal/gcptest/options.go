package gcptest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// The project every stand-in knows unless told of others with WithProject.
const (
	DefaultProjectID     = "test-project"
	DefaultProjectNumber = "123456789012"
)

// Option configures a stand-in. Each stand-in reads the options that concern it and ignores the rest, so
// one list can configure them all (see Start).
type Option func(*settings)

type settings struct {
	projects      map[string]string // project ID -> project number
	tokenLifetime time.Duration

	runtime          Runtime
	opPolls          int
	opDelay          time.Duration
	serviceURL       func(ServiceRef) string
	domainRestricted bool
	secrets          *SecretManager

	registry http.Handler
}

func newSettings(opts []Option) *settings {
	s := &settings{projects: map[string]string{}, tokenLifetime: time.Hour, opPolls: 1}
	for _, o := range opts {
		o(s)
	}
	if len(s.projects) == 0 {
		s.projects[DefaultProjectID] = DefaultProjectNumber
	}
	return s
}

// WithProject makes a project known to the stand-ins (Secret Manager and Cloud Run), by its ID and number.
// Requests naming an unknown project are refused as Google refuses them. Without any WithProject,
// DefaultProjectID (DefaultProjectNumber) is the only project.
func WithProject(id, number string) Option {
	return func(s *settings) { s.projects[id] = number }
}

// WithTokenLifetime sets how long the token server's access tokens last (default an hour).
func WithTokenLifetime(d time.Duration) Option {
	return func(s *settings) { s.tokenLifetime = d }
}

// project is a known project, reached by its ID or its number.
type project struct {
	id, number string
}

// lookupProject resolves a project ID or number.
func (s *settings) lookupProject(idOrNumber string) (project, bool) {
	if n, ok := s.projects[idOrNumber]; ok {
		return project{id: idOrNumber, number: n}, true
	}
	for id, n := range s.projects {
		if n == idOrNumber {
			return project{id: id, number: n}, true
		}
	}
	return project{}, false
}

// splitName splits a resource name into its segments and checks that the collection segments (the even
// ones) are as expected, e.g. splitName(name, "projects", "secrets") for "projects/p/secrets/s".
func splitName(name string, collections ...string) ([]string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 2*len(collections) {
		return nil, false
	}
	for i, c := range collections {
		if parts[2*i] != c || parts[2*i+1] == "" {
			return nil, false
		}
	}
	return parts, true
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
	s := &grpcServer{
		srv:  grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryAuth(auth)), grpc.ChainStreamInterceptor(StreamAuth(auth))),
		addr: ln.Addr().String(),
	}
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
