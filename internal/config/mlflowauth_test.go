package config

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// TestParseAuthModes: what each auth mode sets, and that the action's own secrets are read, in order,
// as MLflow's variables with every other secret reference.
func TestParseAuthModes(t *testing.T) {
	t.Parallel()
	ref := func(secret, input string) SecretRef {
		return SecretRef{Project: "my-project", Secret: secret, Version: "latest", Input: input}
	}
	cases := []struct {
		name       string
		change     map[string]string
		auth, perm string
		public     bool
		users      bool
		secrets    []SecretMount
		defaultKEK bool
	}{
		{"basic", nil, "basic", "", true, true, nil, true},
		{"basic with kek", map[string]string{"INPUT_KEK_PASSPHRASE_SECRET": "kek"}, "basic", "", true, true,
			[]SecretMount{{Env: serverenv.KEKPassphrase, Ref: ref("kek", "kek_passphrase_secret")}}, false},
		{"iam with kek", map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "", "INPUT_KEK_PASSPHRASE_SECRET": "kek"},
			"iam", "", false, false, []SecretMount{{Env: serverenv.KEKPassphrase, Ref: ref("kek", "kek_passphrase_secret")}}, false},
		{"mlflow", map[string]string{"INPUT_AUTH": "mlflow"}, "mlflow", "READ", true, true, nil, true},
		{"mlflow public said", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_ALLOW_UNAUTHENTICATED": "true"}, "mlflow", "READ", true, true, nil, true},
		{"mlflow lower case permission", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "no_permissions"}, "mlflow", "NO_PERMISSIONS", true, true, nil, true},
		{"mlflow everything", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "MANAGE", "INPUT_FLASK_SECRET_KEY_SECRET": "flask:3",
			"INPUT_KEK_PASSPHRASE_SECRET": "projects/vault-proj/secrets/kek", "INPUT_SECRETS": "API_KEY=api"}, "mlflow", "MANAGE", true, true,
			[]SecretMount{
				{Env: serverenv.FlaskSecretKey, Ref: SecretRef{Project: "my-project", Secret: "flask", Version: "3", Input: "flask_secret_key_secret"}},
				{Env: serverenv.KEKPassphrase, Ref: SecretRef{Project: "vault-proj", Secret: "kek", Version: "latest", Input: "kek_passphrase_secret"}},
				{Env: "API_KEY", Ref: ref("api", "secrets")},
			}, false},
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
				t.Fatal(err)
			}
			if c.Auth != tc.auth || c.DefaultPermission != tc.perm || c.AllowUnauthed != tc.public || (c.Username != nil) != tc.users || (c.Password != nil) != tc.users {
				t.Errorf("auth %q, default permission %q, public %v, username %v, password %v; want %q, %q, %v, credentials %v",
					c.Auth, c.DefaultPermission, c.AllowUnauthed, c.Username, c.Password, tc.auth, tc.perm, tc.public, tc.users)
			}
			if diff := cmp.Diff(tc.secrets, c.Secrets); diff != "" {
				t.Errorf("secrets (-want +got):\n%s", diff)
			}
			if c.UsesDefaultKEK() != tc.defaultKEK {
				t.Errorf("UsesDefaultKEK = %v, want %v", c.UsesDefaultKEK(), tc.defaultKEK)
			}
			// Every secret the service reads is looked up, checked for the runtime account and pinned.
			refs := c.SecretRefs()
			for _, m := range tc.secrets {
				if !slices.Contains(refs, m.Ref) {
					t.Errorf("SecretRefs() %v lacks %v", refs, m.Ref)
				}
			}
		})
	}
}
