package action

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sethvargo/go-githubactions"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

// TestRunBadInput runs the whole action, as main does, on one malformed input at a time: each is
// answered by exactly one error annotation that names the input and says what to do, and no stand-in
// of a Google API is called.
func TestRunBadInput(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const sec = "s3cr3t-VALUE-xyz" // stands for a secret value; no annotation may show it
	const creds = gcp.CredentialsEnv
	cases := []struct {
		name   string
		change map[string]string
		input  string // what the annotation names: "input NAME", or the variable
		says   string // part of what it must say
	}{
		{"project too short", map[string]string{"INPUT_PROJECT_ID": "proj"}, "input project_id", "6 to 30"},
		{"project ends with hyphen", map[string]string{"INPUT_PROJECT_ID": "my-project-"}, "input project_id", "project ID"},
		{"region upper case", map[string]string{"INPUT_REGION": "US-CENTRAL1"}, "input region", "us-central1"},
		{"service 50 chars", map[string]string{"INPUT_SERVICE": "a" + strings.Repeat("b", 49)}, "input service", "up to 49"},
		{"service ends with hyphen", map[string]string{"INPUT_SERVICE": "mlflow-"}, "input service", "not ending with a hyphen"},
		{"service starts with digit", map[string]string{"INPUT_SERVICE": "1mlflow"}, "input service", "starting with a letter"},
		{"image upper case", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/p/R/mlflow"}, "input image", "without tag"},
		{"image AR short project", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/abc/repo/mlflow"}, "input image", "not a project ID"},
		{"image AR no image", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/my-project/repo"}, "input image", "PROJECT/REPOSITORY/IMAGE"},
		{"base image bad tag", map[string]string{"INPUT_BASE_IMAGE": "ghcr.io/mlflow/mlflow:bad tag"}, "input base_image", "image reference"},
		{"secret name with dot", map[string]string{"INPUT_BACKEND_STORE_SECRET": "db.url"}, "input backend_store_secret", "Secret Manager secret name"},
		{"secret name 256 chars", map[string]string{"INPUT_BACKEND_STORE_SECRET": strings.Repeat("s", 256)}, "input backend_store_secret", "Secret Manager secret name"},
		{"secret pasted as name", map[string]string{"INPUT_PASSWORD_SECRET": "pw " + sec}, "input password_secret", "Secret Manager secret name"},
		{"secret version zero", map[string]string{"INPUT_USERNAME_SECRET": "user:0"}, "input username_secret", "latest or a number"},
		{"secret versions", map[string]string{"INPUT_SECRET_VERSIONS": "newest"}, "input secret_versions", "use pinned"},
		{"memory units", map[string]string{"INPUT_MEMORY": "2G"}, "input memory", "512Mi to 32Gi"},
		{"memory fraction", map[string]string{"INPUT_MEMORY": "1.5Gi"}, "input memory", "512Mi to 32Gi"},
		{"cpu plus sign", map[string]string{"INPUT_CPU": "+1"}, "input cpu", "1, 2, 4, 6 or 8"},
		{"cpu fraction", map[string]string{"INPUT_CPU": "0.5"}, "input cpu", "1, 2, 4, 6 or 8"},
		{"duration unit", map[string]string{"INPUT_TIMEOUT": "5 minutes"}, "input timeout", "whole seconds"},
		{"duration negative", map[string]string{"INPUT_TIMEOUT": "-30s"}, "input timeout", "whole seconds"},
		{"wait fraction", map[string]string{"INPUT_WAIT_TIMEOUT": "90.5s"}, "input wait_timeout", "whole seconds"},
		{"boolean yes", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "yes"}, "input allow_unauthenticated", "true or false"},
		{"secret item without ref", map[string]string{"INPUT_SECRETS": "API_KEY="}, "input secrets", "ENV=secret"},
		{"secret value pasted", map[string]string{"INPUT_SECRETS": "API_KEY=" + sec + " !"}, "input secrets", "Secret Manager secret name"},
		{"mount colon", map[string]string{"INPUT_SECRETS": "/secrets/a:b=key"}, "input secrets", "':'"},
		{"mount relative parts", map[string]string{"INPUT_SECRETS": "/secrets/../etc/x=key"}, "input secrets", "own directory"},
		{"mount etc", map[string]string{"INPUT_SECRETS": "/etc/app.json=key"}, "input secrets", "/etc is a directory the image needs"},
		{"mounts nested", map[string]string{"INPUT_SECRETS": "/secrets/a=one\n/secrets/inner/b=two"}, "input secrets", "nested"},
		{"mount same file", map[string]string{"INPUT_SECRETS": "/secrets/a=one:1\n/secrets/a=one:2"}, "input secrets", "already mounted as /secrets/a"},
		{"secret env reserved", map[string]string{"INPUT_SECRETS": "K_SERVICE=key"}, "input secrets", "Cloud Run sets K_SERVICE"},
		{"env server auth", map[string]string{"INPUT_ENV_VARS": "DEPLOY_MLFLOW_AUTH=iam"}, "input env_vars", "use the input auth"},
		{"env port", map[string]string{"INPUT_ENV_VARS": "PORT=9000"}, "input env_vars", "Cloud Run sets PORT"},
		{"env no equals", map[string]string{"INPUT_ENV_VARS": "JUSTAKEY"}, "input env_vars", "KEY=VALUE"},
		{"env bad name", map[string]string{"INPUT_ENV_VARS": "MY-KEY=" + sec}, "input env_vars", "letters, digits and underscores"},
		{"env twice", map[string]string{"INPUT_ENV_VARS": "A=" + sec + "\nA=2"}, "input env_vars", "set each variable once"},
		{"env and secret", map[string]string{"INPUT_ENV_VARS": "TOKEN=" + sec, "INPUT_SECRETS": "TOKEN=tok"}, "input env_vars", "also set by secrets"},
		{"auth unknown", map[string]string{"INPUT_AUTH": "oidc"}, "input auth", "mlflow (MLflow's own users and permissions)"},
		{"mlflow without admin password", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_PASSWORD_SECRET": ""}, "input password_secret", "the first admin's password"},
		{"mlflow private", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_ALLOW_UNAUTHENTICATED": "false"}, "input allow_unauthenticated", "with auth: mlflow the service must be public"},
		{"permission unknown", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "WRITE"}, "input default_permission", "EDIT, MANAGE or NO_PERMISSIONS"},
		{"permission with basic", map[string]string{"INPUT_DEFAULT_PERMISSION": "READ"}, "input default_permission", "only used when auth is mlflow"},
		{"flask with basic", map[string]string{"INPUT_FLASK_SECRET_KEY_SECRET": "k " + sec}, "input flask_secret_key_secret", "only used when auth is mlflow"},
		{"flask value pasted", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_FLASK_SECRET_KEY_SECRET": "k " + sec}, "input flask_secret_key_secret", "Secret Manager secret name"},
		{"kek value pasted", map[string]string{"INPUT_KEK_PASSPHRASE_SECRET": "pass " + sec}, "input kek_passphrase_secret", "Secret Manager secret name"},
		{"workers zero", map[string]string{"INPUT_WORKERS": "0"}, "input workers", "from 1 to 32"},
		{"workers beyond memory", map[string]string{"INPUT_WORKERS": "4", "INPUT_MEMORY": "1Gi"}, "input workers", "more than memory 1Gi; lower workers to 3 or raise memory"},
		{"env workers", map[string]string{"INPUT_ENV_VARS": "MLFLOW_WORKERS=4"}, "input env_vars", "use the input workers"},
		{"env kek value", map[string]string{"INPUT_ENV_VARS": "MLFLOW_CRYPTO_KEK_PASSPHRASE=" + sec}, "input env_vars", "use the input kek_passphrase_secret"},
		{"label upper case", map[string]string{"INPUT_LABELS": "Team=ml"}, "input labels", "starting with a letter"},
		{"label value dot", map[string]string{"INPUT_LABELS": "version=1.2"}, "input labels", "up to 63"},
		{"label reserved namespace", map[string]string{"INPUT_LABELS": "run.googleapis.com/ingress=all"}, "input labels", "belong to Cloud Run"},
		{"label ours", map[string]string{"INPUT_LABELS": "commit-sha=abc"}, "input labels", "set by deploy-mlflow"},
		{"cloudsql two parts", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:db"}, "input cloudsql_instances", "PROJECT:REGION:INSTANCE"},
		{"service account not SA", map[string]string{"INPUT_SERVICE_ACCOUNT": "me@example.com"}, "input service_account", "gserviceaccount.com"},
		{"bucket ip", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://192.168.5.4/x"}, "input artifacts_destination", "IP address"},

		{"credentials unset", map[string]string{creds: ""}, creds, "google-github-actions/auth"},
		{"credentials missing", map[string]string{creds: filepath.Join(dir, "nothing.json")}, creds, "cannot read it"},
		{"credentials unreadable", map[string]string{creds: dir}, creds, "cannot read it"},
		{"credentials not JSON", map[string]string{creds: file("garbage.json", "not json at all")}, creds, "is not a JSON credentials file"},
		{"credentials OAuth client", map[string]string{creds: file("client.json", `{"installed":{"client_id":"x","client_secret":"`+sec+`"}}`)}, creds, "use a service-account key"},
		{"credentials wrong type", map[string]string{creds: file("gdch.json", `{"type":"gdch_service_account","private_key":"`+sec+`"}`)}, creds, "use a service-account key"},
		{"credentials broken key", map[string]string{creds: file("broken.json", `{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"`+sec+`","token_uri":"`+c.tokens.TokenURL()+`"}`)}, creds, "service_account"},
		{"server binary missing", map[string]string{ServerBinaryEnv: filepath.Join(dir, "no-server")}, ServerBinaryEnv, "go build"},
		{"base image arm64 only", map[string]string{"INPUT_BASE_IMAGE": armOnlyBase(t)}, "input base_image", "linux/arm64 image; Cloud Run needs linux/amd64"},
	}
	if n := len(cases); n < 40 {
		t.Fatalf("only %d cases", n)
	}
	tokensBefore := c.tokens.Stats()
	calls := func() string {
		var b strings.Builder
		if st := c.tokens.Stats(); st != tokensBefore {
			fmt.Fprintf(&b, "token server %+v; ", st)
		}
		if n := c.registry.Counts().Requests; n != 0 {
			fmt.Fprintf(&b, "Artifact Registry %d requests; ", n)
		}
		for what, m := range map[string]map[string]int{"Cloud Run": c.run.CallCounts(), "Secret Manager": c.secrets.CallCounts(), "Resource Manager": c.projects.CallCounts()} {
			if len(m) != 0 {
				fmt.Fprintf(&b, "%s %v; ", what, m)
			}
		}
		return b.String()
	}
	if got := calls(); got != "" {
		t.Fatalf("the stand-ins were called before the test began: %s", got)
	}
	t.Run("group", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				env := maps.Clone(c.env)
				maps.Copy(env, tc.change)
				getenv := func(k string) string { return env[k] }
				var out bytes.Buffer
				_, err := Run(context.Background(), getenv, &out)
				if err == nil {
					t.Fatalf("the action succeeded:\n%s", out.String())
				}
				// As main does.
				Annotate(githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(&out)), err)
				var errorLines []string
				for _, line := range strings.Split(out.String(), "\n") {
					if strings.HasPrefix(line, "::error") {
						errorLines = append(errorLines, line)
					}
				}
				if len(errorLines) != 1 {
					t.Fatalf("want exactly one error annotation, got %d:\n%s", len(errorLines), out.String())
				}
				if !strings.Contains(errorLines[0], tc.input) || !strings.Contains(errorLines[0], tc.says) {
					t.Errorf("the annotation does not name %s and say %q:\n%s", tc.input, tc.says, errorLines[0])
				}
				if strings.Contains(out.String(), sec) {
					t.Errorf("the log shows a value that may be secret:\n%s", out.String())
				}
				if got := calls(); got != "" {
					t.Errorf("a stand-in was called: %s", got)
				}
			})
		}
	})
}

// armOnlyBase is a registry, as ghcr.io, holding an MLflow-like image for linux/arm64 only.
func armOnlyBase(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	img, err := gcptest.NewBaseImage(types.DockerManifestSchema2, "arm64", 2, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/mlflow/mlflow:arm64-only"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}
