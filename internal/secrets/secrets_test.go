package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

const project = gcptest.DefaultProjectID

// client reaches sm with a token that auth accepts.
func client(t *testing.T, tokens *gcptest.TokenServer, addr string) *secretmanager.Client {
	t.Helper()
	ctx := context.Background()
	ts, err := tokens.TokenSource(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := gcp.ClientOptions(addr, ts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ref(t *testing.T, input, text string) config.SecretRef {
	t.Helper()
	r, err := config.ParseSecretRef(text, project)
	if err != nil {
		t.Fatal(err)
	}
	r.Input = input
	return r
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := gcptest.StartTokenServer(t)
	sm := gcptest.StartSecretManager(t, tokens)
	sm.AddSecret(project, "DB_url", []byte("postgresql://u:p@/db"))
	sm.AddSecret(project, "mlflow_id", []byte("admin"))
	sm.AddSecret(project, "mlflow_pass", []byte("one"))
	disabled := sm.AddSecret(project, "mlflow_pass", []byte("two"))
	destroyed := sm.AddSecret(project, "api_key", []byte("old"))
	sm.AddSecret(project, "api_key", []byte("new"))
	c := client(t, tokens, sm.Addr())
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: destroyed}); err != nil {
		t.Fatal(err)
	}

	numbers, err := Check(ctx, c, []config.SecretRef{ref(t, "backend_store_secret", "DB_url"), ref(t, "username_secret", "mlflow_id:1"),
		ref(t, "password_secret", "mlflow_pass:1"), ref(t, "secrets", "api_key:2")})
	if err != nil {
		t.Errorf("existing enabled versions refused: %v", err)
	}
	// Secret Manager names versions by project number; the caller learns it.
	if diff := cmp.Diff(map[string]string{project: gcptest.DefaultProjectNumber}, numbers); diff != "" {
		t.Errorf("project numbers (-want +got):\n%s", diff)
	}

	cases := []struct {
		name string
		ref  config.SecretRef
		says []string // the secret, the input and the fix
	}{
		{"secret does not exist", ref(t, "artifacts_destination_secret", "bucket_url"),
			[]string{"bucket_url", "artifacts_destination_secret", "does not exist in project " + project, "gcloud secrets create bucket_url --data-file=- --project=" + project}},
		{"version does not exist", ref(t, "username_secret", "mlflow_id:7"),
			[]string{"mlflow_id", "username_secret", "has no version 7", "gcloud secrets versions list mlflow_id --project=" + project}},
		{"version disabled", ref(t, "password_secret", "mlflow_pass:2"),
			[]string{"mlflow_pass", "password_secret", "version 2 is disabled", "gcloud secrets versions enable 2 --secret=mlflow_pass --project=" + project}},
		// latest is the newest version, here the disabled one: Cloud Run could not read it either.
		{"latest disabled", ref(t, "password_secret", "mlflow_pass"),
			[]string{"mlflow_pass", "password_secret", "version 2 is disabled", "gcloud secrets versions enable 2", "naming it in input password_secret (mlflow_pass:NUMBER)"}},
		{"version destroyed", ref(t, "secrets", "api_key:1"),
			[]string{"api_key", "input secrets", "version 1 is DESTROYED", "gcloud secrets versions add api_key --data-file=- --project=" + project}},
		// A project the deploying identity may not read answers PERMISSION_DENIED.
		{"permission denied", ref(t, "password_secret", "projects/other-project/secrets/vault_pass"),
			[]string{"vault_pass", "password_secret", "could not be looked up", "Permission", "roles/secretmanager.viewer on project other-project"}},
	}
	for _, tc := range cases {
		_, err := Check(ctx, c, []config.SecretRef{tc.ref})
		var me *MissingError
		if !errors.As(err, &me) {
			t.Errorf("%s: error %v is not a *MissingError", tc.name, err)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, s)
			}
		}
	}

	// Every problem is reported at once.
	_, err = Check(ctx, c, []config.SecretRef{ref(t, "backend_store_secret", "nope1"), ref(t, "username_secret", "nope2"), ref(t, "password_secret", "mlflow_pass:1")})
	if err == nil || !strings.Contains(err.Error(), "nope1") || !strings.Contains(err.Error(), "nope2") {
		t.Errorf("want both missing secrets named, got %v", err)
	}
	if sm.Calls("AccessSecretVersion") != 0 {
		t.Error("Check read a secret's value; it must read only metadata")
	}
}

// refusing is Secret Manager refusing every caller, as it does a principal without the permission.
type refusing struct{}

func (refusing) Authenticate(string) (string, error) {
	return "", fmt.Errorf("deployer@test-project.iam.gserviceaccount.com: %w", gcptest.ErrInsufficientScope)
}

func TestCheckRefusedPrincipal(t *testing.T) {
	t.Parallel()
	tokens := gcptest.StartTokenServer(t)
	sm := gcptest.StartSecretManager(t, refusing{})
	_, err := Check(context.Background(), client(t, tokens, sm.Addr()), []config.SecretRef{ref(t, "backend_store_secret", "DB_url")})
	var me *MissingError
	if !errors.As(err, &me) {
		t.Fatalf("a refused lookup gave %v, want a *MissingError", err)
	}
	for _, s := range []string{"DB_url", "backend_store_secret", "could not be looked up", "roles/secretmanager.viewer on project " + project} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}
