package gcptest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// This file holds the token server's HTTP endpoints: Google's OAuth token endpoint, GitHub Actions' OIDC
// token endpoint, the Security Token Service and IAM Credentials' generateAccessToken.

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

func (s *TokenServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(tokenPath, s.endpoint(s.token))
	mux.Handle(oidcPath, s.endpoint(s.oidc))
	mux.Handle(stsPath, s.endpoint(s.sts))
	mux.Handle(impersonatePath, RequireBearer(s, s.endpoint(s.impersonate)))
	return mux
}

// endpoint serves one endpoint: f answers with a JSON body, or refuses, and the refusal is counted.
func (s *TokenServer) endpoint(f func(*http.Request) (any, *httpError)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, refused := f(r)
		if refused != nil {
			s.mu.Lock()
			s.stats.Refused++
			s.mu.Unlock()
			refused.write(w)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
}

// postForm parses a token request's form, refusing anything but a well-formed POST as the endpoints do.
func postForm(r *http.Request) (url.Values, *httpError) {
	if r.Method != http.MethodPost {
		return nil, oauthError(http.StatusMethodNotAllowed, "invalid_request", "The token endpoint only accepts POST.")
	}
	if err := r.ParseForm(); err != nil {
		return nil, oauthError(http.StatusBadRequest, "invalid_request", "Malformed request body.")
	}
	return r.PostForm, nil
}

// token answers the JWT-bearer grant of Google's OAuth token endpoint.
func (s *TokenServer) token(r *http.Request) (any, *httpError) {
	form, refused := postForm(r)
	if refused != nil {
		return nil, refused
	}
	if gt := form.Get("grant_type"); gt != jwtBearerGrant {
		return nil, oauthError(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+gt)
	}
	claims, refused := s.verifyAssertion(form.Get("assertion"))
	if refused != nil {
		return nil, refused
	}
	token := s.issue(TokenInfo{Principal: claims.Iss, Scopes: strings.Fields(claims.Scope), Grant: "jwt-bearer"}, s.cfg.tokenLifetime, func(st *TokenStats) { st.JWTGrants++ })
	return map[string]any{"access_token": token, "expires_in": int(s.cfg.tokenLifetime.Seconds()) - 1, "token_type": "Bearer"}, nil
}

// verifyAssertion checks a service account's signed JWT as Google's token endpoint does.
func (s *TokenServer) verifyAssertion(assertion string) (jwtClaims, *httpError) {
	var claims jwtClaims
	grant := func(desc string) *httpError { return oauthError(http.StatusBadRequest, "invalid_grant", desc) }
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return claims, grant("Invalid JWT: the assertion is not a signed JWT.")
	}
	var hdr jwtHeader
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != "RS256" {
		return claims, grant("Invalid JWT: the header must name alg RS256.")
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return claims, grant("Invalid JWT: the claims are not JSON.")
	}
	s.mu.Lock()
	key, ok := s.keys[hdr.Kid]
	s.mu.Unlock()
	if !ok {
		return claims, oauthError(http.StatusUnauthorized, "invalid_client", "The OAuth client was not found: no key "+hdr.Kid+".")
	}
	if !verifyRS256(key.pub, parts[0]+"."+parts[1], parts[2]) {
		return claims, grant("Invalid JWT Signature.")
	}
	now := s.cfg.now().Unix()
	switch {
	case claims.Iss != key.email:
		return claims, grant("Invalid JWT: iss " + claims.Iss + " does not own key " + hdr.Kid + ".")
	case claims.Aud != s.TokenURL():
		return claims, grant("Invalid JWT: Failed audience check: aud is " + claims.Aud + ", want " + s.TokenURL() + ".")
	case claims.Exp <= now || claims.Iat > now+300 || claims.Exp-claims.Iat > 3600 || claims.Exp <= claims.Iat:
		return claims, grant("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	case claims.Sub != "" && claims.Sub != claims.Iss:
		return claims, oauthError(http.StatusUnauthorized, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
	}
	scopes := strings.Fields(claims.Scope)
	if len(scopes) == 0 || slices.ContainsFunc(scopes, func(sc string) bool { return !strings.HasPrefix(sc, "https://www.googleapis.com/auth/") }) {
		return claims, oauthError(http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
	}
	return claims, nil
}

// oidc stands in for GitHub Actions' ID token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL).
func (s *TokenServer) oidc(r *http.Request) (any, *httpError) {
	requestToken, _ := bearer(r.Header.Get("Authorization"))
	s.mu.Lock()
	wi, ok := s.requests[requestToken]
	s.mu.Unlock()
	if r.Method != http.MethodGet || !ok {
		return nil, &httpError{http.StatusUnauthorized, map[string]string{"message": "Unauthorized: the request token is not valid for this run."}}
	}
	audience := r.URL.Query().Get("audience")
	if audience == "" {
		audience = "https://github.com/octo-org" // GitHub's default: the repository owner's URL
	}
	now := s.cfg.now()
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
		return nil, &httpError{http.StatusInternalServerError, map[string]string{"message": err.Error()}}
	}
	s.mu.Lock()
	s.subjects[token] = true
	s.stats.OIDCTokens++
	s.mu.Unlock()
	return map[string]any{"count": len(token), "value": token}, nil
}

// sts answers the token exchange of Google's Security Token Service (sts.googleapis.com/v1/token).
func (s *TokenServer) sts(r *http.Request) (any, *httpError) {
	f, refused := postForm(r)
	if refused != nil {
		return nil, refused
	}
	bad := func(code, desc string) *httpError { return oauthError(http.StatusBadRequest, code, desc) }
	if gt := f.Get("grant_type"); gt != tokenExchangeGrant {
		return nil, bad("unsupported_grant_type", "Invalid value for \"grant_type\": "+gt)
	}
	s.mu.Lock()
	provider, ok := s.providers[f.Get("audience")]
	s.mu.Unlock()
	if !ok {
		return nil, bad("invalid_target", "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.")
	}
	if tt := f.Get("subject_token_type"); tt != jwtTokenType && tt != idTokenType {
		return nil, bad("invalid_request", "Invalid value for \"subject_token_type\": "+tt)
	}
	if rt := f.Get("requested_token_type"); rt != accessTokenType {
		return nil, bad("invalid_request", "Invalid value for \"requested_token_type\": "+rt)
	}
	scopes := strings.Fields(f.Get("scope"))
	if len(scopes) == 0 {
		return nil, bad("invalid_scope", "Scope(s) must be provided.")
	}
	subject := f.Get("subject_token")
	var claims jwtClaims
	parts := strings.Split(subject, ".")
	s.mu.Lock()
	issued := s.subjects[subject]
	s.mu.Unlock()
	if len(parts) != 3 || !issued || !verifyRS256(&s.oidcKey.PublicKey, parts[0]+"."+parts[1], parts[2]) || decodeSegment(parts[1], &claims) != nil {
		return nil, bad("invalid_grant", "Invalid JWT signature: the subject token was not issued by the OIDC provider.")
	}
	switch {
	case claims.Iss != githubIssuer:
		return nil, bad("invalid_grant", "The issuer in ID Token "+claims.Iss+" does not match the expected ones: "+githubIssuer+".")
	case claims.Aud != provider.oidcAudience():
		return nil, bad("invalid_grant", "The audience in ID Token ["+claims.Aud+"] does not match the expected audience "+provider.oidcAudience()+".")
	case claims.Exp <= s.cfg.now().Unix():
		return nil, bad("invalid_grant", "The ID Token has expired: exp "+time.Unix(claims.Exp, 0).UTC().Format(time.RFC3339)+".")
	}
	var impersonable []string
	if provider.ServiceAccount != "" {
		impersonable = []string{provider.ServiceAccount}
	}
	principal := "principal://iam.googleapis.com/projects/" + provider.ProjectNumber + "/locations/global/workloadIdentityPools/" + provider.Pool + "/subject/" + claims.Sub
	token := s.issue(TokenInfo{Principal: principal, Scopes: scopes, Grant: "token-exchange", impersonable: impersonable}, s.cfg.tokenLifetime, func(st *TokenStats) { st.STSExchanges++ })
	return map[string]any{"access_token": token, "issued_token_type": accessTokenType, "token_type": "Bearer", "expires_in": int(s.cfg.tokenLifetime.Seconds()) - 1}, nil
}

// impersonate answers IAM Credentials' projects/-/serviceAccounts/EMAIL:generateAccessToken; RequireBearer
// has already checked the caller's token.
func (s *TokenServer) impersonate(r *http.Request) (any, *httpError) {
	email, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, impersonatePath), ":generateAccessToken")
	if r.Method != http.MethodPost || !ok || email == "" {
		return nil, googleError(refuse(codes.NotFound, "The requested URL was not found on this server."))
	}
	caller, _ := bearer(r.Header.Get("Authorization"))
	info, _ := s.Lookup(caller)
	if !slices.Contains(info.impersonable, email) {
		return nil, googleError(refuse(codes.PermissionDenied, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."))
	}
	var req struct {
		Scope    []string `json:"scope"`
		Lifetime string   `json:"lifetime"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, googleError(invalid("Invalid JSON payload received: %s", err))
	}
	if len(req.Scope) == 0 {
		return nil, googleError(invalid("Scope required."))
	}
	lifetime := s.cfg.tokenLifetime
	if req.Lifetime != "" {
		d, err := time.ParseDuration(req.Lifetime)
		if err != nil || d <= 0 || d > 12*time.Hour {
			return nil, googleError(invalid("Invalid value at 'lifetime': %s", req.Lifetime))
		}
		lifetime = min(d, lifetime)
	}
	token := s.issue(TokenInfo{Principal: email, Scopes: req.Scope, Grant: "impersonation"}, lifetime, func(st *TokenStats) { st.Impersonations++ })
	return map[string]string{"accessToken": token, "expireTime": s.cfg.now().Add(lifetime).UTC().Format(time.RFC3339)}, nil
}
