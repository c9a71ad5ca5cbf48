package config

import (
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// auth reads who guards the service: the server's basic auth or MLflow's own auth app, each with the
// (first admin's) credentials in secrets and the service public; or Cloud Run IAM, with the service
// private. The settings of MLflow's auth app are read in mlflowauth.go.
func (p *parser) auth() {
	p.c.Auth = p.inputOr("auth", serverenv.AuthBasic)
	allow := p.input("allow_unauthenticated")
	switch p.c.Auth {
	case serverenv.AuthBasic, serverenv.AuthMLflow:
		p.passwordAuth(allow)
	case serverenv.AuthIAM:
		p.iamAuth(allow)
	default:
		p.fail("auth", p.c.Auth, "use basic (HTTP basic auth by the server), mlflow (MLflow's own users and permissions) or iam (Cloud Run IAM guards the service)")
		return
	}
	p.mlflowAuth()
}

// passwordAuth reads the credentials of auth basic (the one user) or auth mlflow (the first admin).
func (p *parser) passwordAuth(allow string) {
	p.c.Username = p.credential("username_secret", "username")
	p.c.Password = p.credential("password_secret", "password")
	p.c.AllowUnauthed = allow == "" || p.boolean("allow_unauthenticated", allow)
	// boolean has already refused anything but true and false.
	if !p.c.AllowUnauthed && strings.EqualFold(allow, "false") {
		// Cloud Run IAM and the password check would both need the Authorization header.
		p.fail("allow_unauthenticated", allow, "with auth: "+p.c.Auth+" the service must be public: Cloud Run IAM would claim the Authorization header that the password check needs, and no MLflow client could get in; set auth: iam to let IAM guard the service instead")
	}
}

// credential is the required secret reference in input, which holds the username or password of auth
// basic, or of the first admin with auth mlflow.
func (p *parser) credential(input, what string) *SecretRef {
	ref, ok := p.secretRef(input)
	if ok {
		return &ref
	}
	if p.input(input) == "" {
		whose := "the " + what
		if p.c.Auth == serverenv.AuthMLflow {
			whose = "the first admin's " + what
		}
		p.fail(input, "", "is required when auth is "+p.c.Auth+": name the Secret Manager secret that holds "+whose+" (or set auth: iam to let Cloud Run IAM guard the service)")
	}
	return nil
}

func (p *parser) iamAuth(allow string) {
	for _, in := range []string{"username_secret", "password_secret"} {
		if v := p.input(in); v != "" {
			p.fail(in, shown(v), "is only used when auth is basic or mlflow; remove it, or set auth: basic or auth: mlflow")
		}
	}
	p.c.AllowUnauthed = allow != "" && p.boolean("allow_unauthenticated", allow)
	if p.c.AllowUnauthed {
		p.fail("allow_unauthenticated", allow, "must be false when auth is iam: with no password check, Cloud Run IAM is the only guard, and allUsers would open the server to anyone")
	}
}
