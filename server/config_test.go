package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func testEnv(vars map[string]string) env {
	return env{
		getenv: func(k string) string { return vars[k] },
		lookPath: func(name string) (string, error) {
			if name == "mlflow" || strings.HasPrefix(name, "/") {
				return "/venv/bin/" + strings.TrimPrefix(name, "/venv/bin/"), nil
			}
			return "", exec.ErrNotFound
		},
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"DEPLOY_MLFLOW_BACKEND_STORE_URI":     "postgresql+psycopg2://u:pw@/db?host=/cloudsql/p:r:i",
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION": "gs://bucket/mlflow",
		"DEPLOY_MLFLOW_USERNAME":              "alice",
		"DEPLOY_MLFLOW_PASSWORD":              "s3cret-password",
	}
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range changes {
			if v == "<unset>" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr []string // substrings; nil means no error
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", vars: base, check: func(t *testing.T, c config) {
			if c.auth != "basic" || c.port != "8080" || c.shutdownGrace != 7*time.Second || c.migrationTimeout != 200*time.Second || c.mlflow != "/venv/bin/mlflow" || len(c.warnings) != 0 {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "password of 12 characters", vars: with(map[string]string{"DEPLOY_MLFLOW_PASSWORD": "abcdefghijkl"})},
		{name: "password of 12 characters, not bytes", vars: with(map[string]string{"DEPLOY_MLFLOW_PASSWORD": "pässwörd-äöü"})},
		{name: "password of 11 characters", vars: with(map[string]string{"DEPLOY_MLFLOW_PASSWORD": "abcdefghijk"}),
			wantErr: []string{"DEPLOY_MLFLOW_PASSWORD is shorter than 12 characters", "add a longer version to the password secret"}},
		{name: "11 characters in more bytes", vars: with(map[string]string{"DEPLOY_MLFLOW_PASSWORD": "pässwörd-äö"}),
			wantErr: []string{"DEPLOY_MLFLOW_PASSWORD is shorter than 12 characters"}},
		{name: "iam ignores the password", vars: with(map[string]string{"DEPLOY_MLFLOW_AUTH": "iam", "DEPLOY_MLFLOW_PASSWORD": "short"})},
		{name: "iam needs no credentials", vars: with(map[string]string{"DEPLOY_MLFLOW_AUTH": "iam", "DEPLOY_MLFLOW_USERNAME": "<unset>", "DEPLOY_MLFLOW_PASSWORD": "<unset>"})},
		{name: "basic without password", vars: with(map[string]string{"DEPLOY_MLFLOW_PASSWORD": "<unset>"}),
			wantErr: []string{"DEPLOY_MLFLOW_USERNAME and DEPLOY_MLFLOW_PASSWORD are not both set", "DEPLOY_MLFLOW_AUTH=iam"}},
		{name: "default auth without credentials", vars: with(map[string]string{"DEPLOY_MLFLOW_USERNAME": "<unset>", "DEPLOY_MLFLOW_PASSWORD": "<unset>"}),
			wantErr: []string{"DEPLOY_MLFLOW_AUTH is \"basic\""}},
		{name: "colon in user", vars: with(map[string]string{"DEPLOY_MLFLOW_USERNAME": "a:b"}), wantErr: []string{"DEPLOY_MLFLOW_USERNAME contains a colon"}},
		{name: "unknown auth", vars: with(map[string]string{"DEPLOY_MLFLOW_AUTH": "none"}), wantErr: []string{`DEPLOY_MLFLOW_AUTH="none" is not an auth mode`}},
		{name: "no backend", vars: with(map[string]string{"DEPLOY_MLFLOW_BACKEND_STORE_URI": "<unset>"}), wantErr: []string{"DEPLOY_MLFLOW_BACKEND_STORE_URI is not set"}},
		{name: "no artifacts", vars: with(map[string]string{"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION": "<unset>"}), wantErr: []string{"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION is not set"}},
		{name: "mlflow missing", vars: with(map[string]string{"DEPLOY_MLFLOW_MLFLOW_COMMAND": "mlflow-nope"}), wantErr: []string{"DEPLOY_MLFLOW_MLFLOW_COMMAND"}},
		{name: "bad grace", vars: with(map[string]string{"DEPLOY_MLFLOW_SHUTDOWN_GRACE": "8"}), wantErr: []string{"DEPLOY_MLFLOW_SHUTDOWN_GRACE"}},
		{name: "grace", vars: with(map[string]string{"DEPLOY_MLFLOW_SHUTDOWN_GRACE": "2500ms"}), check: func(t *testing.T, c config) {
			if c.shutdownGrace != 2500*time.Millisecond || len(c.warnings) != 0 {
				t.Errorf("grace = %v, warnings %q", c.shutdownGrace, c.warnings)
			}
		}},
		{name: "grace at the most", vars: with(map[string]string{"DEPLOY_MLFLOW_SHUTDOWN_GRACE": "7s"}), check: func(t *testing.T, c config) {
			if c.shutdownGrace != 7*time.Second || len(c.warnings) != 0 {
				t.Errorf("grace = %v, warnings %q", c.shutdownGrace, c.warnings)
			}
		}},
		{name: "grace clamped", vars: with(map[string]string{"DEPLOY_MLFLOW_SHUTDOWN_GRACE": "8s"}), check: func(t *testing.T, c config) {
			if c.shutdownGrace != 7*time.Second || len(c.warnings) != 1 || !strings.Contains(c.warnings[0], "DEPLOY_MLFLOW_SHUTDOWN_GRACE=8s") {
				t.Errorf("grace = %v, warnings %q; want 7s and a warning", c.shutdownGrace, c.warnings)
			}
		}},
		{name: "migration timeout", vars: with(map[string]string{"DEPLOY_MLFLOW_MIGRATION_TIMEOUT": "10m"}), check: func(t *testing.T, c config) {
			if c.migrationTimeout != 10*time.Minute {
				t.Errorf("migration timeout = %v", c.migrationTimeout)
			}
		}},
		{name: "bad migration timeout", vars: with(map[string]string{"DEPLOY_MLFLOW_MIGRATION_TIMEOUT": "0s"}), wantErr: []string{"DEPLOY_MLFLOW_MIGRATION_TIMEOUT"}},
		{name: "bad port", vars: with(map[string]string{"PORT": "http"}), wantErr: []string{"PORT"}},
		{name: "every problem at once", vars: map[string]string{"DEPLOY_MLFLOW_AUTH": "basic"},
			wantErr: []string{"DEPLOY_MLFLOW_USERNAME", "DEPLOY_MLFLOW_BACKEND_STORE_URI", "DEPLOY_MLFLOW_ARTIFACTS_DESTINATION"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(testEnv(tt.vars))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "s3cret-password") {
				t.Errorf("error quotes the password: %q", err)
			}
		})
	}
}

// TestAcceptedPasswordIsRedacted: every password the server accepts is long enough to be redacted wherever
// it appears in a log line.
func TestAcceptedPasswordIsRedacted(t *testing.T) {
	t.Parallel()
	if minPasswordLength < minLiteralSecret {
		t.Fatalf("passwords of %d characters are accepted, but only secrets of %d bytes are redacted", minPasswordLength, minLiteralSecret)
	}
	for _, pw := range []string{"abcdefghijkl", "pässwörd-äöü", "correct horse battery staple"} {
		c, err := loadConfig(testEnv(map[string]string{
			"DEPLOY_MLFLOW_BACKEND_STORE_URI":     "sqlite:///mlflow.db",
			"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION": "/tmp/artifacts",
			"DEPLOY_MLFLOW_USERNAME":              "alice",
			"DEPLOY_MLFLOW_PASSWORD":              pw,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if got := newRedactor(c.secrets()...).redact("said " + pw + " once"); strings.Contains(got, pw) {
			t.Errorf("password %q not redacted: %q", pw, got)
		}
	}
}

// TestShutdownFitsCloudRun: the longest shutdown, the grace period at its most, MLflow's stop and the wait
// for its last lines, ends before Cloud Run's SIGKILL, 10 s after SIGTERM.
func TestShutdownFitsCloudRun(t *testing.T) {
	t.Parallel()
	if total := maxShutdownGrace + mlflowStopTimeout + relayDrainTimeout; total >= 10*time.Second || maxShutdownGrace != 7*time.Second {
		t.Errorf("grace %v + MLflow stop %v + last lines %v = %v; want 7s of grace and less than 10s in all", maxShutdownGrace, mlflowStopTimeout, relayDrainTimeout, total)
	}
}
