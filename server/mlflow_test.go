package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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

// TestDirectLaunch: for the settings mlflowEnv produces, uvicorn is started as `mlflow server` 3.17.2 would
// start it, with the variables the CLI hands its workers; anything the direct launch does not reproduce
// sends the server to the CLI.
func TestDirectLaunch(t *testing.T) {
	t.Parallel()
	inst := mlflowInstall{python: "/venv/bin/python3", sitePackages: "/venv/lib/python3.11/site-packages", version: "3.17.2"}
	cfg := config{backendURI: "postgresql+psycopg2://u:pw@h/d", artifacts: "gs://b/p"}
	base := []string{"PATH=/usr/bin", "MLFLOW_FLASK_SERVER_SECRET_KEY=k", "_MLFLOW_SERVER_FILE_STORE=/stale"}
	logConfig := "/venv/lib/python3.11/site-packages/mlflow/server/uvicorn_log_config.yaml"
	tests := []struct {
		name       string
		inst       mlflowInstall
		args       []string
		adminReady bool
		environ    []string
		wantArgv   string // joined with spaces; "" when the CLI must run
		whyNot     string
		wantEnv    map[string]string // "" means absent
	}{
		{
			name:     "the server's settings",
			wantArgv: "/venv/bin/python3 -m uvicorn --no-access-log --log-config " + logConfig + " --host 127.0.0.1 --port 5123 --workers 2 mlflow.server.fastapi_app:app",
			wantEnv: map[string]string{
				"_MLFLOW_SERVER_FILE_STORE":            cfg.backendURI,
				"_MLFLOW_SERVER_REGISTRY_STORE":        cfg.backendURI,
				"_MLFLOW_SERVER_ARTIFACT_ROOT":         "mlflow-artifacts:/",
				"_MLFLOW_SERVER_SERVE_ARTIFACTS":       "true",
				"_MLFLOW_SERVER_ARTIFACT_DESTINATION":  "gs://b/p",
				"_MLFLOW_SERVER_BOOT_ID":               "boot",
				"_MLFLOW_IN_JOB_EXECUTOR":              "false",
				"_MLFLOW_SGI_NAME":                     "uvicorn",
				"MLFLOW_ENABLE_WORKSPACES":             "false",
				"MLFLOW_SERVER_X_FRAME_OPTIONS":        "SAMEORIGIN",
				"MLFLOW_SERVER_SECRETS_CACHE_TTL":      "60",
				"MLFLOW_SERVER_SECRETS_CACHE_MAX_SIZE": "1000",
				"MLFLOW_SERVER_ALLOWED_HOSTS":          "127.0.0.1:5123",
				"MLFLOW_SERVER_ENABLE_JOB_EXECUTION":   "false",
				"MLFLOW_FLASK_SERVER_SECRET_KEY":       "k",
				"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE":     "2",
				"PYTHONUNBUFFERED":                     "1",
				"PATH":                                 "/usr/bin",
			},
		},
		{
			name:     "uvicorn options and workers pass through",
			environ:  []string{"MLFLOW_UVICORN_OPTS=--timeout-keep-alive 30 --log-config=/etc/log.yaml", "MLFLOW_WORKERS=3", "MLFLOW_SERVER_X_FRAME_OPTIONS=DENY"},
			wantArgv: "/venv/bin/python3 -m uvicorn --timeout-keep-alive 30 --log-config=/etc/log.yaml --host 127.0.0.1 --port 5123 --workers 3 mlflow.server.fastapi_app:app",
			wantEnv:  map[string]string{"MLFLOW_SERVER_X_FRAME_OPTIONS": "DENY"},
		},
		{
			name:       "the auth app, its admin set up",
			args:       []string{"server", "--app-name", "basic-auth"},
			adminReady: true,
			environ:    []string{authBootstrappedEnv + "=false"},
			wantArgv:   "/venv/bin/python3 -m uvicorn --no-access-log --log-config " + logConfig + " --host 127.0.0.1 --port 5123 --workers 2 --factory mlflow.server.auth:create_app",
			wantEnv: map[string]string{
				authBootstrappedEnv:         "true",
				"_MLFLOW_SERVER_FILE_STORE": cfg.backendURI,
				"_MLFLOW_SGI_NAME":          "uvicorn",
			},
		},
		{name: "the auth app, admin not set up", args: []string{"server", "--app-name", "basic-auth"}, whyNot: "admin user was not set up"},
		{name: "the auth app without a secret key", args: []string{"server", "--app-name", "basic-auth"}, adminReady: true, environ: []string{"MLFLOW_FLASK_SERVER_SECRET_KEY="}, whyNot: "MLFLOW_FLASK_SERVER_SECRET_KEY is unset"},
		{name: "another app", args: []string{"server", "--app-name", "custom"}, adminReady: true, whyNot: "arguments"},
		{name: "more arguments", args: []string{"server", "--dev"}, whyNot: "arguments"},
		{name: "plain server: no bootstrap flag", adminReady: true, wantArgv: "/venv/bin/python3 -m uvicorn --no-access-log --log-config " + logConfig + " --host 127.0.0.1 --port 5123 --workers 2 mlflow.server.fastapi_app:app", wantEnv: map[string]string{authBootstrappedEnv: ""}},
		{name: "another release", inst: mlflowInstall{python: inst.python, sitePackages: inst.sitePackages, version: "3.16.0"}, whyNot: "MLflow 3.16.0 is not"},
		{name: "gunicorn", environ: []string{"MLFLOW_GUNICORN_OPTS=--timeout 60"}, whyNot: "MLFLOW_GUNICORN_OPTS is set"},
		{name: "prometheus", environ: []string{"MLFLOW_EXPOSE_PROMETHEUS=/tmp/p"}, whyNot: "MLFLOW_EXPOSE_PROMETHEUS is set"},
		{name: "workspaces", environ: []string{"MLFLOW_ENABLE_WORKSPACES=true"}, whyNot: "MLFLOW_ENABLE_WORKSPACES is set"},
		{name: "security middleware off", environ: []string{"MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE=1"}, whyNot: "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE is set"},
		{name: "quoted uvicorn options", environ: []string{`MLFLOW_UVICORN_OPTS=--header "X: y"`}, whyNot: "quotes"},
		{name: "bad workers", environ: []string{"MLFLOW_WORKERS=many"}, whyNot: "MLFLOW_WORKERS=many"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.inst == (mlflowInstall{}) {
				tt.inst = inst
			}
			if tt.args == nil {
				tt.args = []string{"server"}
			}
			env := mlflowEnv(append(slices.Clone(base), tt.environ...), cfg, 5123)
			argv, got, whyNot := directLaunch(tt.inst, tt.args, env, "boot", tt.adminReady)
			if tt.wantArgv == "" {
				if whyNot == "" || !strings.Contains(whyNot, tt.whyNot) || argv != nil {
					t.Errorf("directLaunch = %q, %q; want the CLI, because of %q", argv, whyNot, tt.whyNot)
				}
				return
			}
			if whyNot != "" || strings.Join(argv, " ") != tt.wantArgv {
				t.Errorf("directLaunch = %q (%s)\nwant %s", strings.Join(argv, " "), whyNot, tt.wantArgv)
			}
			m := envMap(got)
			for k, want := range tt.wantEnv {
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
		})
	}
}

// TestWarmUp: the first request asks for the Default experiment; a failure is logged but does not stop
// the start, authentication is left alone, and only the end of ctx is returned.
func TestWarmUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status  int
		want    string // in the log; "" for nothing at WARNING
		wantErr bool
	}{
		{status: http.StatusOK, want: "tracking store is open"},
		{status: http.StatusInternalServerError, want: `answered 500 Internal Server Error: {\"error_code\":\"x\"}`},
		{status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()
			paths := make(chan string, 10)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				paths <- r.URL.RequestURI()
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(`{"error_code":"x"}`))
			}))
			defer srv.Close()
			out := &lineWriter{}
			if err := warmUp(context.Background(), newLogger(out, newRedactor()), srv.Listener.Addr().String()); err != nil {
				t.Fatal(err)
			}
			srv.Close() // waits for the handler
			close(paths)
			var got []string
			for p := range paths {
				got = append(got, p)
			}
			if len(got) != 1 || got[0] != "/api/2.0/mlflow/experiments/get?experiment_id=0" {
				t.Errorf("asked for %q, want the Default experiment once", got)
			}
			if tt.want != "" && !strings.Contains(out.String(), tt.want) || tt.want == "" && strings.Contains(out.String(), "WARNING") {
				t.Errorf("log:\n%s\nwant %q", out, tt.want)
			}
		})
	}
	t.Run("stopping", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		}))
		defer srv.Close()
		if err := warmUp(ctx, newLogger(&lineWriter{}, newRedactor()), srv.Listener.Addr().String()); err == nil {
			t.Error("warmUp returned nil after ctx ended; the server would report ready while stopping")
		}
	})
}
