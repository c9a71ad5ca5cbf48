package action

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

// grantCommand is the command the action must print for the runtime account and secret.
func grantCommand(secret, account string) string {
	return "gcloud secrets add-iam-policy-binding " + secret + " --project=" + project + " --member=serviceAccount:" + account + " --role=roles/secretmanager.secretAccessor"
}

func TestRunNamesTheRuntimeAccount(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, c.out)
	}
	out := c.out.String()
	if !strings.Contains(out, "Cloud Run will run the service as "+defaultAccount) {
		t.Errorf("the log does not name the default account %s:\n%s", defaultAccount, out)
	}
	if !strings.Contains(out, "::warning title=deploy-mlflow input service_account::") || !strings.Contains(out, "A dedicated account is better") {
		t.Errorf("no warning that a dedicated account is better:\n%s", out)
	}

	// With a dedicated account (granted access), neither the default account nor the warning shows.
	const dedicated = "mlflow@" + project + ".iam.gserviceaccount.com"
	for _, s := range []string{"DB_url", "bucket_url", "mlflow_id", "mlflow_pass"} {
		c.secrets.GrantSecretRole(project, s, "serviceAccount:"+dedicated, accessor)
	}
	c.env["INPUT_SERVICE_ACCOUNT"] = dedicated
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("with service_account: %v\n%s", err, c.out)
	}
	if out := c.out.String(); strings.Contains(out, defaultAccount) || strings.Contains(out, "A dedicated account is better") {
		t.Errorf("with service_account set, the log still speaks of the default account:\n%s", out)
	}
}

func TestRunMissingGrantStopsBeforePush(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.secrets.AddSecret(project, "new_pass", []byte("pw")) // no grant to the runtime account
	c.env["INPUT_PASSWORD_SECRET"] = "new_pass"
	_, err := c.action(context.Background())
	var ae *secrets.AccessError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), grantCommand("new_pass", defaultAccount)) || !strings.Contains(err.Error(), "password_secret") {
		t.Fatalf("want an access error naming %s, password_secret and the gcloud command, got %v\n%s", defaultAccount, err, c.out)
	}
	if got := c.registry.Counts(); got.Requests != 0 {
		t.Errorf("the registry was called %d times before the runtime account's access was checked", got.Requests)
	}
	if n := len(c.run.CallCounts()); n != 0 {
		t.Errorf("Cloud Run was called: %v", c.run.CallCounts())
	}
}

func TestRunProjectGrantCounts(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.secrets.AddSecret(project, "new_pass", []byte("pw"))
	c.projects.GrantProjectRole(project, runtimeMember, accessor)
	c.env["INPUT_PASSWORD_SECRET"] = "new_pass"
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("a project-level grant did not count: %v\n%s", err, c.out)
	}
	if strings.Contains(c.out.String(), "could not check") {
		t.Errorf("a readable project-level grant gave a warning:\n%s", c.out)
	}
}

// TestRunUnreadablePolicyWarns checks a deployer that may not read IAM policies: the action warns and
// deploys; when Cloud Run then refuses the revision, the error still names the account, the secret and
// the command.
func TestRunUnreadablePolicyWarns(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithDeniedPermissions("secretmanager.secrets.getIamPolicy", "resourcemanager.projects.getIamPolicy"))
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, c.out)
	}
	if out := c.out.String(); !strings.Contains(out, "::warning::could not check that "+defaultAccount+" may read secret DB_url") ||
		!strings.Contains(out, "secretmanager.secrets.getIamPolicy") {
		t.Errorf("no warning that the policies could not be read:\n%s", out)
	}

	c.secrets.AddSecret(project, "new_pass", []byte("pw")) // no grant: Cloud Run refuses
	c.env["INPUT_PASSWORD_SECRET"] = "new_pass"
	c.registry.ResetCounts()
	_, err := c.action(context.Background())
	var se *cloudrun.SecretAccessError
	var re *cloudrun.RevisionError
	if !errors.As(err, &se) || !errors.As(err, &re) || !strings.Contains(err.Error(), grantCommand("new_pass", defaultAccount)) {
		t.Fatalf("want Cloud Run's refusal with the gcloud command, got %v\n%s", err, c.out)
	}
	if c.registry.Counts().Writes == 0 && c.run.Writes() == 0 {
		t.Error("the action stopped before deploying, though it could not read the policies")
	}
}
