package config

import (
	"slices"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// permissions are what MLflow's auth app can give a user on a resource the user does not own
// (mlflow.server.auth.permissions).
var permissions = []string{"READ", "EDIT", "MANAGE", "NO_PERMISSIONS"}

// DefaultPermission is what new users get with auth mlflow unless default_permission says otherwise:
// MLflow's own default.
const DefaultPermission = "READ"

// mlflowAuth reads the inputs that only MLflow's auth app uses, and refuses them with any other auth.
func (p *parser) mlflowAuth() {
	if p.c.Auth != serverenv.AuthMLflow {
		for _, input := range []string{"default_permission", "flask_secret_key_secret"} {
			if v := p.input(input); v != "" {
				p.fail(input, shown(v), "is only used when auth is mlflow (MLflow's own users and permissions); remove it, or set auth: mlflow")
			}
		}
		return
	}
	p.c.DefaultPermission = DefaultPermission
	if perm := p.input("default_permission"); perm != "" {
		// MLflow spells them in upper case; read is taken for READ, whose intent is plain.
		p.c.DefaultPermission = strings.ToUpper(perm)
		if !slices.Contains(permissions, p.c.DefaultPermission) {
			p.fail("default_permission", perm, "use READ (the default: every user can read every experiment and model), EDIT, MANAGE or NO_PERMISSIONS (users see only what they own or are given)")
		}
	}
	if ref, ok := p.secretRef("flask_secret_key_secret"); ok {
		p.serverSecret(serverenv.FlaskSecretKey, ref)
	}
}
