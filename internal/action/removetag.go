package action

import (
	"context"

	"github.com/sethvargo/go-githubactions"
	"golang.org/x/oauth2"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// removeTag is the whole run with remove_tag: it removes the tag from the live service and deploys
// nothing, so it needs neither the secrets nor the image. The outputs describe the service as it is.
func removeTag(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, cfg *config.Config, gh *githubactions.Action) (*Outputs, error) {
	gh.Group("Cloud Run")
	d, closeClients, err := newDeployer(ctx, getenv, ts, nil, gh)
	if err != nil {
		gh.EndGroup()
		return nil, err
	}
	defer closeClients()
	res, err := d.RemoveTag(ctx, cloudrun.Name(cfg.ProjectID, cfg.Region, cfg.Service), cfg.RemoveTag, cfg.WaitTimeout)
	gh.EndGroup()
	if err != nil {
		return nil, err
	}
	o := &Outputs{URL: res.Service.GetUri(), Revision: res.Revision, Service: cfg.Service, PreviousRevision: res.Previous, Changed: res.Updated}
	if ctrs := res.Service.GetTemplate().GetContainers(); len(ctrs) > 0 {
		o.Image = ctrs[0].GetImage()
	}
	writeOutputs(gh, getenv, o)
	return o, nil
}
