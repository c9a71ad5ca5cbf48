package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/localcloud"
)

func TestAuthMode(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{"": "basic", "basic": "basic", "MLflow": "mlflow", " iam ": "iam"} {
		if got, err := authMode(value); err != nil || got != want {
			t.Errorf("authMode(%q) = %q, %v; want %q", value, got, err, want)
		}
	}
	_, err := authMode("oauth")
	if err == nil || !strings.Contains(err.Error(), authEnv) || !strings.Contains(err.Error(), "mlflow or iam") {
		t.Errorf("authMode(oauth) = %v, want an error naming %s and the modes", err, authEnv)
	}
}

func TestWithAuth(t *testing.T) {
	t.Parallel()
	base := map[string]string{"INPUT_USERNAME_SECRET": "mlflow_id", "INPUT_PASSWORD_SECRET": "mlflow_pass", "INPUT_REGION": "r"}
	for _, tc := range []struct {
		mode string
		want map[string]string
	}{
		{"basic", map[string]string{"INPUT_AUTH": "basic", "INPUT_USERNAME_SECRET": "mlflow_id", "INPUT_PASSWORD_SECRET": "mlflow_pass", "INPUT_REGION": "r"}},
		{"mlflow", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_USERNAME_SECRET": "mlflow_id", "INPUT_PASSWORD_SECRET": "mlflow_pass", "INPUT_REGION": "r"}},
		{"iam", map[string]string{"INPUT_AUTH": "iam", "INPUT_ALLOW_UNAUTHENTICATED": "false", "INPUT_REGION": "r"}},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		withAuth(env, tc.mode)
		if diff := cmp.Diff(tc.want, env); diff != "" {
			t.Errorf("withAuth(%s) (-want +got):\n%s", tc.mode, diff)
		}
	}
}

func TestLoginHelp(t *testing.T) {
	t.Parallel()
	const url, password = "http://127.0.0.1:1234", "s3cret-password"
	for _, tc := range []struct {
		mode          string
		want, wantNot []string
	}{
		{"basic", []string{"username  " + localcloud.Username, "password  " + password}, []string{"signup", "identity token"}},
		{"mlflow", []string{"first admin", "username  " + localcloud.Username, "password  " + password, url + "/#/admin", url + "/signup",
			url + "/api/2.0/mlflow/users/create", url + "/ajax-api/2.0/mlflow/users/current"}, []string{"identity token"}},
		{"iam", []string{"identity token", "print-identity-token", "run services proxy"}, []string{password}},
	} {
		help := loginHelp(tc.mode, url, password)
		for _, w := range tc.want {
			if !strings.Contains(help, w) {
				t.Errorf("loginHelp(%s) does not say %q:\n%s", tc.mode, w, help)
			}
		}
		for _, w := range tc.wantNot {
			if strings.Contains(help, w) {
				t.Errorf("loginHelp(%s) says %q:\n%s", tc.mode, w, help)
			}
		}
	}
}
