package gcp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCredentialsServiceAccountKey(t *testing.T) {
	t.Parallel()
	tokens := gcptest.StartTokenServer(t)
	key, err := tokens.ServiceAccountKey(t.TempDir(), gcptest.DefaultProjectID, "deployer@"+gcptest.DefaultProjectID+".iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := Credentials(context.Background(), getenv(map[string]string{CredentialsEnv: key}))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	info, ok := tokens.Lookup(tok.AccessToken)
	if !ok || info.Grant != "jwt-bearer" || !strings.HasPrefix(info.Principal, "deployer@") {
		t.Errorf("token %v not issued for the key's signed JWT: %+v", ok, info)
	}
	if got := tokens.Stats().JWTGrants; got != 1 {
		t.Errorf("the token endpoint verified %d signed JWTs, want 1 (one token, reused)", got)
	}
}

func TestCredentialsWorkloadIdentityFederation(t *testing.T) {
	t.Parallel()
	for _, impersonate := range []string{"", "deployer@" + gcptest.DefaultProjectID + ".iam.gserviceaccount.com"} {
		tokens := gcptest.StartTokenServer(t)
		file, err := tokens.ExternalAccountFile(t.TempDir(), gcptest.WorkloadIdentity{ServiceAccount: impersonate})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := Credentials(context.Background(), getenv(map[string]string{CredentialsEnv: file}))
		if err != nil {
			t.Fatalf("impersonate %q: %v", impersonate, err)
		}
		tok, _ := ts.Token()
		if !tokens.Valid(tok.AccessToken) {
			t.Errorf("impersonate %q: the token was not issued by the token server", impersonate)
		}
		st := tokens.Stats()
		if st.OIDCTokens != 1 || st.STSExchanges != 1 {
			t.Errorf("impersonate %q: OIDC tokens %d, STS exchanges %d; want 1 and 1", impersonate, st.OIDCTokens, st.STSExchanges)
		}
		if want := min(len(impersonate), 1); st.Impersonations != want {
			t.Errorf("impersonate %q: %d impersonations, want %d", impersonate, st.Impersonations, want)
		}
	}
}

func TestCredentialsErrors(t *testing.T) {
	t.Parallel()
	tokens := gcptest.StartTokenServer(t)
	dir := t.TempDir()
	revoked, err := tokens.ServiceAccountKey(dir, gcptest.DefaultProjectID, "gone@"+gcptest.DefaultProjectID+".iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	tokens.RevokeKeys("gone@" + gcptest.DefaultProjectID + ".iam.gserviceaccount.com")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path, says string
	}{
		{"unset", "", "run google-github-actions/auth"},
		{"missing file", filepath.Join(dir, "gha-creds-gone.json"), "after actions/checkout"},
		{"not json", write("bad.json", "not json"), "not a JSON credentials file"},
		{"unknown type", write("odd.json", `{"type":"api_key"}`), "service-account key"},
		{"revoked key", revoked, "could not get an access token"},
	}
	for _, tc := range cases {
		_, err := Credentials(context.Background(), getenv(map[string]string{CredentialsEnv: tc.path}))
		var ce *CredentialsError
		if !errors.As(err, &ce) {
			t.Errorf("%s: error %v is not a *CredentialsError", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), CredentialsEnv) {
			t.Errorf("%s: error %q does not say %q and name %s", tc.name, err, tc.says, CredentialsEnv)
		}
	}
}
