package config

import (
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// auth reads who guards the service: the server's basic auth, with its credentials in secrets and the
// service public, or Cloud Run IAM, with the service private.
func (p *parser) auth() {
	p.c.Auth = p.inputOr("auth", serverenv.AuthBasic)
	allow := p.input("allow_unauthenticated")
	switch p.c.Auth {
	case serverenv.AuthBasic:
		p.basicAuth(allow)
	case serverenv.AuthIAM:
		p.iamAuth(allow)
	default:
		p.fail("auth", p.c.Auth, "use basic (HTTP basic auth by the server) or iam (Cloud Run IAM guards the service)")
	}
}

func (p *parser) basicAuth(allow string) {
	p.c.Username = p.credential("username_secret", "username")
	p.c.Password = p.credential("password_secret", "password")
	p.c.AllowUnauthed = allow == "" || p.boolean("allow_unauthenticated", allow)
	// boolean has already refused anything but true and false.
	if !p.c.AllowUnauthed && strings.EqualFold(allow, "false") {
		// Cloud Run IAM and basic auth would both need the Authorization header.
		p.fail("allow_unauthenticated", allow, "with auth: basic the service must be public: Cloud Run IAM would claim the Authorization header that basic auth needs, and no MLflow client could get in; set auth: iam to let IAM guard the service instead")
	}
}

// credential is the required secret reference in input, which holds the basic-auth username or password.
func (p *parser) credential(input, what string) *SecretRef {
	ref, ok := p.secretRef(input)
	if ok {
		return &ref
	}
	if p.input(input) == "" {
		p.fail(input, "", "is required when auth is basic: name the Secret Manager secret that holds the "+what+" (or set auth: iam to let Cloud Run IAM guard the service)")
	}
	return nil
}

func (p *parser) iamAuth(allow string) {
	for _, in := range []string{"username_secret", "password_secret"} {
		if v := p.input(in); v != "" {
			p.fail(in, shown(v), "is only used when auth is basic; remove it, or set auth: basic")
		}
	}
	p.c.AllowUnauthed = allow != "" && p.boolean("allow_unauthenticated", allow)
	if p.c.AllowUnauthed {
		p.fail("allow_unauthenticated", allow, "must be false when auth is iam: with no basic auth, Cloud Run IAM is the only guard, and allUsers would open the server to anyone")
	}
}
