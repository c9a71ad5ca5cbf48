package main

import (
	"slices"
	"strings"
	"testing"
)

func envMap(kvs []string) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; dup {
			m[k+" (duplicate)"] = v
		}
		m[k] = v
	}
	return m
}

func TestMLflowEnv(t *testing.T) {
	t.Parallel()
	pg := config{backendURI: "postgresql+psycopg2://u:pw@h/d", artifacts: "gs://b/p"}
	tests := []struct {
		name    string
		environ []string
		cfg     config
		want    map[string]string // "" means absent
	}{
		{
			name: "forced, defaulted, and credentials dropped",
			environ: []string{
				"PATH=/usr/bin", "DEPLOY_MLFLOW_USERNAME=alice", "DEPLOY_MLFLOW_PASSWORD=s3cret",
				"DEPLOY_MLFLOW_BACKEND_STORE_URI=postgresql://x", "DEPLOY_MLFLOW_AUTH=basic",
				"MLFLOW_HOST=0.0.0.0", "MLFLOW_DEFAULT_ARTIFACT_ROOT=gs://b/p", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true",
				"MLFLOW_SERVER_ALLOWED_HOSTS=*", "MLFLOW_STATIC_PREFIX=/mlflow",
			},
			cfg: pg,
			want: map[string]string{
				"PATH":                                "/usr/bin",
				"DEPLOY_MLFLOW_USERNAME":              "",
				"DEPLOY_MLFLOW_PASSWORD":              "",
				"DEPLOY_MLFLOW_BACKEND_STORE_URI":     "",
				"DEPLOY_MLFLOW_AUTH":                  "",
				"MLFLOW_BACKEND_STORE_URI":            "postgresql+psycopg2://u:pw@h/d",
				"MLFLOW_ARTIFACTS_DESTINATION":        "gs://b/p",
				"MLFLOW_SERVE_ARTIFACTS":              "true",
				"MLFLOW_HOST":                         "127.0.0.1",
				"MLFLOW_PORT":                         "5123",
				"MLFLOW_SERVER_ALLOWED_HOSTS":         "127.0.0.1:5123",
				"MLFLOW_SERVER_ENABLE_JOB_EXECUTION":  "false",
				"MLFLOW_DEFAULT_ARTIFACT_ROOT":        "",
				"MLFLOW_STATIC_PREFIX":                "",
				"MLFLOW_WORKERS":                      "2",
				"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE":    "2",
				"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "2",
				"PYTHONUNBUFFERED":                    "1",
				"MLFLOW_UVICORN_OPTS":                 "--no-access-log",
			},
		},
		{
			name:    "MLflow's tunables pass through",
			environ: []string{"MLFLOW_WORKERS=4", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=10", "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE=1800", "MLFLOW_UVICORN_OPTS=--timeout-keep-alive 30"},
			cfg:     pg,
			want: map[string]string{
				"MLFLOW_WORKERS":                      "4",
				"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE":    "10",
				"MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "2",
				"MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": "1800",
				"MLFLOW_UVICORN_OPTS":                 "--timeout-keep-alive 30",
			},
		},
		{
			name:    "gunicorn chosen: no uvicorn options added",
			environ: []string{"MLFLOW_GUNICORN_OPTS=--timeout 60"},
			cfg:     pg,
			want:    map[string]string{"MLFLOW_UVICORN_OPTS": "", "MLFLOW_GUNICORN_OPTS": "--timeout 60"},
		},
		{
			name: "sqlite gets no pool settings",
			cfg:  config{backendURI: "sqlite:///mlflow.db", artifacts: "./art"},
			want: map[string]string{"MLFLOW_WORKERS": "2", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mlflowEnv(tt.environ, tt.cfg, 5123)
			m := envMap(got)
			for k, want := range tt.want {
				if v, ok := m[k]; want == "" && ok {
					t.Errorf("%s=%q is set, want it absent", k, v)
				} else if want != "" && v != want {
					t.Errorf("%s=%q, want %q", k, v, want)
				}
			}
			for k := range m {
				if strings.HasSuffix(k, "(duplicate)") {
					t.Errorf("%s", k)
				}
			}
			if slices.ContainsFunc(got, func(kv string) bool { return strings.Contains(kv, "s3cret") }) {
				t.Errorf("the basic-auth password reaches MLflow: %q", got)
			}
		})
	}
}
