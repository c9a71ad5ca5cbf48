package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseMalformed feeds one malformed input at a time (each a name or value Cloud Run, Artifact
// Registry or Secret Manager would refuse, or one the action cannot use) and expects exactly one
// *InputError, naming that input, saying what to do, and not echoing a value that may be a secret.
func TestParseMalformed(t *testing.T) {
	t.Parallel()
	const sec = "s3cr3t-VALUE-xyz" // stands for a secret value; it must never appear in an error
	cases := []struct {
		name   string
		change map[string]string
		input  string // the one input the error names
		says   string // part of what the error must say
		hidden string // a value the error must not show, if any
	}{
		{"project too short", map[string]string{"INPUT_PROJECT_ID": "proj"}, "project_id", "6 to 30", ""},
		{"project ends with hyphen", map[string]string{"INPUT_PROJECT_ID": "my-project-"}, "project_id", "project ID", ""},
		{"region", map[string]string{"INPUT_REGION": "US-CENTRAL1"}, "region", "us-central1", ""},
		{"service 50 chars", map[string]string{"INPUT_SERVICE": "a" + strings.Repeat("b", 49)}, "service", "up to 49", ""},
		{"service ends with hyphen", map[string]string{"INPUT_SERVICE": "mlflow-"}, "service", "not ending with a hyphen", ""},
		{"service starts with digit", map[string]string{"INPUT_SERVICE": "1mlflow"}, "service", "starting with a letter", ""},
		{"repository 64 chars", map[string]string{"INPUT_REPOSITORY": "r" + strings.Repeat("e", 63)}, "repository", "up to 63", ""},
		{"repository underscore", map[string]string{"INPUT_REPOSITORY": "my_repo"}, "repository", "lowercase letters, digits and hyphens", ""},
		{"image upper case", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/p/R/mlflow"}, "image", "without tag", ""},
		{"image bad AR project", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/Proj_1/repo/mlflow"}, "image", "without tag", ""},
		{"image AR short project", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/abc/repo/mlflow"}, "image", "not a project ID", ""},
		{"image AR no image", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/my-project/repo"}, "image", "PROJECT/REPOSITORY/IMAGE", ""},
		{"image AR bad repository", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/my-project/-repo/mlflow"}, "image", "not a repository ID", ""},
		{"base image", map[string]string{"INPUT_BASE_IMAGE": "ghcr.io/mlflow/mlflow:bad tag"}, "base_image", "image reference", ""},
		{"secret name with dot", map[string]string{"INPUT_BACKEND_STORE_SECRET": "db.url"}, "backend_store_secret", "Secret Manager secret name", ""},
		{"secret name 256 chars", map[string]string{"INPUT_BACKEND_STORE_SECRET": strings.Repeat("s", 256)}, "backend_store_secret", "Secret Manager secret name", ""},
		{"secret pasted as name", map[string]string{"INPUT_PASSWORD_SECRET": "pw " + sec}, "password_secret", "Secret Manager secret name", sec},
		{"secret version zero", map[string]string{"INPUT_USERNAME_SECRET": "user:0"}, "username_secret", "latest or a number", ""},
		{"secret versions", map[string]string{"INPUT_SECRET_VERSIONS": "newest"}, "secret_versions", "use pinned", ""},
		{"memory units", map[string]string{"INPUT_MEMORY": "2G"}, "memory", "512Mi to 32Gi", ""},
		{"memory fraction", map[string]string{"INPUT_MEMORY": "1.5Gi"}, "memory", "512Mi to 32Gi", ""},
		{"memory too much", map[string]string{"INPUT_MEMORY": "64Gi", "INPUT_CPU": "8"}, "memory", "512Mi to 32Gi", ""},
		{"cpu plus sign", map[string]string{"INPUT_CPU": "+1"}, "cpu", "1, 2, 4, 6 or 8", ""},
		{"cpu leading zero", map[string]string{"INPUT_CPU": "02"}, "cpu", "1, 2, 4, 6 or 8", ""},
		{"cpu fraction", map[string]string{"INPUT_CPU": "0.5"}, "cpu", "1, 2, 4, 6 or 8", ""},
		{"duration unit", map[string]string{"INPUT_TIMEOUT": "5 minutes"}, "timeout", "whole seconds", ""},
		{"duration negative", map[string]string{"INPUT_TIMEOUT": "-30s"}, "timeout", "whole seconds", ""},
		{"duration overflow", map[string]string{"INPUT_TIMEOUT": overflowSeconds}, "timeout", "whole seconds", ""},
		{"wait fraction", map[string]string{"INPUT_WAIT_TIMEOUT": "90.5s"}, "wait_timeout", "whole seconds", ""},
		{"boolean yes", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "yes"}, "allow_unauthenticated", "true or false", ""},
		{"boolean 1", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "1"}, "allow_unauthenticated", "true or false", ""},
		{"secret item without ref", map[string]string{"INPUT_SECRETS": "API_KEY="}, "secrets", "ENV=secret", ""},
		{"secret value pasted", map[string]string{"INPUT_SECRETS": "API_KEY=" + sec + " !"}, "secrets", "Secret Manager secret name", sec},
		{"mount colon", map[string]string{"INPUT_SECRETS": "/secrets/a:b=key"}, "secrets", "':'", ""},
		{"mount root", map[string]string{"INPUT_SECRETS": "/=key"}, "secrets", "own directory", ""},
		{"mount relative parts", map[string]string{"INPUT_SECRETS": "/secrets/../etc/x=key"}, "secrets", "own directory", ""},
		{"mount server dir", map[string]string{"INPUT_SECRETS": "/usr/local/bin/key=key"}, "secrets", "/usr/local/bin is a directory the image needs: a secret volume hides whatever the image has", ""},
		{"mount usr", map[string]string{"INPUT_SECRETS": "/usr/share/app/key=key"}, "secrets", "inside /usr", ""},
		{"mount etc", map[string]string{"INPUT_SECRETS": "/etc/app.json=key"}, "secrets", "/etc is a directory the image needs", ""},
		{"mount below tmp", map[string]string{"INPUT_SECRETS": "/tmp/s/key=key"}, "secrets", "inside /tmp", ""},
		{"mount above var/run", map[string]string{"INPUT_SECRETS": "/var/key=key"}, "secrets", "hide the image's /var/run", ""},
		{"mount cloudsql", map[string]string{"INPUT_SECRETS": "/cloudsql/key=key"}, "secrets", "Cloud SQL sockets", ""},
		{"mounts nested", map[string]string{"INPUT_SECRETS": "/secrets/a=one\n/secrets/inner/b=two"}, "secrets", "nested", ""},
		{"mount same file", map[string]string{"INPUT_SECRETS": "/secrets/a=one:1\n/secrets/a=one:2"}, "secrets", "already mounted as /secrets/a", ""},
		{"secret env reserved", map[string]string{"INPUT_SECRETS": "K_SERVICE=key"}, "secrets", "Cloud Run sets K_SERVICE", ""},
		{"secret env server", map[string]string{"INPUT_SECRETS": "DEPLOY_MLFLOW_BACKEND_STORE_URI=db"}, "secrets", "use the input backend_store_secret", ""},
		{"env server without input", map[string]string{"INPUT_ENV_VARS": "DEPLOY_MLFLOW_SHUTDOWN_GRACE=1s"}, "env_vars", "has no input", ""},
		{"env server auth", map[string]string{"INPUT_ENV_VARS": "DEPLOY_MLFLOW_AUTH=iam"}, "env_vars", "use the input auth", ""},
		{"env port", map[string]string{"INPUT_ENV_VARS": "PORT=9000"}, "env_vars", "Cloud Run sets PORT", ""},
		{"env x_google", map[string]string{"INPUT_ENV_VARS": "X_GOOGLE_THING=1"}, "env_vars", "X_GOOGLE_", ""},
		{"env no equals", map[string]string{"INPUT_ENV_VARS": "JUSTAKEY"}, "env_vars", "KEY=VALUE", ""},
		{"env bad name hides value", map[string]string{"INPUT_ENV_VARS": "MY-KEY=" + sec}, "env_vars", "letters, digits and underscores", sec},
		{"env twice", map[string]string{"INPUT_ENV_VARS": "A=" + sec + "\nA=2"}, "env_vars", "set each variable once", sec},
		{"env and secret", map[string]string{"INPUT_ENV_VARS": "TOKEN=" + sec, "INPUT_SECRETS": "TOKEN=tok"}, "env_vars", "also set by secrets", sec},
		{"env value too long", map[string]string{"INPUT_ENV_VARS": "BIG=" + strings.Repeat("x", maxEnvValue+1)}, "env_vars", "32768 bytes", strings.Repeat("x", 100)},
		{"env too many", map[string]string{"INPUT_ENV_VARS": manyEnv(maxEnvVars)}, "env_vars", "at most 1000", ""},
		{"auth unknown", map[string]string{"INPUT_AUTH": "oidc"}, "auth", "mlflow (MLflow's own users and permissions)", ""},
		{"auth upper case", map[string]string{"INPUT_AUTH": "MLflow"}, "auth", "use basic", ""},
		{"mlflow without admin", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_USERNAME_SECRET": ""}, "username_secret", "the first admin's username", ""},
		{"mlflow private", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_ALLOW_UNAUTHENTICATED": "false"}, "allow_unauthenticated", "with auth: mlflow the service must be public", ""},
		{"permission unknown", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "WRITE"}, "default_permission", "EDIT, MANAGE or NO_PERMISSIONS", ""},
		{"permission spaced", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "NO PERMISSIONS"}, "default_permission", "use READ", ""},
		{"permission with basic", map[string]string{"INPUT_DEFAULT_PERMISSION": "READ"}, "default_permission", "only used when auth is mlflow", ""},
		{"permission with iam", map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "", "INPUT_DEFAULT_PERMISSION": "EDIT"}, "default_permission", "only used when auth is mlflow", ""},
		{"flask with basic", map[string]string{"INPUT_FLASK_SECRET_KEY_SECRET": "flask_key"}, "flask_secret_key_secret", "only used when auth is mlflow", ""},
		{"flask value with basic", map[string]string{"INPUT_FLASK_SECRET_KEY_SECRET": "k " + sec}, "flask_secret_key_secret", "only used when auth is mlflow", sec},
		{"flask name with dot", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_FLASK_SECRET_KEY_SECRET": "flask.key"}, "flask_secret_key_secret", "Secret Manager secret name", ""},
		{"flask value pasted", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_FLASK_SECRET_KEY_SECRET": "k " + sec}, "flask_secret_key_secret", "Secret Manager secret name", sec},
		{"kek version zero", map[string]string{"INPUT_KEK_PASSPHRASE_SECRET": "kek:0"}, "kek_passphrase_secret", "latest or a number", ""},
		{"kek value pasted", map[string]string{"INPUT_KEK_PASSPHRASE_SECRET": "pass " + sec}, "kek_passphrase_secret", "Secret Manager secret name", sec},
		{"workers zero", map[string]string{"INPUT_WORKERS": "0"}, "workers", "from 1 to 32", ""},
		{"workers too many", map[string]string{"INPUT_WORKERS": "33", "INPUT_MEMORY": "32Gi", "INPUT_CPU": "8"}, "workers", "from 1 to 32", ""},
		{"workers word", map[string]string{"INPUT_WORKERS": "two"}, "workers", "whole number", ""},
		{"workers beyond memory", map[string]string{"INPUT_WORKERS": "4", "INPUT_MEMORY": "1Gi"}, "workers", "4 workers need about 1280Mi (256Mi each, plus 256Mi for the rest of the server), more than memory 1Gi; lower workers to 3 or raise memory", ""},
		{"workers beyond default memory", map[string]string{"INPUT_WORKERS": "8"}, "workers", "more than memory 2Gi", ""},
		{"env workers", map[string]string{"INPUT_ENV_VARS": "MLFLOW_WORKERS=4"}, "env_vars", "use the input workers", ""},
		{"env permission", map[string]string{"INPUT_ENV_VARS": "DEPLOY_MLFLOW_DEFAULT_PERMISSION=EDIT"}, "env_vars", "use the input default_permission", ""},
		{"env kek value", map[string]string{"INPUT_ENV_VARS": "MLFLOW_CRYPTO_KEK_PASSPHRASE=" + sec}, "env_vars", "use the input kek_passphrase_secret", sec},
		{"secret kek env", map[string]string{"INPUT_SECRETS": "MLFLOW_CRYPTO_KEK_PASSPHRASE=kek"}, "secrets", "use the input kek_passphrase_secret", ""},
		{"secret flask env", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_SECRETS": "MLFLOW_FLASK_SERVER_SECRET_KEY=flask"}, "secrets", "use the input flask_secret_key_secret", ""},
		{"label upper case", map[string]string{"INPUT_LABELS": "Team=ml"}, "labels", "starting with a letter", ""},
		{"label key digit first", map[string]string{"INPUT_LABELS": "1team=ml"}, "labels", "starting with a letter", ""},
		{"label key 64 chars", map[string]string{"INPUT_LABELS": "k" + strings.Repeat("e", 63) + "=v"}, "labels", "1 to 63", ""},
		{"label value 64 chars", map[string]string{"INPUT_LABELS": "k=" + strings.Repeat("v", 64)}, "labels", "up to 63", ""},
		{"label value dot", map[string]string{"INPUT_LABELS": "version=1.2"}, "labels", "up to 63", ""},
		{"label key too many bytes", map[string]string{"INPUT_LABELS": strings.Repeat("日", 63) + "=v"}, "labels", "under 128 bytes", ""},
		{"label reserved namespace", map[string]string{"INPUT_LABELS": "run.googleapis.com/ingress=all"}, "labels", "belong to Cloud Run", ""},
		{"label knative", map[string]string{"INPUT_LABELS": "serving.knative.dev/service=x"}, "labels", "belong to Cloud Run", ""},
		{"label ours", map[string]string{"INPUT_LABELS": "commit-sha=abc"}, "labels", "set by deploy-mlflow", ""},
		{"label twice", map[string]string{"INPUT_LABELS": "team=a,team=b"}, "labels", "given twice", ""},
		{"labels too many", map[string]string{"INPUT_LABELS": manyLabels(63)}, "labels", "at most 62", ""},
		{"cloudsql two parts", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:db"}, "cloudsql_instances", "PROJECT:REGION:INSTANCE", ""},
		{"cloudsql bad instance", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:DB"}, "cloudsql_instances", "instance ID", ""},
		{"cloudsql bad project", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "ab:us-central1:db"}, "cloudsql_instances", "project part", ""},
		{"cloudsql twice", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db,my-project:us-central1:db"}, "cloudsql_instances", "listed twice", ""},
		{"service account not SA", map[string]string{"INPUT_SERVICE_ACCOUNT": "me@example.com"}, "service_account", "gserviceaccount.com", ""},
		{"bucket with google", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://my-google-bucket/x"}, "artifacts_destination", `contain "google"`, ""},
		{"bucket 64 chars", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://" + strings.Repeat("b", 64)}, "artifacts_destination", "at most 63", ""},
		{"bucket ip", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://192.168.5.4/x"}, "artifacts_destination", "IP address", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tc.change {
				env[k] = v
			}
			_, err := parse(env)
			errs := unjoin(err)
			if err == nil || len(errs) != 1 {
				t.Fatalf("want exactly one error, got %d: %v", len(errs), err)
			}
			var ie *InputError
			if !errors.As(errs[0], &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			if ie.Input != tc.input || !strings.Contains(ie.Want, tc.says) {
				t.Errorf("got %q\nwant an error naming input %s that says %q", ie, tc.input, tc.says)
			}
			if tc.hidden != "" && strings.Contains(ie.Error(), tc.hidden) {
				t.Errorf("the error shows a value that may be secret: %v", ie)
			}
		})
	}
}

// overflowSeconds is a number of seconds that, multiplied into a time.Duration without a bound,
// wraps around to exactly 60 s.
var overflowSeconds = "36028797018964028" // 60e9 + 1953125 * 2^64, over 1e9

func manyEnv(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "V%d=x\n", i)
	}
	return b.String()
}

func manyLabels(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "l%d=v\n", i)
	}
	return b.String()
}
