package gcptest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// CloudPlatformScope is the OAuth scope that covers Cloud Run, Secret Manager and Artifact Registry. The
// stand-ins accept only tokens granted it.
const CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// TokenServer stands in for Google's OAuth token endpoint (the JWT-bearer grant of service-account keys),
// GitHub Actions' OIDC token endpoint, Google's Security Token Service and IAM Credentials'
// generateAccessToken, so that golang.org/x/oauth2/google gets access tokens from credential files that
// point here, exactly as it would from Google. It issues random opaque access tokens and, as an
// Authenticator, accepts only those.
type TokenServer struct {
	cfg *settings
	srv *httpServer

	mu        sync.Mutex
	keys      map[string]serviceAccountKey // private_key_id -> key
	tokens    map[string]TokenInfo
	oidcKey   *rsa.PrivateKey
	requests  map[string]WorkloadIdentity // OIDC request token -> the configuration that handed it out
	subjects  map[string]bool             // OIDC tokens handed out
	providers map[string]WorkloadIdentity // STS audience -> provider
	stats     TokenStats
}

type serviceAccountKey struct {
	email string
	pub   *rsa.PublicKey
}

// TokenInfo is what the token server knows of an access token it issued.
type TokenInfo struct {
	Principal string    // service account email, or the federated principal:// of a workload identity
	Scopes    []string  // the OAuth scopes granted
	Expiry    time.Time // after which the token is refused
	Grant     string    // how it was obtained: "jwt-bearer", "token-exchange" or "impersonation"

	impersonable []string // service accounts a federated token may impersonate
}

// TokenStats counts what the token server answered.
type TokenStats struct {
	JWTGrants      int // JWT-bearer assertions whose signature and claims checked out, answered with a token
	OIDCTokens     int // GitHub OIDC tokens handed out
	STSExchanges   int // OIDC tokens exchanged for federated tokens
	Impersonations int // access tokens issued by generateAccessToken
	Refused        int // requests to any of its endpoints answered with an error
}

// NewTokenServer starts a token server on a loopback port. Close stops it.
func NewTokenServer(opts ...Option) (*TokenServer, error) {
	oidcKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate the OIDC signing key: %w", err)
	}
	s := &TokenServer{
		cfg:       newSettings(opts),
		keys:      map[string]serviceAccountKey{},
		tokens:    map[string]TokenInfo{},
		oidcKey:   oidcKey,
		requests:  map[string]WorkloadIdentity{},
		subjects:  map[string]bool{},
		providers: map[string]WorkloadIdentity{},
	}
	if s.srv, err = serveHTTP(s.handler()); err != nil {
		return nil, err
	}
	return s, nil
}

// StartTokenServer starts a token server that is closed when the test ends.
func StartTokenServer(t testing.TB, opts ...Option) *TokenServer {
	t.Helper()
	s, err := NewTokenServer(opts...)
	return started(t, s, err)
}

// URL is the server's base URL, http://127.0.0.1:PORT.
func (s *TokenServer) URL() string { return s.srv.url }

// TokenURL is the OAuth token endpoint, the token_uri of the key files it writes.
func (s *TokenServer) TokenURL() string { return s.srv.url + tokenPath }

// Close stops the server.
func (s *TokenServer) Close() { s.srv.close() }

// Stats returns what the server has answered so far.
func (s *TokenServer) Stats() TokenStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Valid reports whether token is an access token this server issued that has not expired.
func (s *TokenServer) Valid(token string) bool {
	_, ok := s.Lookup(token)
	return ok
}

// Lookup returns what the server knows of an access token it issued that has not expired.
func (s *TokenServer) Lookup(token string) (TokenInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.tokens[token]
	if !ok || !s.cfg.now().Before(info.Expiry) {
		return TokenInfo{}, false
	}
	info.Scopes = slices.Clone(info.Scopes)
	return info, true
}

// Authenticate accepts the access tokens this server issued, with the cloud-platform scope.
func (s *TokenServer) Authenticate(token string) (string, error) {
	info, ok := s.Lookup(token)
	switch {
	case token == "":
		return "", ErrMissingToken
	case !ok:
		return "", ErrInvalidToken
	case !slices.Contains(info.Scopes, CloudPlatformScope):
		return "", fmt.Errorf("token of %s has scopes %v: %w", info.Principal, info.Scopes, ErrInsufficientScope)
	}
	return info.Principal, nil
}

// Middleware refuses HTTP requests without a bearer token this server issued (see RequireBearer).
func (s *TokenServer) Middleware(next http.Handler) http.Handler { return RequireBearer(s, next) }

// TokenSource is a token source for a new service-account key of email (default the deployer), as a
// client gets from that key: each token is obtained with a signed JWT from this server.
func (s *TokenServer) TokenSource(ctx context.Context, projectID, email string) (oauth2.TokenSource, error) {
	key, err := s.ServiceAccountKeyJSON(projectID, email)
	if err != nil {
		return nil, err
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, key, google.ServiceAccount, CloudPlatformScope)
	if err != nil {
		return nil, err
	}
	return creds.TokenSource, nil
}

// RevokeKeys makes the server refuse assertions signed by the keys of a service account from now on, as
// Google does once a key is deleted.
func (s *TokenServer) RevokeKeys(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, k := range s.keys {
		if k.email == email {
			delete(s.keys, id)
		}
	}
}

// issue records a new access token for info, valid for lifetime, and counts it.
func (s *TokenServer) issue(info TokenInfo, lifetime time.Duration, count func(*TokenStats)) string {
	token := randomToken("ya29.")
	info.Expiry = s.cfg.now().Add(lifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = info
	count(&s.stats)
	return token
}
