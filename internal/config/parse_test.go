package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// validEnv is the workflow of the README: the article's secrets, everything else defaulted.
func validEnv() map[string]string {
	return map[string]string{
		"INPUT_PROJECT_ID":                   "my-project",
		"INPUT_REPOSITORY":                   "mlflow-runner",
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "mlflow_pass",
		"GITHUB_SHA":                         "0123456789abcdef0123456789abcdef01234567",
		"GITHUB_SERVER_URL":                  "https://github.com",
		"GITHUB_REPOSITORY":                  "acme/ml",
	}
}

func parse(env map[string]string) (*Config, error) {
	return Parse(func(k string) string { return env[k] })
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(validEnv())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"region", c.Region, "us-central1"},
		{"service", c.Service, "mlflow"},
		{"image", c.Image, "us-central1-docker.pkg.dev/my-project/mlflow-runner/mlflow"},
		{"base", c.BaseImage, "ghcr.io/mlflow/mlflow:v" + DefaultMLflowVersion + "-full"},
		{"backend", c.BackendStore.Name(), "projects/my-project/secrets/DB_url/versions/latest"},
		{"artifacts", c.ArtifactsDestinationSecret.Name(), "projects/my-project/secrets/bucket_url/versions/latest"},
		{"username", c.Username.Name(), "projects/my-project/secrets/mlflow_id/versions/latest"},
		{"password", c.Password.Name(), "projects/my-project/secrets/mlflow_pass/versions/latest"},
		{"auth", c.Auth, "basic"},
		{"memory", c.Memory, "2Gi"},
		{"cpu", c.CPU, "1"},
		{"source", c.Source, "https://github.com/acme/ml"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if !c.AllowUnauthed || c.MaxInstances != 3 || c.MinInstances != 0 || c.Concurrency != 80 ||
		c.Timeout != 300*time.Second || c.WaitTimeout != 10*time.Minute {
		t.Errorf("numeric defaults wrong: %+v", c)
	}
	if got := len(c.SecretRefs()); got != 4 {
		t.Errorf("SecretRefs() has %d refs, want 4", got)
	}
	if c.BackendStore.Input != "backend_store_secret" {
		t.Errorf("backend ref input = %q", c.BackendStore.Input)
	}
}

func TestParseProjectFromEnvironment(t *testing.T) {
	t.Parallel()
	env := validEnv()
	delete(env, "INPUT_PROJECT_ID")
	env["GOOGLE_CLOUD_PROJECT"] = "from-auth-step"
	c, err := parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProjectID != "from-auth-step" || !strings.Contains(c.Image, "/from-auth-step/") {
		t.Errorf("project = %q, image = %q", c.ProjectID, c.Image)
	}
}

func TestParseOptional(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_REGION"] = "europe-west1"
	env["INPUT_SERVICE"] = "tracking"
	env["INPUT_IMAGE"] = "europe-docker.pkg.dev/other-proj/repo/mlflow"
	env["INPUT_MLFLOW_VERSION"] = "v3.5.1"
	env["INPUT_ARTIFACTS_DESTINATION_SECRET"] = ""
	env["INPUT_ARTIFACTS_DESTINATION"] = "gs://my-bucket/mlflow"
	env["INPUT_SECRETS"] = "GOOGLE_KEY=projects/shared-proj/secrets/key/versions/2\n/secrets/creds.json=sa_key:3\nAPI_TOKEN=token"
	env["INPUT_ENV_VARS"] = "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=3\nNOTE=a,b"
	env["INPUT_CLOUDSQL_INSTANCES"] = "my-project:us-central1:db, other-proj:europe-west1:db2"
	env["INPUT_SERVICE_ACCOUNT"] = "mlflow@my-project.iam.gserviceaccount.com"
	env["INPUT_MEMORY"] = "4Gi"
	env["INPUT_CPU"] = "2"
	env["INPUT_MIN_INSTANCES"] = "1"
	env["INPUT_MAX_INSTANCES"] = "5"
	env["INPUT_TIMEOUT"] = "15m"
	env["INPUT_WAIT_TIMEOUT"] = "600"
	env["INPUT_LABELS"] = "team=ml,env=prod"
	c, err := parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Image != "europe-docker.pkg.dev/other-proj/repo/mlflow" || c.MLflowVersion != "3.5.1" ||
		c.BaseImage != "ghcr.io/mlflow/mlflow:v3.5.1-full" || c.ArtifactsDestination != "gs://my-bucket/mlflow" ||
		c.ArtifactsDestinationSecret != nil {
		t.Errorf("unexpected config: %+v", c)
	}
	if len(c.Secrets) != 3 || c.Secrets[0].Env != "GOOGLE_KEY" || c.Secrets[0].Ref.Project != "shared-proj" ||
		c.Secrets[0].Ref.Version != "2" || c.Secrets[1].Path != "/secrets/creds.json" || c.Secrets[1].Ref.Version != "3" ||
		c.Secrets[2].Ref.Version != "latest" {
		t.Errorf("secrets = %+v", c.Secrets)
	}
	if len(c.EnvVars) != 2 || c.EnvVars[1] != (EnvVar{"NOTE", "a,b"}) {
		t.Errorf("env vars = %+v", c.EnvVars)
	}
	if len(c.CloudSQLInstances) != 2 || c.CloudSQLInstances[1] != "other-proj:europe-west1:db2" {
		t.Errorf("cloudsql = %v", c.CloudSQLInstances)
	}
	if c.Timeout != 15*time.Minute || c.WaitTimeout != 10*time.Minute || c.Labels["team"] != "ml" || c.MinInstances != 1 {
		t.Errorf("unexpected config: %+v", c)
	}
}

func TestParseIAM(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_AUTH"] = "iam"
	delete(env, "INPUT_USERNAME_SECRET")
	delete(env, "INPUT_PASSWORD_SECRET")
	c, err := parse(env)
	if err != nil {
		t.Fatal(err)
	}
	if c.AllowUnauthed || c.Username != nil {
		t.Errorf("auth iam must default to a private service: %+v", c)
	}
}

// TestParseErrors checks that each bad input is refused with an error that names it.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change map[string]string
		input  string // the input the error must name
		says   string // and part of what it must say
	}{
		{"no project", map[string]string{"INPUT_PROJECT_ID": ""}, "project_id", "google-github-actions/auth"},
		{"project name", map[string]string{"INPUT_PROJECT_ID": "My Project"}, "project_id", "project ID"},
		{"project from auth", map[string]string{"INPUT_PROJECT_ID": "", "GOOGLE_CLOUD_PROJECT": "My Project"}, "project_id", "read from GOOGLE_CLOUD_PROJECT"},
		{"region", map[string]string{"INPUT_REGION": "us central"}, "region", "us-central1"},
		{"service", map[string]string{"INPUT_SERVICE": "MLflow_Server"}, "service", "lowercase"},
		{"no repository", map[string]string{"INPUT_REPOSITORY": ""}, "repository", "gcloud artifacts repositories create"},
		{"repository", map[string]string{"INPUT_REPOSITORY": "Repo"}, "repository", "lowercase"},
		{"image with tag", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/p/r/mlflow:v1"}, "image", "without tag"},
		{"image with digest", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/p/r/mlflow@sha256:" + strings.Repeat("a", 64)}, "image", "without tag"},
		{"mlflow 2", map[string]string{"INPUT_MLFLOW_VERSION": "2.22.0"}, "mlflow_version", "MLflow 3"},
		{"mlflow junk", map[string]string{"INPUT_MLFLOW_VERSION": "latest"}, "mlflow_version", "release number"},
		{"base image", map[string]string{"INPUT_BASE_IMAGE": "not an image"}, "base_image", "image reference"},
		{"no backend", map[string]string{"INPUT_BACKEND_STORE_SECRET": ""}, "backend_store_secret", "required"},
		{"backend name", map[string]string{"INPUT_BACKEND_STORE_SECRET": "db url"}, "backend_store_secret", "secret name"},
		{"backend version", map[string]string{"INPUT_BACKEND_STORE_SECRET": "DB_url:v2"}, "backend_store_secret", "latest or a number"},
		{"backend path", map[string]string{"INPUT_BACKEND_STORE_SECRET": "projects/p/DB_url"}, "backend_store_secret", "projects/PROJECT/secrets/NAME"},
		{"both artifacts", map[string]string{"INPUT_ARTIFACTS_DESTINATION": "gs://b"}, "artifacts_destination", "not both"},
		{"no artifacts", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": ""}, "artifacts_destination", "gs://"},
		{"artifacts s3", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "s3://bucket"}, "artifacts_destination", "gs://BUCKET"},
		{"no username", map[string]string{"INPUT_USERNAME_SECRET": ""}, "username_secret", "auth: iam"},
		{"no password", map[string]string{"INPUT_PASSWORD_SECRET": ""}, "password_secret", "required"},
		{"auth", map[string]string{"INPUT_AUTH": "oauth"}, "auth", "basic"},
		{"iam public", map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "", "INPUT_ALLOW_UNAUTHENTICATED": "true"}, "allow_unauthenticated", "must be false"},
		{"iam with user", map[string]string{"INPUT_AUTH": "iam", "INPUT_PASSWORD_SECRET": ""}, "username_secret", "only used when auth is basic"},
		{"allow junk", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "yes"}, "allow_unauthenticated", "true or false"},
		{"secret form", map[string]string{"INPUT_SECRETS": "JUSTANAME"}, "secrets", "ENV=secret"},
		{"secret reserved", map[string]string{"INPUT_SECRETS": "PORT=port_secret"}, "secrets", "Cloud Run sets PORT itself"},
		{"secret root", map[string]string{"INPUT_SECRETS": "/creds=key"}, "secrets", "own directory"},
		{"secret cloudsql", map[string]string{"INPUT_SECRETS": "/cloudsql/x=key"}, "secrets", "/cloudsql"},
		{"secret dir shared", map[string]string{"INPUT_SECRETS": "/s/a=one,/s/b=two"}, "secrets", "one secret per directory"},
		{"secret env name", map[string]string{"INPUT_SECRETS": "1KEY=key"}, "secrets", "environment variable name"},
		{"secret ref", map[string]string{"INPUT_SECRETS": "KEY=key:v1"}, "secrets", "latest or a number"},
		{"env form", map[string]string{"INPUT_ENV_VARS": "1BAD=x"}, "env_vars", "not starting with a digit"},
		{"env server name", map[string]string{"INPUT_ENV_VARS": "DEPLOY_MLFLOW_PASSWORD=x"}, "env_vars", "use the input password_secret"},
		{"env twice", map[string]string{"INPUT_ENV_VARS": "A=1", "INPUT_SECRETS": "A=sec"}, "env_vars", "also set by secrets"},
		{"cloudsql", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "just-an-instance"}, "cloudsql_instances", "PROJECT:REGION:INSTANCE"},
		{"service account", map[string]string{"INPUT_SERVICE_ACCOUNT": "mlflow-sa"}, "service_account", "email"},
		{"memory unit", map[string]string{"INPUT_MEMORY": "2GB"}, "memory", "512Mi to 32Gi"},
		{"memory small", map[string]string{"INPUT_MEMORY": "256Mi"}, "memory", "512Mi"},
		{"cpu", map[string]string{"INPUT_CPU": "3"}, "cpu", "1, 2, 4"},
		{"memory needs cpu", map[string]string{"INPUT_MEMORY": "16Gi"}, "cpu", "memory 16Gi needs cpu 4 or more"},
		{"cpu needs memory", map[string]string{"INPUT_CPU": "8", "INPUT_MEMORY": "2Gi"}, "cpu", "needs memory 4Gi"},
		{"basic private", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "false"}, "allow_unauthenticated", "auth: iam"},
		{"min > max", map[string]string{"INPUT_MIN_INSTANCES": "5"}, "min_instances", "max_instances"},
		{"max zero", map[string]string{"INPUT_MAX_INSTANCES": "0"}, "max_instances", "from 1"},
		{"concurrency", map[string]string{"INPUT_CONCURRENCY": "many"}, "concurrency", "whole number"},
		{"timeout", map[string]string{"INPUT_TIMEOUT": "2h"}, "timeout", "seconds"},
		{"wait", map[string]string{"INPUT_WAIT_TIMEOUT": "soon"}, "wait_timeout", "seconds"},
		{"label form", map[string]string{"INPUT_LABELS": "Team=ML"}, "labels", "key=value"},
		{"label ours", map[string]string{"INPUT_LABELS": "managed-by=me"}, "labels", "set by deploy-mlflow"},
		{"no sha", map[string]string{"GITHUB_SHA": ""}, "GITHUB_SHA", "set by GitHub Actions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tc.change {
				env[k] = v
			}
			_, err := parse(env)
			if err == nil {
				t.Fatalf("Parse accepted %v", tc.change)
			}
			var found bool
			for _, e := range unjoin(err) {
				var ie *InputError
				if errors.As(e, &ie) && ie.Input == tc.input {
					found = true
					if !strings.Contains(ie.Error(), tc.says) {
						t.Errorf("error %q does not say %q", ie.Error(), tc.says)
					}
				}
			}
			if !found {
				t.Errorf("no error names input %s; got: %v", tc.input, err)
			}
		})
	}
}

// TestParseDoesNotEchoSecrets checks that a value pasted where a secret's name belongs is not repeated
// in the error, which becomes a workflow annotation anyone with read access sees.
func TestParseDoesNotEchoSecrets(t *testing.T) {
	t.Parallel()
	const password = "hunter2-Very-Secret"
	for _, change := range []map[string]string{
		{"INPUT_BACKEND_STORE_SECRET": "postgresql+psycopg2://mlflow:" + password + "@/mlflow?host=/cloudsql/p:r:i"},
		{"INPUT_PASSWORD_SECRET": password + " !"},
		{"INPUT_SECRETS": "API_KEY=" + password + " with spaces"},
		{"INPUT_ENV_VARS": "bad key=" + password},
		{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": password + " !"},
	} {
		env := validEnv()
		for k, v := range change {
			env[k] = v
		}
		_, err := parse(env)
		if err == nil {
			t.Errorf("%v was accepted", change)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%v: the error shows the value: %v", change, err)
		}
	}
}

// TestParseNumericBounds checks each bound of each numeric input: the value just inside is taken, the
// value just outside is refused with an error that names the input and the valid range.
func TestParseNumericBounds(t *testing.T) {
	t.Parallel()
	get := map[string]func(*Config) string{
		"min_instances": func(c *Config) string { return fmt.Sprint(c.MinInstances) },
		"max_instances": func(c *Config) string { return fmt.Sprint(c.MaxInstances) },
		"concurrency":   func(c *Config) string { return fmt.Sprint(c.Concurrency) },
		"timeout":       func(c *Config) string { return c.Timeout.String() },
		"wait_timeout":  func(c *Config) string { return c.WaitTimeout.String() },
	}
	maxed := map[string]string{"INPUT_MAX_INSTANCES": "1000"} // so that min_instances may reach its bound
	cases := []struct {
		input, value string
		also         map[string]string
		want         string // the parsed value, or "" when the value must be refused
		says         string // what the refusal must say
	}{
		{"min_instances", "-1", nil, "", "from 0 to 1000"},
		{"min_instances", "0", nil, "0", ""},
		{"min_instances", "1000", maxed, "1000", ""},
		{"min_instances", "1001", maxed, "", "from 0 to 1000"},
		{"max_instances", "0", nil, "", "from 1 to 1000"},
		{"max_instances", "1", nil, "1", ""},
		{"max_instances", "1000", nil, "1000", ""},
		{"max_instances", "1001", nil, "", "from 1 to 1000"},
		{"concurrency", "0", nil, "", "from 1 to 1000"},
		{"concurrency", "1", nil, "1", ""},
		{"concurrency", "1000", nil, "1000", ""},
		{"concurrency", "1001", nil, "", "from 1 to 1000"},
		{"timeout", "0", nil, "", "from 1s to 1h0m0s"},
		{"timeout", "1", nil, "1s", ""},
		{"timeout", "1500ms", nil, "", "whole seconds"},
		{"timeout", "3600", nil, "1h0m0s", ""},
		{"timeout", "1h", nil, "1h0m0s", ""},
		{"timeout", "3601", nil, "", "from 1s to 1h0m0s"},
		{"timeout", "1h0m1s", nil, "", "from 1s to 1h0m0s"},
		{"wait_timeout", "29", nil, "", "from 30s to 2h0m0s"},
		{"wait_timeout", "30s", nil, "30s", ""},
		{"wait_timeout", "7200", nil, "2h0m0s", ""},
		{"wait_timeout", "7201", nil, "", "from 30s to 2h0m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.input+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			env["INPUT_"+strings.ToUpper(tc.input)] = tc.value
			for k, v := range tc.also {
				env[k] = v
			}
			c, err := parse(env)
			if tc.want != "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := get[tc.input](c); got != tc.want {
					t.Errorf("%s = %s, want %s", tc.input, got, tc.want)
				}
				return
			}
			ie := inputError(err, tc.input)
			if ie == nil {
				t.Fatalf("no error names input %s; got: %v", tc.input, err)
			}
			if ie.Value != tc.value || !strings.Contains(ie.Want, tc.says) {
				t.Errorf("error %q should show %q and say %q", ie, tc.value, tc.says)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	env := validEnv()
	env["INPUT_REGION"] = "nowhere"
	env["INPUT_MEMORY"] = "lots"
	env["INPUT_CPU"] = "0"
	_, err := parse(env)
	if got := len(unjoin(err)); got != 3 {
		t.Errorf("got %d errors, want 3: %v", got, err)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// inputError is the first *InputError in err that names input, or nil.
func inputError(err error, input string) *InputError {
	for _, e := range unjoin(err) {
		var ie *InputError
		if errors.As(e, &ie) && ie.Input == input {
			return ie
		}
	}
	return nil
}
