package config

import "github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"

// kekPassphrase reads the secret holding the passphrase under which MLflow encrypts the AI Gateway
// provider keys it stores; without one MLflow uses a default passphrase that is public in its source.
func (p *parser) kekPassphrase() {
	if ref, ok := p.secretRef("kek_passphrase_secret"); ok {
		p.serverSecret(serverenv.KEKPassphrase, ref)
	}
}

// serverSecret exposes a secret that one of the action's own inputs names as one of MLflow's variables.
// It goes among Secrets, ahead of those of the secrets input, so that every step that handles secret
// references (the Secret Manager lookup, the runtime account's access check, pinning) covers it too.
func (p *parser) serverSecret(env string, ref SecretRef) {
	p.c.Secrets = append(p.c.Secrets, SecretMount{Env: env, Ref: ref})
}

// UsesDefaultKEK tells whether MLflow would encrypt stored AI Gateway provider keys under its public
// default passphrase, because kek_passphrase_secret is not set.
func (c *Config) UsesDefaultKEK() bool {
	for _, m := range c.Secrets {
		if m.Env == serverenv.KEKPassphrase {
			return false
		}
	}
	return true
}
