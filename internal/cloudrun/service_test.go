package cloudrun

import (
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

const testImage = "us-central1-docker.pkg.dev/p/r/mlflow@sha256:0000000000000000000000000000000000000000000000000000000000000001"

func testConfig(t *testing.T, extra map[string]string) *config.Config {
	t.Helper()
	env := map[string]string{
		"INPUT_PROJECT_ID":                   "my-project",
		"INPUT_REPOSITORY":                   "mlflow-runner",
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url:2",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "projects/the-vault/secrets/mlflow_pass",
		"GITHUB_SHA":                         "0123456789abcdef0123456789abcdef01234567",
	}
	for k, v := range extra {
		env[k] = v
	}
	c, err := config.Parse(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func envByName(c *runpb.Container) map[string]*runpb.EnvVar {
	m := map[string]*runpb.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func TestDesired(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{
		"INPUT_SECRETS":            "API_KEY=api_key:4\n/secrets/creds.json=sa_key\n/secrets/other.json=sa_key:2",
		"INPUT_ENV_VARS":           "MLFLOW_WORKERS=3",
		"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db",
		"INPUT_SERVICE_ACCOUNT":    "mlflow@my-project.iam.gserviceaccount.com",
		"INPUT_LABELS":             "team=ml",
	})
	s := Desired(c, testImage)

	if s.Name != "projects/my-project/locations/us-central1/services/mlflow" {
		t.Errorf("name = %s", s.Name)
	}
	if s.Labels["managed-by"] != "deploy-mlflow" || s.Labels["commit-sha"] != c.Commit || s.Labels["team"] != "ml" {
		t.Errorf("labels = %v", s.Labels)
	}
	tpl := s.Template
	if tpl.ServiceAccount != c.ServiceAccount || tpl.Scaling.MaxInstanceCount != 3 || tpl.Timeout.AsDuration() != 300*time.Second ||
		tpl.MaxInstanceRequestConcurrency != 80 {
		t.Errorf("template = %v", tpl)
	}
	ctr := tpl.Containers[0]
	if ctr.Image != testImage || ctr.Ports[0].Name != "h2c" || ctr.Ports[0].ContainerPort != 8080 {
		t.Errorf("container = %v", ctr)
	}
	if r := ctr.Resources; r.Limits["memory"] != "2Gi" || r.Limits["cpu"] != "1" || !r.CpuIdle || !r.StartupCpuBoost {
		t.Errorf("resources = %v", r)
	}
	if p := ctr.StartupProbe; p.GetHttpGet().GetPath() != serverenv.HealthPath || p.GetHttpGet().GetPort() != ctr.Ports[0].ContainerPort ||
		p.PeriodSeconds*p.FailureThreshold > 240 || p.TimeoutSeconds > p.PeriodSeconds {
		t.Errorf("startup probe = %v", p)
	}

	env := envByName(ctr)
	secret := func(name, wantSecret, wantVersion string) {
		t.Helper()
		ref := env[name].GetValueSource().GetSecretKeyRef()
		if ref == nil || ref.Secret != wantSecret || ref.Version != wantVersion || env[name].GetValue() != "" {
			t.Errorf("env %s = %v, want secret %s version %s", name, env[name], wantSecret, wantVersion)
		}
	}
	secret(serverenv.BackendStoreURI, "DB_url", "latest")
	secret(serverenv.ArtifactsDestination, "bucket_url", "2")
	secret(serverenv.Username, "mlflow_id", "latest")
	secret(serverenv.Password, "projects/the-vault/secrets/mlflow_pass", "latest")
	secret("API_KEY", "api_key", "4")
	if env[serverenv.Auth].GetValue() != "basic" || env["MLFLOW_WORKERS"].GetValue() != "3" {
		t.Errorf("plain env wrong: %v", ctr.Env)
	}
	if _, ok := env["PORT"]; ok {
		t.Error("PORT is reserved by Cloud Run and must not be set")
	}

	if len(tpl.Volumes) != 2 || tpl.Volumes[0].GetCloudSqlInstance().GetInstances()[0] != "my-project:us-central1:db" {
		t.Fatalf("volumes = %v", tpl.Volumes)
	}
	sv := tpl.Volumes[1].GetSecret()
	if sv.Secret != "sa_key" || len(sv.Items) != 2 || sv.Items[0].Path != "creds.json" || sv.Items[1].Version != "2" {
		t.Errorf("secret volume = %v", sv)
	}
	if m := ctr.VolumeMounts; len(m) != 2 || m[0].MountPath != "/cloudsql" || m[1].MountPath != "/secrets" || m[1].Name != tpl.Volumes[1].Name {
		t.Errorf("mounts = %v", m)
	}
}

func TestDesiredIAMAndPlainArtifacts(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{
		"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://bucket/mlflow",
	})
	env := envByName(Desired(c, testImage).Template.Containers[0])
	if env[serverenv.Auth].GetValue() != "iam" || env[serverenv.ArtifactsDestination].GetValue() != "gs://bucket/mlflow" {
		t.Errorf("env = %v", env)
	}
	if _, ok := env[serverenv.Password]; ok {
		t.Error("auth iam must not pass a password")
	}
}

func TestDesiredIsDeterministic(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{"INPUT_SECRETS": "/b/x=s1,/a/y=s2,/c/z=s3", "INPUT_LABELS": "a=1,b=2,c=3"})
	first := Desired(c, testImage)
	for range 20 {
		if !proto.Equal(first, Desired(c, testImage)) {
			t.Fatal("Desired gave two different services for one config")
		}
	}
}

func TestLogsURL(t *testing.T) {
	t.Parallel()
	if got := LogsURL(Name("p", "europe-west1", "mlflow")); got != "https://console.cloud.google.com/run/detail/europe-west1/mlflow/logs?project=p" {
		t.Errorf("LogsURL = %s", got)
	}
}
