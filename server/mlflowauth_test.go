package main

import (
	"crypto/aes"
	"crypto/cipher"
	"slices"
	"strings"
	"testing"
)

func TestLoadConfigMLflowAuth(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"DEPLOY_MLFLOW_AUTH":                  "mlflow",
		"DEPLOY_MLFLOW_BACKEND_STORE_URI":     "postgresql+psycopg2://u:pw@/db?host=/cloudsql/p:r:i",
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION": "gs://bucket/mlflow",
		"DEPLOY_MLFLOW_USERNAME":              "admin",
		"DEPLOY_MLFLOW_PASSWORD":              "s3cret-password",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name     string
		vars     map[string]string
		wantErr  string
		wantPerm string
	}{
		{name: "default permission READ", vars: base, wantPerm: "READ"},
		{name: "NO_PERMISSIONS, any case", vars: with("DEPLOY_MLFLOW_DEFAULT_PERMISSION", "no_permissions"), wantPerm: "NO_PERMISSIONS"},
		{name: "unknown permission", vars: with("DEPLOY_MLFLOW_DEFAULT_PERMISSION", "WRITE"), wantErr: `DEPLOY_MLFLOW_DEFAULT_PERMISSION="WRITE" is not a permission`},
		{name: "short password", vars: with("DEPLOY_MLFLOW_PASSWORD", "short"), wantErr: "shorter than 12"},
		{name: "MLflow's old default password", vars: with("DEPLOY_MLFLOW_PASSWORD", "password1234"), wantErr: "default admin password"},
		{name: "no admin", vars: with("DEPLOY_MLFLOW_USERNAME", ""), wantErr: "MLflow's admin user"},
		{name: "bad KEK version", vars: with("MLFLOW_CRYPTO_KEK_VERSION", "0"), wantErr: "MLFLOW_CRYPTO_KEK_VERSION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(testEnv(tt.vars))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.defaultPermission != tt.wantPerm || c.flaskSecretKey != deriveFlaskSecretKey("s3cret-password") {
				t.Errorf("permission %q, flask key %q", c.defaultPermission, c.flaskSecretKey)
			}
		})
	}
	c, _ := loadConfig(testEnv(with("MLFLOW_FLASK_SERVER_SECRET_KEY", "from-a-secret-key")))
	if c.flaskSecretKey != "from-a-secret-key" {
		t.Errorf("flask key %q, want the one given", c.flaskSecretKey)
	}
	if r := newRedactor(c.secrets()...).redact("key from-a-secret-key"); strings.Contains(r, "from-a-secret-key") {
		t.Errorf("flask key not redacted: %s", r)
	}
}

func TestDeriveFlaskSecretKey(t *testing.T) {
	t.Parallel()
	a, b := deriveFlaskSecretKey("password-one-1"), deriveFlaskSecretKey("password-two-2")
	if a != deriveFlaskSecretKey("password-one-1") || a == b || len(a) != 64 || strings.Contains(a, "password") {
		t.Errorf("keys %q %q", a, b)
	}
}

func TestAuthINI(t *testing.T) {
	t.Parallel()
	got := authINI(config{defaultPermission: "EDIT", backendURI: "postgresql+psycopg2://u:p%40ss@/db"})
	want := "[mlflow]\ndefault_permission = EDIT\ndatabase_uri = postgresql+psycopg2://u:p%%40ss@/db\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
	if got != want {
		t.Errorf("authINI =\n%s\nwant\n%s", got, want)
	}
}

func TestMLflowAuthEnviron(t *testing.T) {
	t.Parallel()
	base := []string{"A=1", "MLFLOW_AUTH_ADMIN_PASSWORD=inherited", "MLFLOW_AUTH_CONFIG_PATH=/elsewhere", "MLFLOW_FLASK_SERVER_SECRET_KEY=old"}
	var none *mlflowAuth
	if got := none.environ(base); !slices.Equal(got, []string{"A=1", "MLFLOW_FLASK_SERVER_SECRET_KEY=old"}) {
		t.Errorf("other modes: %q", got)
	}
	a := &mlflowAuth{env: map[string]string{"MLFLOW_AUTH_CONFIG_PATH": "/tmp/x/basic_auth.ini", "MLFLOW_FLASK_SERVER_SECRET_KEY": "new"}}
	got := a.environ(base)
	slices.Sort(got)
	if want := []string{"A=1", "MLFLOW_AUTH_CONFIG_PATH=/tmp/x/basic_auth.ini", "MLFLOW_FLASK_SERVER_SECRET_KEY=new"}; !slices.Equal(got, want) {
		t.Errorf("environ = %q, want %q", got, want)
	}
	if !slices.Equal(a.serverArgs(), []string{"server", "--app-name", "basic-auth"}) || !slices.Equal(none.serverArgs(), []string{"server"}) {
		t.Errorf("server args %q / %q", a.serverArgs(), none.serverArgs())
	}
}

func TestShebangInterpreter(t *testing.T) {
	t.Parallel()
	tests := []struct{ line, want string }{
		{"#!/venv/bin/python\n", "/venv/bin/python"},
		{"#!/usr/bin/env python3\n", "python3"},
		{"#!/usr/bin/env -S python3\n", ""},
		{"\x7fELF", ""},
	}
	for _, tt := range tests {
		if got, _ := shebangInterpreter(tt.line); got != tt.want {
			t.Errorf("shebangInterpreter(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

// fakeKEK stands in for PBKDF2's 600,000 rounds: a key per passphrase and version.
func fakeKEK(passphrase string, version int) []byte {
	k := make([]byte, 32)
	copy(k, passphrase)
	k[31] = byte(version)
	return k
}

func wrapDEK(t *testing.T, kek []byte) []byte {
	t.Helper()
	block, _ := aes.NewCipher(kek)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, gcmNonceSize)
	return append(nonce, gcm.Seal(nil, nonce, make([]byte, 32), nil)...)
}

func TestJudgeKEK(t *testing.T) {
	t.Parallel()
	v1 := storedKey{name: "k1", wrappedDEK: wrapDEK(t, fakeKEK("old-pass-xyz", 1)), version: 1}
	v2 := storedKey{name: "k2", wrappedDEK: wrapDEK(t, fakeKEK("new-pass-xyz", 2)), version: 2}
	def := storedKey{name: "k0", wrappedDEK: wrapDEK(t, fakeKEK(mlflowDefaultKEKPassphrase, 1)), version: 1}
	tests := []struct {
		name       string
		keys       []storedKey
		passphrase string
		version    int
		wantEnv    []string
		wantErr    string
	}{
		{name: "no keys", passphrase: "anything"},
		{name: "same passphrase", keys: []storedKey{v1}, passphrase: "old-pass-xyz"},
		{name: "changed passphrase", keys: []storedKey{v1}, passphrase: "new-pass-xyz", wantErr: "mlflow crypto rotate-kek"},
		{name: "after rotation, version read from the database", keys: []storedKey{v2}, passphrase: "new-pass-xyz", wantEnv: []string{"MLFLOW_CRYPTO_KEK_VERSION=2"}},
		{name: "version set and matching", keys: []storedKey{v2}, passphrase: "new-pass-xyz", version: 2},
		{name: "version set, keys at another", keys: []storedKey{v1}, passphrase: "old-pass-xyz", version: 2, wantErr: "wrapped under KEK version 1"},
		{name: "two versions", keys: []storedKey{v1, v2}, passphrase: "new-pass-xyz", wantErr: "2 KEK versions"},
		{name: "default passphrase", keys: []storedKey{def}, passphrase: mlflowDefaultKEKPassphrase},
		{name: "passphrase set on keys stored under the default", keys: []storedKey{def}, passphrase: "new-pass-xyz", wantErr: "does not open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, err := judgeKEK(tt.keys, tt.passphrase, tt.version, fakeKEK)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), tt.passphrase) {
					t.Errorf("error holds the passphrase: %v", err)
				}
				return
			}
			if err != nil || !slices.Equal(env, tt.wantEnv) {
				t.Errorf("env %q, err %v; want %q", env, err, tt.wantEnv)
			}
		})
	}
}
