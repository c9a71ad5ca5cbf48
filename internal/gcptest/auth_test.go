package gcptest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// bearerCredentials sends an oauth2 token on every call, also over plaintext loopback (grpc's own
// oauth.TokenSource insists on transport security).
type bearerCredentials struct{ ts oauth2.TokenSource }

func (b bearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := b.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

func (bearerCredentials) RequireTransportSecurity() bool { return false }

// dial connects to a gRPC stand-in, sending tokens from ts (none if ts is nil).
func dial(t *testing.T, addr string, ts oauth2.TokenSource) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if ts != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCredentials{ts}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serviceAccount returns the token source of a fresh service-account key issued by tokens, as the action
// builds it from GOOGLE_APPLICATION_CREDENTIALS.
func serviceAccount(t *testing.T, tokens *TokenServer, scopes ...string) oauth2.TokenSource {
	t.Helper()
	key, err := tokens.ServiceAccountKeyJSON(DefaultProjectID, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(scopes) == 0 {
		scopes = []string{CloudPlatformScope}
	}
	creds, err := google.CredentialsFromJSONWithType(context.Background(), key, google.ServiceAccount, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	return creds.TokenSource
}

func TestStaticTokens(t *testing.T) {
	t.Parallel()
	a := StaticTokens("ci@example.iam.gserviceaccount.com", "good")
	tests := []struct {
		token   string
		wantErr error
	}{
		{"good", nil},
		{"bad", ErrInvalidToken},
		{"", ErrMissingToken},
	}
	for _, tt := range tests {
		p, err := a.Authenticate(tt.token)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Authenticate(%q) error = %v, want %v", tt.token, err, tt.wantErr)
		}
		if err == nil && p != "ci@example.iam.gserviceaccount.com" {
			t.Errorf("Authenticate(%q) principal = %q", tt.token, p)
		}
	}
}

func TestUnaryAuth(t *testing.T) {
	t.Parallel()
	interceptor := UnaryAuth(StaticTokens("me", "good"))
	tests := []struct {
		name   string
		header []string
		want   codes.Code
	}{
		{"valid bearer", []string{"authorization", "Bearer good"}, codes.OK},
		{"unknown token", []string{"authorization", "Bearer nope"}, codes.Unauthenticated},
		{"basic instead of bearer", []string{"authorization", "Basic Z29vZA=="}, codes.Unauthenticated},
		{"no header", nil, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tt.header...))
			var principal string
			_, err := interceptor(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
				principal, _ = PrincipalFrom(ctx)
				return nil, nil
			})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v, want %v (%v)", got, tt.want, err)
			}
			if tt.want == codes.OK && principal != "me" {
				t.Errorf("principal = %q, want me", principal)
			}
		})
	}
}

func TestTokenServerMiddleware(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	good, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := serviceAccount(t, tokens, "https://www.googleapis.com/auth/devstorage.read_only").Token()
	if err != nil {
		t.Fatal(err)
	}
	h := tokens.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		w.Write([]byte(p))
	}))
	tests := []struct {
		name, header string
		want         int
	}{
		{"issued token", "Bearer " + good.AccessToken, http.StatusOK},
		{"token without cloud-platform", "Bearer " + narrow.AccessToken, http.StatusForbidden},
		{"made-up token", "Bearer ya29.madeup", http.StatusUnauthorized},
		{"no credentials", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without a WWW-Authenticate challenge")
			}
			if tt.want == http.StatusOK && rec.Body.String() != "deployer@"+DefaultProjectID+".iam.gserviceaccount.com" {
				t.Errorf("principal = %q", rec.Body)
			}
		})
	}
}
