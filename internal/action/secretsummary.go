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
	return b.String()
}
