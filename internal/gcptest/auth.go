package gcptest

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Authenticator decides whether an access token may call a stand-in, and on whose behalf. A *TokenServer
// is one (it accepts the tokens it issued); StaticTokens makes one without a token server.
type Authenticator interface {
	// Authenticate returns the principal (an email or a federated principal) the token stands for, or an
	// error wrapping ErrMissingToken, ErrInvalidToken or ErrInsufficientScope.
	Authenticate(token string) (principal string, err error)
}

// Why a request's credentials were refused.
var (
	ErrMissingToken      = errors.New("request is missing required authentication credential")
	ErrInvalidToken      = errors.New("request had invalid authentication credentials")
	ErrInsufficientScope = errors.New("request had insufficient authentication scopes")
)

// Google's own wording, for clients that show the message.
const (
	msgMissing = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	msgInvalid = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	msgScope   = "Request had insufficient authentication scopes."
)

// StaticTokens accepts exactly the given tokens, all standing for principal.
func StaticTokens(principal string, tokens ...string) Authenticator {
	set := map[string]bool{}
	for _, t := range tokens {
		set[t] = true
	}
	return staticTokens{principal: principal, tokens: set}
}

type staticTokens struct {
	principal string
	tokens    map[string]bool
}

func (s staticTokens) Authenticate(token string) (string, error) {
	switch {
	case token == "":
		return "", ErrMissingToken
	case !s.tokens[token]:
		return "", ErrInvalidToken
	}
	return s.principal, nil
}

type principalKey struct{}

// PrincipalFrom returns the principal that the authentication interceptor or middleware accepted for the
// request whose context this is.
func PrincipalFrom(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(principalKey{}).(string)
	return p, ok
}

// UnaryAuth is a gRPC interceptor that refuses calls without an `authorization: Bearer` token the
// Authenticator accepts, as Google does: UNAUTHENTICATED, or PERMISSION_DENIED for a token without the
// needed scope. Handlers find the accepted principal with PrincipalFrom.
func UnaryAuth(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := authenticateGRPC(ctx, a)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func authenticateGRPC(ctx context.Context, a Authenticator) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	for _, v := range md.Get("authorization") {
		if t, ok := bearer(v); ok {
			token = t
			break
		}
	}
	principal, err := authenticate(a, token)
	if err != nil {
		return nil, authFailure(err)
	}
	return context.WithValue(ctx, principalKey{}, principal), nil
}

// RequireBearer is HTTP middleware that refuses requests without an `Authorization: Bearer` token the
// Authenticator accepts, with Google's JSON error body (401, or 403 for a token without the needed scope).
func RequireBearer(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := bearer(r.Header.Get("Authorization"))
		principal, err := authenticate(a, token)
		if err != nil {
			refused := authFailure(err)
			if refused.code == codes.Unauthenticated {
				w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
			}
			googleError(refused).write(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal)))
	})
}

func authenticate(a Authenticator, token string) (string, error) {
	if token == "" {
		return "", ErrMissingToken
	}
	return a.Authenticate(token)
}

// authFailure is Google's refusal of a request whose credentials the Authenticator refused.
func authFailure(err error) *refusal {
	switch {
	case errors.Is(err, ErrMissingToken):
		return refuse(codes.Unauthenticated, "%s", msgMissing)
	case errors.Is(err, ErrInsufficientScope):
		return refuse(codes.PermissionDenied, "%s", msgScope)
	default:
		return refuse(codes.Unauthenticated, "%s", msgInvalid)
	}
}

func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}
