package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// offline is an HTTP transport that refuses every request, so that fuzzed credentials that parse never
// reach a network.
type offline struct{}

func (offline) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

// keyFields are the fields of a credentials file that hold key material.
var keyFields = []string{"private_key", "client_secret", "refresh_token"}

// FuzzCredentials loads arbitrary bytes as the GOOGLE_APPLICATION_CREDENTIALS file: it must not panic,
// any error must be a *CredentialsError naming the variable, and no error may show key material.
func FuzzCredentials(f *testing.F) {
	f.Add([]byte(`{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n","client_email":"a@p.iam.gserviceaccount.com"}`))
	f.Add([]byte(`{"type":"external_account","audience":"//iam.googleapis.com/x","subject_token_type":"urn:ietf:params:oauth:token-type:jwt","token_url":"http://127.0.0.1:1/v1/token","credential_source":{"file":"/nonexistent"}}`))
	f.Add([]byte("\x00\xff{garbage"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "credentials.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: offline{}})
		_, err := Credentials(ctx, getenv(map[string]string{CredentialsEnv: path}))
		if err == nil {
			return // only a file that yields a token without a network: none should, but it is not an error
		}
		var ce *CredentialsError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), CredentialsEnv) {
			t.Fatalf("the error is not a *CredentialsError naming %s: %v", CredentialsEnv, err)
		}
		msg := err.Error()
		benign := authHint + path + CredentialsEnv
		for _, v := range keyMaterial(data) {
			if len(v) >= 16 && strings.Contains(msg, v) && !strings.Contains(benign, v) {
				t.Fatalf("the error shows key material %q: %v", v, err)
			}
		}
	})
}

// keyMaterial is what data holds in keyFields, at the top level, if it is a JSON object.
func keyMaterial(data []byte) []string {
	var fields map[string]any
	if json.Unmarshal(data, &fields) != nil {
		return nil
	}
	var out []string
	for _, k := range keyFields {
		if s, ok := fields[k].(string); ok {
			out = append(out, s)
		}
	}
	return out
}
