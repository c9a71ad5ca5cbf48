package action

import (
	"context"
	"fmt"
	"regexp"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"github.com/sethvargo/go-githubactions"
	"golang.org/x/oauth2"
	"google.golang.org/api/cloudresourcemanager/v3"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

var projectNumber = regexp.MustCompile(`^[0-9]+$`)

// runtimeAccount is the account Cloud Run will run the service as: service_account, or the project's
// Compute Engine default service account, whose number Secret Manager told (numbers). It is empty when
// that number is unknown.
func runtimeAccount(cfg *config.Config, numbers cloudrun.ProjectNumbers) (account string, isDefault bool) {
	if cfg.ServiceAccount != "" {
		return cfg.ServiceAccount, false
	}
	n := numbers[cfg.ProjectID]
	if n == "" && projectNumber.MatchString(cfg.ProjectID) {
		n = cfg.ProjectID
	}
	if n == "" {
		return "", true
	}
	return secrets.DefaultComputeAccount(n), true
}

// checkRuntimeAccess says which account the service will run as and checks, as far as the deploying
// identity may read IAM policies, that it may read every referenced secret: Cloud Run refuses the
// revision otherwise, after the image was pushed.
func checkRuntimeAccess(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, cfg *config.Config,
	numbers cloudrun.ProjectNumbers, gh *githubactions.Action) error {
	account, isDefault := runtimeAccount(cfg, numbers)
	if isDefault {
		name := account
		if name == "" {
			name = "the Compute Engine default service account (PROJECT_NUMBER-compute@developer.gserviceaccount.com) of project " + cfg.ProjectID
		}
		gh.Infof("service_account is empty: Cloud Run will run the service as %s", name)
		gh.WithFieldsMap(map[string]string{"title": "deploy-mlflow input service_account"}).Warningf(
			"the service runs as %s, the Compute Engine default service account: it is shared with every workload of the project that names no account, "+
				"and in organizations created since May 2024 it gets no roles (a new project may not even have it). "+
				"A dedicated account is better: create one, grant it roles/secretmanager.secretAccessor on the service's secrets, and set service_account", name)
	}
	if account == "" {
		gh.Warningf("could not learn the number of project %s, so the runtime account's access to the secrets was not checked; Cloud Run checks it when it deploys", cfg.ProjectID)
		return nil
	}
	smOpts, err := gcp.ClientOptions(getenv(gcp.SecretManagerEndpointEnv), ts)
	if err != nil {
		return fmt.Errorf("%s: %w", gcp.SecretManagerEndpointEnv, err)
	}
	sm, err := secretmanager.NewClient(ctx, smOpts...)
	if err != nil {
		return fmt.Errorf("connecting to Secret Manager: %w", err)
	}
	defer sm.Close()
	rmOpts, err := gcp.RESTClientOptions(getenv(gcp.ResourceManagerEndpointEnv), ts)
	if err != nil {
		return fmt.Errorf("%s: %w", gcp.ResourceManagerEndpointEnv, err)
	}
	rm, err := cloudresourcemanager.NewService(ctx, rmOpts...)
	if err != nil {
		return fmt.Errorf("connecting to Cloud Resource Manager: %w", err)
	}
	warnings, err := secrets.CheckAccess(ctx, secrets.APIPolicies{Secrets: sm, Projects: rm}, account, cfg.SecretRefs())
	for _, w := range warnings {
		gh.Warningf("%s", w)
	}
	if err != nil {
		return err
	}
	if len(warnings) == 0 {
		gh.Infof("%s may read every secret the service references", account)
	}
	return nil
}
