package config

import (
	"strings"
	"testing"
)

// TestParseAcceptsEdges checks values at the edge of Google's rules that must still be taken, so that
// the rules refuse no more than Google does.
func TestParseAcceptsEdges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change map[string]string
		check  func(*Config) bool
	}{
		{"service 49 chars", map[string]string{"INPUT_SERVICE": "a" + strings.Repeat("b", 48)}, func(c *Config) bool { return len(c.Service) == 49 }},
		{"international labels", map[string]string{"INPUT_LABELS": "研究=機械学習\nété=ü2\nempty="}, func(c *Config) bool {
			return c.Labels["研究"] == "機械学習" && c.Labels["été"] == "ü2" && c.Labels["empty"] == ""
		}},
		{"62 labels", map[string]string{"INPUT_LABELS": manyLabels(62)}, func(c *Config) bool { return len(c.Labels) == 62 }},
		{"secrets side by side", map[string]string{"INPUT_SECRETS": "/secrets/a/x=one\n/secrets/b/y=two\n/secrets/a/z=one:2\n/var/secrets/k=three"}, func(c *Config) bool { return len(c.Secrets) == 4 }},
		{"server-looking but allowed env", map[string]string{"INPUT_ENV_VARS": "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=2\nDEPLOY_MLFLOWX=1"}, func(c *Config) bool { return len(c.EnvVars) == 2 }},
		{"pinned by default", nil, func(c *Config) bool { return c.PinSecretVersions }},
		{"latest", map[string]string{"INPUT_SECRET_VERSIONS": "latest"}, func(c *Config) bool { return !c.PinSecretVersions }},
		{"cpu millis", map[string]string{"INPUT_CPU": "2000m"}, func(c *Config) bool { return c.CPU == "2000m" }},
		{"domain-scoped Cloud SQL", map[string]string{"INPUT_CLOUDSQL_INSTANCES": "example.com:my-project:us-central1:db"}, func(c *Config) bool { return len(c.CloudSQLInstances) == 1 }},
		{"domain-scoped AR image", map[string]string{"INPUT_IMAGE": "us-docker.pkg.dev/example.com/my-project/repo/mlflow"}, func(c *Config) bool { return c.Image != "" }},
		{"other registry", map[string]string{"INPUT_IMAGE": "ghcr.io/acme/mlflow"}, func(c *Config) bool { return c.Image == "ghcr.io/acme/mlflow" }},
		{"compute service account", map[string]string{"INPUT_SERVICE_ACCOUNT": "123456789-compute@developer.gserviceaccount.com"}, func(c *Config) bool { return c.ServiceAccount != "" }},
		{"dotted bucket", map[string]string{"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://ml.example.com/x"}, func(c *Config) bool { return c.ArtifactsDestination != "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := validEnv()
			for k, v := range tc.change {
				env[k] = v
			}
			c, err := parse(env)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("parsed wrongly: %+v", c)
			}
		})
	}
}
