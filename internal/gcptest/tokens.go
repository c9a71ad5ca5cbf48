package gcptest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// CloudPlatformScope is the OAuth scope that covers Cloud Run, Secret Manager and Artifact Registry. The
// stand-ins accept only tokens granted it.
const CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// Grant types and token types of the OAuth flows the token server answers.
const (
	jwtBearerGrant     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"
	jwtTokenType       = "urn:ietf:params:oauth:token-type:jwt"
	idTokenType        = "urn:ietf:params:oauth:token-type:id_token"
	accessTokenType    = "urn:ietf:params:oauth:token-type:access_token"
	githubIssuer       = "https://token.actions.githubusercontent.com"
)

// Paths the token server answers on.
const (
	tokenPath       = "/token"                                         // Google's OAuth token endpoint
	oidcPath        = "/oidc"                                          // GitHub Actions' OIDC token endpoint
	stsPath         = "/sts/v1/token"                                  // Security Token Service
	impersonatePath = "/iamcredentials/v1/projects/-/serviceAccounts/" // IAM Credentials generateAccessToken
)

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
	mux := http.NewServeMux()
	mux.HandleFunc(tokenPath, s.serveToken)
	mux.HandleFunc(oidcPath, s.serveOIDC)
	mux.HandleFunc(stsPath, s.serveSTS)
	mux.Handle(impersonatePath, RequireBearer(s, http.HandlerFunc(s.serveImpersonation)))
	if s.srv, err = serveHTTP(mux); err != nil {
		return nil, err
	}
	return s, nil
}

// StartTokenServer starts a token server that is closed when the test ends.
func StartTokenServer(t testing.TB, opts ...Option) *TokenServer {
	t.Helper()
	s, err := NewTokenServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
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
	if !ok || !time.Now().Before(info.Expiry) {
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

// UnaryInterceptor refuses gRPC calls without a token this server issued (see UnaryAuth).
func (s *TokenServer) UnaryInterceptor() grpc.UnaryServerInterceptor { return UnaryAuth(s) }

// StreamInterceptor refuses streaming gRPC calls without a token this server issued.
func (s *TokenServer) StreamInterceptor() grpc.StreamServerInterceptor { return StreamAuth(s) }

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

// ServiceAccountKeyJSON creates a key for the service account email of project and returns its JSON key
// file, whose token_uri is this server. The server verifies the JWTs signed with it. An empty email means
// deployer@PROJECT.iam.gserviceaccount.com.
func (s *TokenServer) ServiceAccountKeyJSON(projectID, email string) ([]byte, error) {
	if email == "" {
		email = "deployer@" + projectID + ".iam.gserviceaccount.com"
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate a key for %s: %w", email, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the key for %s: %w", email, err)
	}
	keyID := randomHex(20)
	clientID, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(21), nil))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[keyID] = serviceAccountKey{email: email, pub: &key.PublicKey}
	s.mu.Unlock()
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   clientID.String(),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		"universe_domain":             "googleapis.com",
	}, "", "  ")
}

// ServiceAccountKey is ServiceAccountKeyJSON written to a file in dir; it returns the file's path.
func (s *TokenServer) ServiceAccountKey(dir, projectID, email string) (string, error) {
	b, err := s.ServiceAccountKeyJSON(projectID, email)
	if err != nil {
		return "", err
	}
	return writeCredentials(dir, "sa-key-", b)
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

// WorkloadIdentity describes a Workload Identity Federation provider for GitHub Actions, and the run of a
// workflow that authenticates through it.
type WorkloadIdentity struct {
	ProjectNumber  string // of the pool's project; default DefaultProjectNumber
	Pool           string // workload identity pool ID; default "github"
	Provider       string // provider ID; default "github"
	ServiceAccount string // if set, the credentials impersonate this service account
	Subject        string // the OIDC token's sub; default "repo:octo-org/octo-repo:ref:refs/heads/main"
}

func (w WorkloadIdentity) withDefaults() WorkloadIdentity {
	if w.ProjectNumber == "" {
		w.ProjectNumber = DefaultProjectNumber
	}
	if w.Pool == "" {
		w.Pool = "github"
	}
	if w.Provider == "" {
		w.Provider = "github"
	}
	if w.Subject == "" {
		w.Subject = "repo:octo-org/octo-repo:ref:refs/heads/main"
	}
	return w
}

// providerName is projects/N/locations/global/workloadIdentityPools/P/providers/PR.
func (w WorkloadIdentity) providerName() string {
	return "projects/" + w.ProjectNumber + "/locations/global/workloadIdentityPools/" + w.Pool + "/providers/" + w.Provider
}

// stsAudience is the audience of the STS exchange: //iam.googleapis.com/projects/N/....
func (w WorkloadIdentity) stsAudience() string { return "//iam.googleapis.com/" + w.providerName() }

// oidcAudience is the provider's default allowed audience of OIDC tokens: https://iam.googleapis.com/....
func (w WorkloadIdentity) oidcAudience() string {
	return "https://iam.googleapis.com/" + w.providerName()
}

// ExternalAccountJSON returns an external_account credentials file as google-github-actions/auth writes it
// for Workload Identity Federation, with every URL pointing at this server: the credential source is the
// OIDC endpoint with a fresh request token, token_url the STS endpoint, and, when w names a service
// account, service_account_impersonation_url the generateAccessToken endpoint.
func (s *TokenServer) ExternalAccountJSON(w WorkloadIdentity) ([]byte, error) {
	w = w.withDefaults()
	requestToken := randomToken("")
	s.mu.Lock()
	s.requests[requestToken] = w
	s.providers[w.stsAudience()] = w
	s.mu.Unlock()

	source := url.Values{"api-version": {"2.0"}, "audience": {w.oidcAudience()}}
	creds := map[string]any{
		"type":               "external_account",
		"audience":           w.stsAudience(),
		"subject_token_type": jwtTokenType,
		"token_url":          s.srv.url + stsPath,
		"credential_source": map[string]any{
			"url":     s.srv.url + oidcPath + "?" + source.Encode(),
			"headers": map[string]string{"Authorization": "Bearer " + requestToken},
			"format":  map[string]string{"type": "json", "subject_token_field_name": "value"},
		},
	}
	if w.ServiceAccount != "" {
		creds["service_account_impersonation_url"] = s.srv.url + impersonatePath + w.ServiceAccount + ":generateAccessToken"
	}
	return json.Marshal(creds)
}

// ExternalAccountFile is ExternalAccountJSON written to a gha-creds-*.json file in dir; it returns its path.
func (s *TokenServer) ExternalAccountFile(dir string, w WorkloadIdentity) (string, error) {
	b, err := s.ExternalAccountJSON(w)
	if err != nil {
		return "", err
	}
	return writeCredentials(dir, "gha-creds-", b)
}

func writeCredentials(dir, prefix string, b []byte) (string, error) {
	path := filepath.Join(dir, prefix+randomHex(6)+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	return path, nil
}

// postForm parses a token request's form, refusing anything but a well-formed POST as the endpoints do.
func (s *TokenServer) postForm(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		s.refuseOAuth(w, http.StatusMethodNotAllowed, "invalid_request", "The token endpoint only accepts POST.")
		return false
	}
	if err := r.ParseForm(); err != nil {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_request", "Malformed request body.")
		return false
	}
	return true
}

// serveToken answers the JWT-bearer grant of Google's OAuth token endpoint.
func (s *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if !s.postForm(w, r) {
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != jwtBearerGrant {
		s.refuseOAuth(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	claims, status, code, desc := s.verifyAssertion(r.PostForm.Get("assertion"))
	if status != 0 {
		s.refuseOAuth(w, status, code, desc)
		return
	}
	token := s.issue(TokenInfo{Principal: claims.Iss, Scopes: strings.Fields(claims.Scope), Grant: "jwt-bearer"}, func(st *TokenStats) { st.JWTGrants++ })
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": token,
		"expires_in":   int(s.cfg.tokenLifetime.Seconds()) - 1,
		"token_type":   "Bearer",
	})
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// verifyAssertion checks a service account's signed JWT as Google's token endpoint does; a non-zero status
// is the refusal.
func (s *TokenServer) verifyAssertion(assertion string) (claims jwtClaims, status int, code, desc string) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: the assertion is not a signed JWT."
	}
	var hdr jwtHeader
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: the header must name alg RS256."
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: the claims are not JSON."
	}
	s.mu.Lock()
	key, ok := s.keys[hdr.Kid]
	s.mu.Unlock()
	if !ok {
		return claims, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found: no key " + hdr.Kid + "."
	}
	if !verifyRS256(key.pub, parts[0]+"."+parts[1], parts[2]) {
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature."
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != key.email:
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: iss " + claims.Iss + " does not own key " + hdr.Kid + "."
	case claims.Aud != s.TokenURL():
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Failed audience check: aud is " + claims.Aud + ", want " + s.TokenURL() + "."
	case claims.Exp <= now || claims.Iat > now+300 || claims.Exp-claims.Iat > 3600 || claims.Exp <= claims.Iat:
		return claims, http.StatusBadRequest, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
	case claims.Sub != "" && claims.Sub != claims.Iss:
		return claims, http.StatusUnauthorized, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
	}
	scopes := strings.Fields(claims.Scope)
	if len(scopes) == 0 {
		return claims, http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
	}
	for _, sc := range scopes {
		if !strings.HasPrefix(sc, "https://www.googleapis.com/auth/") {
			return claims, http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
		}
	}
	return claims, 0, "", ""
}

// serveOIDC stands in for GitHub Actions' ID token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL).
func (s *TokenServer) serveOIDC(w http.ResponseWriter, r *http.Request) {
	requestToken, _ := bearer(r.Header.Get("Authorization"))
	s.mu.Lock()
	wi, ok := s.requests[requestToken]
	s.mu.Unlock()
	if r.Method != http.MethodGet || !ok {
		s.refuse(w, http.StatusUnauthorized, map[string]string{"message": "Unauthorized: the request token is not valid for this run."})
		return
	}
	audience := r.URL.Query().Get("audience")
	if audience == "" {
		audience = "https://github.com/octo-org" // GitHub's default: the repository owner's URL
	}
	now := time.Now()
	token, err := signJWT(s.oidcKey, map[string]any{
		"iss": githubIssuer,
		"aud": audience,
		"sub": wi.Subject,
		"jti": randomHex(16),
		"iat": now.Unix(),
		"nbf": now.Add(-5 * time.Second).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	})
	if err != nil {
		s.refuse(w, http.StatusInternalServerError, map[string]string{"message": err.Error()})
		return
	}
	s.mu.Lock()
	s.subjects[token] = true
	s.stats.OIDCTokens++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"count": len(token), "value": token})
}

// serveSTS answers the token exchange of Google's Security Token Service (sts.googleapis.com/v1/token).
func (s *TokenServer) serveSTS(w http.ResponseWriter, r *http.Request) {
	if !s.postForm(w, r) {
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != tokenExchangeGrant {
		s.refuseOAuth(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid value for \"grant_type\": "+gt)
		return
	}
	s.mu.Lock()
	provider, ok := s.providers[f.Get("audience")]
	s.mu.Unlock()
	if !ok {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.")
		return
	}
	if tt := f.Get("subject_token_type"); tt != jwtTokenType && tt != idTokenType {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_request", "Invalid value for \"subject_token_type\": "+tt)
		return
	}
	if rt := f.Get("requested_token_type"); rt != accessTokenType {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_request", "Invalid value for \"requested_token_type\": "+rt)
		return
	}
	scopes := strings.Fields(f.Get("scope"))
	if len(scopes) == 0 {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_scope", "Scope(s) must be provided.")
		return
	}
	subject := f.Get("subject_token")
	var claims struct {
		Iss string `json:"iss"`
		Aud string `json:"aud"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}
	parts := strings.Split(subject, ".")
	s.mu.Lock()
	issued := s.subjects[subject]
	s.mu.Unlock()
	if len(parts) != 3 || !issued || !verifyRS256(&s.oidcKey.PublicKey, parts[0]+"."+parts[1], parts[2]) || decodeSegment(parts[1], &claims) != nil {
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT signature: the subject token was not issued by the OIDC provider.")
		return
	}
	switch {
	case claims.Iss != githubIssuer:
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_grant", "The issuer in ID Token "+claims.Iss+" does not match the expected ones: "+githubIssuer+".")
		return
	case claims.Aud != provider.oidcAudience():
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_grant", "The audience in ID Token ["+claims.Aud+"] does not match the expected audience "+provider.oidcAudience()+".")
		return
	case claims.Exp <= time.Now().Unix():
		s.refuseOAuth(w, http.StatusBadRequest, "invalid_grant", "The ID Token has expired: exp "+time.Unix(claims.Exp, 0).UTC().Format(time.RFC3339)+".")
		return
	}
	var impersonable []string
	if provider.ServiceAccount != "" {
		impersonable = []string{provider.ServiceAccount}
	}
	principal := "principal://iam.googleapis.com/projects/" + provider.ProjectNumber + "/locations/global/workloadIdentityPools/" + provider.Pool + "/subject/" + claims.Sub
	token := s.issue(TokenInfo{Principal: principal, Scopes: scopes, Grant: "token-exchange", impersonable: impersonable}, func(st *TokenStats) { st.STSExchanges++ })
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":      token,
		"issued_token_type": accessTokenType,
		"token_type":        "Bearer",
		"expires_in":        int(s.cfg.tokenLifetime.Seconds()) - 1,
	})
}

// serveImpersonation answers IAM Credentials' projects/-/serviceAccounts/EMAIL:generateAccessToken; the
// caller's bearer token has already been checked.
func (s *TokenServer) serveImpersonation(w http.ResponseWriter, r *http.Request) {
	email, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, impersonatePath), ":generateAccessToken")
	if r.Method != http.MethodPost || !ok || email == "" {
		s.refuseGoogle(w, codes.NotFound, "The requested URL was not found on this server.")
		return
	}
	caller, _ := bearer(r.Header.Get("Authorization"))
	info, _ := s.Lookup(caller)
	if !slices.Contains(info.impersonable, email) {
		s.refuseGoogle(w, codes.PermissionDenied, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")
		return
	}
	var req struct {
		Scope    []string `json:"scope"`
		Lifetime string   `json:"lifetime"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.refuseGoogle(w, codes.InvalidArgument, "Invalid JSON payload received: "+err.Error())
		return
	}
	if len(req.Scope) == 0 {
		s.refuseGoogle(w, codes.InvalidArgument, "Scope required.")
		return
	}
	lifetime := s.cfg.tokenLifetime
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d <= 0 || d > 12*time.Hour {
			s.refuseGoogle(w, codes.InvalidArgument, "Invalid value at 'lifetime': "+req.Lifetime)
			return
		}
		lifetime = min(d, lifetime)
	}
	token := s.issueFor(TokenInfo{Principal: email, Scopes: req.Scope, Grant: "impersonation"}, lifetime, func(st *TokenStats) { st.Impersonations++ })
	writeJSON(w, http.StatusOK, map[string]string{
		"accessToken": token,
		"expireTime":  time.Now().Add(lifetime).UTC().Format(time.RFC3339),
	})
}

func (s *TokenServer) issue(info TokenInfo, count func(*TokenStats)) string {
	return s.issueFor(info, s.cfg.tokenLifetime, count)
}

func (s *TokenServer) issueFor(info TokenInfo, lifetime time.Duration, count func(*TokenStats)) string {
	token := randomToken("ya29.")
	info.Expiry = time.Now().Add(lifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = info
	count(&s.stats)
	return token
}

func (s *TokenServer) refuseOAuth(w http.ResponseWriter, status int, code, desc string) {
	s.refuse(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *TokenServer) refuseGoogle(w http.ResponseWriter, code codes.Code, msg string) {
	s.mu.Lock()
	s.stats.Refused++
	s.mu.Unlock()
	writeGoogleError(w, code, msg)
}

func (s *TokenServer) refuse(w http.ResponseWriter, status int, body any) {
	s.mu.Lock()
	s.stats.Refused++
	s.mu.Unlock()
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func verifyRS256(pub *rsa.PublicKey, signed, sig string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(signed))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], raw) == nil
}

func signJWT(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	hdr, err := json.Marshal(jwtHeader{Alg: "RS256", Typ: "JWT", Kid: "gcptest-oidc"})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", errors.New("sign the OIDC token: " + err.Error())
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func randomToken(prefix string) string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
