package action

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/sethvargo/go-githubactions"
	"golang.org/x/oauth2"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/image"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

// plan is the rest of a dry run, once the inputs and secrets are checked: it builds the image without
// pushing it, reads the live service and says what a deploy would change. It only reads.
func plan(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, cfg *config.Config, binary string, tag name.Tag,
	resolved *secrets.Resolution, gh *githubactions.Action) (*Outputs, error) {
	gh.Group("Image (not pushed)")
	auth := image.WithAuth(tag.Registry, google.NewTokenSourceAuthenticator(ts))
	gh.Infof("base image %s", cfg.BaseImage)
	base, err := image.Base(ctx, cfg.BaseImage, auth)
	var digest name.Digest
	if err == nil {
		digest, err = builtDigest(base, binary, cfg, tag)
	}
	gh.EndGroup()
	if err != nil {
		return nil, err
	}
	gh.Infof("a deploy would push %s", digest)

	gh.Group("Cloud Run (read only)")
	d, closeClients, err := newDeployer(ctx, getenv, ts, resolved.ProjectNumbers, gh)
	if err != nil {
		gh.EndGroup()
		return nil, err
	}
	defer closeClients()
	d.Routing = cloudrun.Routing{NoTraffic: cfg.NoTraffic, Tag: cfg.Tag}
	lines, live, err := d.PlanDeploy(ctx, cloudrun.Desired(resolved.Apply(cfg), digest.String()))
	gh.EndGroup()
	if err != nil {
		return nil, err
	}
	gh.Infof("dry run: a deploy of %s would make %s", cfg.Service, planSummary(lines))
	for _, l := range lines {
		gh.Infof("  %s", l)
	}

	o := &Outputs{Image: digest.String(), Service: cfg.Service}
	if live != nil {
		o.URL, o.Revision, o.PreviousRevision = live.GetUri(), shortName(live.GetLatestReadyRevision()), shortName(live.GetLatestReadyRevision())
		if u := cloudrun.TagURL(live, cfg.Tag); u != "" {
			o.URL = u
		}
	}
	writeOutputs(gh, getenv, o)
	if getenv("GITHUB_STEP_SUMMARY") != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "### Plan (dry run): MLflow on Cloud Run: %s\n\nNothing was written. A deploy would push `%s` and make %s\n\n", cfg.Service, digest, planSummary(lines))
		for _, l := range lines {
			fmt.Fprintf(&b, "- `%s`\n", l)
		}
		gh.AddStepSummary(b.String())
	}
	return o, nil
}

// builtDigest is the digest the image would have in the registry: the build is deterministic, so it
// is the one a deploy of the same inputs pushes.
func builtDigest(base v1.Image, binary string, cfg *config.Config, tag name.Tag) (name.Digest, error) {
	img, err := image.Build(base, binary, image.Options{Source: cfg.Source, Revision: cfg.Commit})
	if err != nil {
		return name.Digest{}, fmt.Errorf("building the image: %w", err)
	}
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("computing the image's digest: %w", err)
	}
	return tag.Context().Digest(h.String()), nil
}

func planSummary(lines []string) string {
	switch len(lines) {
	case 0:
		return "no change."
	case 1:
		return "1 change:"
	}
	return fmt.Sprintf("%d changes:", len(lines))
}

func shortName(rev string) string {
	if rev == "" {
		return ""
	}
	return rev[strings.LastIndex(rev, "/")+1:]
}
