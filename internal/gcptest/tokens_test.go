package gcptest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

func TestServiceAccountKey(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	path, err := tokens.ServiceAccountKey(t.TempDir(), "my-project", "deployer@my-project.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := google.CredentialsFromJSONWithType(context.Background(), b, google.ServiceAccount, CloudPlatformScope)
	if err != nil {
		t.Fatal(err)
	}
	if creds.ProjectID != "my-project" {
		t.Errorf("ProjectID = %q, want my-project", creds.ProjectID)
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	info, ok := tokens.Lookup(tok.AccessToken)
	if !ok || !tokens.Valid(tok.AccessToken) {
		t.Fatalf("the issued token %q is not valid", tok.AccessToken)
	}
	if info.Principal != "deployer@my-project.iam.gserviceaccount.com" || info.Grant != "jwt-bearer" {
		t.Errorf("token info = %+v", info)
	}
	if time.Until(tok.Expiry) < 50*time.Minute {
		t.Errorf("token expires at %v, want about an hour from now", tok.Expiry)
	}
	if got := tokens.Stats(); got.JWTGrants != 1 || got.Refused != 0 {
		t.Errorf("stats = %+v, want one verified JWT grant", got)
	}
	if p, err := tokens.Authenticate(tok.AccessToken); err != nil || p != info.Principal {
		t.Errorf("Authenticate = %q, %v", p, err)
	}
}

// TestServiceAccountKeyRefused changes a key file the way things go wrong in practice and checks that the
// token endpoint refuses it as Google's does.
func TestServiceAccountKeyRefused(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(otherKey)
	tests := []struct {
		name     string
		edit     func(key map[string]string)
		revoke   bool
		scopes   []string
		wantCode string
	}{
		{name: "signed with another key", edit: func(k map[string]string) {
			k["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}, wantCode: "invalid_grant"},
		{name: "unknown key id", edit: func(k map[string]string) { k["private_key_id"] = "0123" }, wantCode: "invalid_client"},
		{name: "client email of someone else", edit: func(k map[string]string) { k["client_email"] = "intruder@evil.iam.gserviceaccount.com" }, wantCode: "invalid_grant"},
		{name: "revoked key", revoke: true, wantCode: "invalid_client"},
		{name: "non-Google scope", scopes: []string{"openid"}, wantCode: "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := strings.ReplaceAll(tt.name, " ", "-") + "@test-project.iam.gserviceaccount.com"
			b, err := tokens.ServiceAccountKeyJSON(DefaultProjectID, email)
			if err != nil {
				t.Fatal(err)
			}
			var key map[string]string
			if err := json.Unmarshal(b, &key); err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(key)
			}
			if tt.revoke {
				tokens.RevokeKeys(email)
			}
			b, _ = json.Marshal(key)
			scopes := tt.scopes
			if scopes == nil {
				scopes = []string{CloudPlatformScope}
			}
			creds, err := google.CredentialsFromJSONWithType(context.Background(), b, google.ServiceAccount, scopes...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = creds.TokenSource.Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("Token error = %v, want a RetrieveError", err)
			}
			// The JWT flow leaves the body unparsed: read the OAuth error from it.
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(re.Body, &body); err != nil || body.Error != tt.wantCode {
				t.Errorf("error body = %s, want error %q", re.Body, tt.wantCode)
			}
		})
	}
	if got := tokens.Stats(); got.JWTGrants != 0 || got.Refused != len(tests) {
		t.Errorf("stats = %+v, want no grant and %d refusals", got, len(tests))
	}
}

func TestTokenEndpointRefusesOtherGrants(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	tests := []struct {
		name string
		form url.Values
		want int
	}{
		{"client credentials", url.Values{"grant_type": {"client_credentials"}}, http.StatusBadRequest},
		{"jwt grant without assertion", url.Values{"grant_type": {jwtBearerGrant}}, http.StatusBadRequest},
		{"jwt grant with garbage", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {"a.b.c"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.PostForm(tokens.TokenURL(), tt.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error string `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want || body.Error == "" {
				t.Errorf("status %d, error %q; want %d with an OAuth error", resp.StatusCode, body.Error, tt.want)
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tokens := StartTokenServer(t, WithTokenLifetime(90*time.Second), withClock(clock))
	tok, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(89 * time.Second)
	if !tokens.Valid(tok.AccessToken) {
		t.Fatal("a token 1s before its expiry is not valid")
	}
	clock.advance(time.Second)
	if tokens.Valid(tok.AccessToken) {
		t.Error("an expired token is still valid")
	}
	if _, err := tokens.Authenticate(tok.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Authenticate(expired) = %v, want ErrInvalidToken", err)
	}
}

func TestExternalAccount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		identity           WorkloadIdentity
		wantPrincipal      string
		wantImpersonations int
	}{
		{
			name:          "direct workload identity federation",
			identity:      WorkloadIdentity{ProjectNumber: "555", Pool: "gh", Provider: "repo"},
			wantPrincipal: "principal://iam.googleapis.com/projects/555/locations/global/workloadIdentityPools/gh/subject/repo:octo-org/octo-repo:ref:refs/heads/main",
		},
		{
			name:               "through a service account",
			identity:           WorkloadIdentity{ServiceAccount: "deployer@test-project.iam.gserviceaccount.com"},
			wantPrincipal:      "deployer@test-project.iam.gserviceaccount.com",
			wantImpersonations: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := StartTokenServer(t)
			path, err := tokens.ExternalAccountFile(t.TempDir(), tt.identity)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			creds, err := google.CredentialsFromJSONWithType(context.Background(), b, google.ExternalAccount, CloudPlatformScope)
			if err != nil {
				t.Fatal(err)
			}
			if creds.ProjectID != "" {
				t.Errorf("ProjectID = %q, want none for external_account", creds.ProjectID)
			}
			tok, err := creds.TokenSource.Token()
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			principal, err := tokens.Authenticate(tok.AccessToken)
			if err != nil || principal != tt.wantPrincipal {
				t.Errorf("Authenticate = %q, %v; want %q", principal, err, tt.wantPrincipal)
			}
			want := TokenStats{OIDCTokens: 1, STSExchanges: 1, Impersonations: tt.wantImpersonations}
			if got := tokens.Stats(); got != want {
				t.Errorf("stats = %+v, want %+v", got, want)
			}
		})
	}
}

// TestExternalAccountRefused breaks a credentials file the ways a misconfigured workflow would and checks
// that the exchange fails where Google's would.
func TestExternalAccountRefused(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	tests := []struct {
		name    string
		edit    func(creds map[string]any)
		wantErr string
	}{
		{"wrong request token", func(c map[string]any) {
			c["credential_source"].(map[string]any)["headers"] = map[string]string{"Authorization": "Bearer stale"}
		}, "status code 401"},
		{"OIDC token for another audience", func(c map[string]any) {
			src := c["credential_source"].(map[string]any)
			src["url"] = strings.Replace(src["url"].(string), "audience=", "audience=https%3A%2F%2Fgithub.com%2Focto-org&x=", 1)
		}, "invalid_grant"},
		{"provider that does not exist", func(c map[string]any) {
			c["audience"] = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/none/providers/none"
		}, "invalid_target"},
		{"wrong subject token type", func(c map[string]any) {
			c["subject_token_type"] = "urn:ietf:params:oauth:token-type:saml2"
		}, "invalid_request"},
		{"service account the provider may not impersonate", func(c map[string]any) {
			c["service_account_impersonation_url"] = tokens.URL() + impersonatePath + "admin@test-project.iam.gserviceaccount.com:generateAccessToken"
		}, "status code 403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tokens.ExternalAccountJSON(WorkloadIdentity{})
			if err != nil {
				t.Fatal(err)
			}
			var creds map[string]any
			if err := json.Unmarshal(b, &creds); err != nil {
				t.Fatal(err)
			}
			tt.edit(creds)
			b, _ = json.Marshal(creds)
			c, err := google.CredentialsFromJSONWithType(context.Background(), b, google.ExternalAccount, CloudPlatformScope)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.TokenSource.Token()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Token error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestExternalAccountFileLayout(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	b, err := tokens.ExternalAccountJSON(WorkloadIdentity{ProjectNumber: "42", Pool: "p", Provider: "pr", ServiceAccount: "sa@x.iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		Type             string `json:"type"`
		Audience         string `json:"audience"`
		SubjectTokenType string `json:"subject_token_type"`
		TokenURL         string `json:"token_url"`
		Impersonation    string `json:"service_account_impersonation_url"`
		Source           struct {
			URL     string            `json:"url"`
			Headers map[string]string `json:"headers"`
			Format  map[string]string `json:"format"`
		} `json:"credential_source"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"type":               {creds.Type, "external_account"},
		"audience":           {creds.Audience, "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/p/providers/pr"},
		"subject_token_type": {creds.SubjectTokenType, "urn:ietf:params:oauth:token-type:jwt"},
		"token_url":          {creds.TokenURL, tokens.URL() + "/sts/v1/token"},
		"impersonation":      {creds.Impersonation, tokens.URL() + "/iamcredentials/v1/projects/-/serviceAccounts/sa@x.iam.gserviceaccount.com:generateAccessToken"},
		"format":             {creds.Source.Format["type"] + "/" + creds.Source.Format["subject_token_field_name"], "json/value"},
	}
	for field, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", field, c[0], c[1])
		}
	}
	u, err := url.Parse(creds.Source.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("audience"); got != "https://iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/p/providers/pr" {
		t.Errorf("OIDC audience = %q", got)
	}
	if !strings.HasPrefix(creds.Source.Headers["Authorization"], "Bearer ") {
		t.Errorf("credential_source headers = %v, want a bearer request token", creds.Source.Headers)
	}
}
