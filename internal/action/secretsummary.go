package action

import (
	"fmt"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

// writeSecretsSummary adds to the step summary which version of each secret the service reads, and
// how a rotation reaches it.
func writeSecretsSummary(gh *githubactions.Action, getenv func(string) string, cfg *config.Config, resolved *secrets.Resolution) {
	if getenv("GITHUB_STEP_SUMMARY") == "" {
		return
	}
	gh.AddStepSummary(secretsSummary(cfg, resolved))
}

// secretsSummary is the summary's secrets section in Markdown.
func secretsSummary(cfg *config.Config, resolved *secrets.Resolution) string {
	var b strings.Builder
	b.WriteString("#### Secrets\n\n")
	if cfg.PinSecretVersions {
		b.WriteString("References to `latest` are pinned to the version current at deploy time (`secret_versions: pinned`), " +
			"so every instance of the revision reads the same value. To roll out a rotated secret, re-run this workflow: " +
			"it deploys one new revision with the new version numbers.\n\n")
	} else {
		b.WriteString("Nothing is pinned (`secret_versions: latest`): each instance reads the newest version of a secret when it starts, " +
			"so after a rotation old and new instances may hold different values, and re-running this workflow changes nothing.\n\n")
	}
	for _, line := range resolved.Lines(cfg.ProjectID) {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	if cfg.UsesDefaultKEK() {
		fmt.Fprintf(&b, "\n> [!WARNING]\n> %s\n", defaultKEK)
	}
	return b.String()
}

// defaultKEK says what happens without kek_passphrase_secret and how to fix it; the warning annotation
// and the step summary both show it. It names no value: MLflow's default passphrase is public anyway.
const defaultKEK = "kek_passphrase_secret is not set, so AI Gateway provider keys (API keys of OpenAI, Anthropic and the like) " +
	"stored in this MLflow would be encrypted with MLflow's default passphrase, which is public in its source: " +
	"anyone who can read the tracking database could decrypt them. To fix it, create a secret holding a long random passphrase " +
	"(openssl rand -base64 32 | gcloud secrets create mlflow_kek --data-file=-), let the runtime service account read it " +
	"(roles/secretmanager.secretAccessor), and set kek_passphrase_secret: mlflow_kek. " +
	"If keys are stored already, first re-encrypt them under the new passphrase with mlflow crypto rotate-kek."

// warnDefaultKEK annotates the run when MLflow would encrypt stored provider keys under its default passphrase.
func warnDefaultKEK(gh *githubactions.Action, cfg *config.Config) {
	if cfg.UsesDefaultKEK() {
		gh.WithFieldsMap(map[string]string{"title": "deploy-mlflow input kek_passphrase_secret"}).Warningf("%s", defaultKEK)
	}
}
