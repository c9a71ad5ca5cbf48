package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := gcptest.StartTokenServer(t)
	sm := gcptest.StartSecretManager(t, tokens)
	project := gcptest.DefaultProjectID
	sm.AddSecret(project, "DB_url", []byte("postgresql://u:p@/db"))
	sm.AddSecret(project, "mlflow_id", []byte("admin"))
	sm.AddSecret(project, "mlflow_pass", []byte("one"))
	second := sm.AddSecret(project, "mlflow_pass", []byte("two"))

	ts, err := tokens.TokenSource(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := gcp.ClientOptions(sm.Addr(), ts)
	if err != nil {
		t.Fatal(err)
	}
	client, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if _, err := client.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: second}); err != nil {
		t.Fatal(err)
	}

	ref := func(input, text string) config.SecretRef {
		r, err := config.ParseSecretRef(text, project)
		if err != nil {
			t.Fatal(err)
		}
		r.Input = input
		return r
	}
	if err := Check(ctx, client, []config.SecretRef{ref("backend_store_secret", "DB_url"), ref("username_secret", "mlflow_id:1"), ref("password_secret", "mlflow_pass:1")}); err != nil {
		t.Errorf("existing enabled versions refused: %v", err)
	}

	cases := []struct {
		ref  config.SecretRef
		says []string
	}{
		{ref("artifacts_destination_secret", "bucket_url"), []string{"bucket_url", "artifacts_destination_secret", "does not exist", "gcloud secrets create bucket_url"}},
		{ref("username_secret", "mlflow_id:7"), []string{"has no version 7", "gcloud secrets versions list mlflow_id"}},
		{ref("password_secret", "mlflow_pass:2"), []string{"version 2 is disabled", "gcloud secrets versions enable 2 --secret=mlflow_pass"}},
		// latest is the newest version, here the disabled one: Cloud Run could not read it either.
		{ref("password_secret", "mlflow_pass"), []string{"is disabled"}},
	}
	for _, tc := range cases {
		err := Check(ctx, client, []config.SecretRef{tc.ref})
		var me *MissingError
		if !errors.As(err, &me) {
			t.Errorf("%s: error %v is not a *MissingError", tc.ref, err)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tc.ref, err, s)
			}
		}
	}

	// Every problem is reported at once.
	err = Check(ctx, client, []config.SecretRef{ref("backend_store_secret", "nope1"), ref("username_secret", "nope2"), ref("password_secret", "mlflow_pass:1")})
	if err == nil || !strings.Contains(err.Error(), "nope1") || !strings.Contains(err.Error(), "nope2") {
		t.Errorf("want both missing secrets named, got %v", err)
	}
	if sm.Calls("AccessSecretVersion") != 0 {
		t.Error("Check read a secret's value; it must read only metadata")
	}
}
