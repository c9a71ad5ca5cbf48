package action

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// secretVersions maps each secret-backed env var of the live service to the version it references.
func secretVersions(t *testing.T, c *cloud) map[string]string {
	t.Helper()
	svc, ok := c.run.Service(project, "us-central1", "mlflow")
	if !ok {
		t.Fatal("no service")
	}
	out := map[string]string{}
	for _, e := range svc.GetTemplate().GetContainers()[0].GetEnv() {
		if ref := e.GetValueSource().GetSecretKeyRef(); ref != nil {
			out[e.GetName()] = ref.GetSecret() + ":" + ref.GetVersion()
		}
	}
	return out
}

// deployChecked runs the action and returns its log and the step summary it wrote this time.
func deployChecked(t *testing.T, c *cloud, what string) (*Outputs, string, string) {
	t.Helper()
	if err := os.WriteFile(c.env["GITHUB_STEP_SUMMARY"], nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := c.action(context.Background())
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, c.out)
	}
	summary, err := os.ReadFile(c.env["GITHUB_STEP_SUMMARY"])
	if err != nil {
		t.Fatal(err)
	}
	return o, c.out.String(), string(summary)
}

func mustSay(t *testing.T, what, text string, says ...string) {
	t.Helper()
	for _, s := range says {
		if !strings.Contains(text, s) {
			t.Errorf("%s does not say %q:\n%s", what, s, text)
		}
	}
}

func TestRunPinsSecretVersionsAndRollsRotations(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.secrets.AddSecret(project, "mlflow_pass", []byte("s3cret-2")) // version 2 is the newest at the first deploy
	c.env["INPUT_USERNAME_SECRET"] = "mlflow_id:1"                  // a number is kept as given

	first, log, summary := deployChecked(t, c, "first deploy")
	want := map[string]string{
		serverenv.BackendStoreURI:      "DB_url:1",
		serverenv.ArtifactsDestination: "bucket_url:1",
		serverenv.Username:             "mlflow_id:1",
		serverenv.Password:             "mlflow_pass:2",
	}
	if diff := cmp.Diff(want, secretVersions(t, c)); diff != "" {
		t.Errorf("after the first deploy, secret references (-want +got):\n%s", diff)
	}
	mustSay(t, "the log", log, "mlflow_pass → version 2 (was latest)", "mlflow_id → version 1 (as given)")
	mustSay(t, "the summary", summary, "#### Secrets", "- DB_url → version 1 (was latest)", "- mlflow_pass → version 2 (was latest)",
		"- mlflow_id → version 1 (as given)", "re-run this workflow")

	// A rotation, then the same commit again: one new revision reads the new version; nothing is pushed.
	c.secrets.AddSecret(project, "mlflow_pass", []byte("s3cret-3"))
	c.secrets.AddSecret(project, "mlflow_id", []byte("root"))
	revisions := len(c.run.Revisions(project, "us-central1", "mlflow"))
	c.registry.ResetCounts()
	rolled, log, summary := deployChecked(t, c, "re-run after a rotation")
	want[serverenv.Password] = "mlflow_pass:3"
	if diff := cmp.Diff(want, secretVersions(t, c)); diff != "" {
		t.Errorf("after the rotation, secret references (-want +got):\n%s", diff)
	}
	if got := len(c.run.Revisions(project, "us-central1", "mlflow")) - revisions; got != 1 {
		t.Errorf("the rotation rolled %d new revisions, want 1", got)
	}
	if rolled.Revision == first.Revision || rolled.Image != first.Image {
		t.Errorf("after the rotation outputs %+v, first %+v: want a new revision of the same image", rolled, first)
	}
	if got := c.registry.Counts(); got.Writes != 0 {
		t.Errorf("the re-run after a rotation wrote to the registry: %+v", got)
	}
	mustSay(t, "the log", log, "mlflow_pass → version 3 (was latest)", "env")
	mustSay(t, "the summary", summary, "- mlflow_pass → version 3 (was latest)", "- mlflow_id → version 1 (as given)")

	// Once more, nothing changed: nothing is written anywhere.
	runWrites := c.run.Writes()
	c.registry.ResetCounts()
	again, _, _ := deployChecked(t, c, "second re-run")
	if got := c.run.Writes() - runWrites; got != 0 {
		t.Errorf("the second re-run made %d Cloud Run writes", got)
	}
	if got := c.registry.Counts(); got.Writes != 0 {
		t.Errorf("the second re-run wrote to the registry: %+v", got)
	}
	if want := (Outputs{URL: rolled.URL, Revision: rolled.Revision, Image: rolled.Image, Service: rolled.Service,
		PreviousRevision: rolled.Revision}); *again != want {
		t.Errorf("second re-run outputs %+v, want %+v", again, want)
	}
}

func TestRunSecretVersionsLatestFollowsNewest(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env["INPUT_SECRET_VERSIONS"] = "latest"
	c.env["INPUT_USERNAME_SECRET"] = "mlflow_id:1"

	_, log, summary := deployChecked(t, c, "first deploy")
	want := map[string]string{
		serverenv.BackendStoreURI:      "DB_url:latest",
		serverenv.ArtifactsDestination: "bucket_url:latest",
		serverenv.Username:             "mlflow_id:1",
		serverenv.Password:             "mlflow_pass:latest",
	}
	if diff := cmp.Diff(want, secretVersions(t, c)); diff != "" {
		t.Errorf("secret references (-want +got):\n%s", diff)
	}
	mustSay(t, "the log", log, "mlflow_pass → latest (version 1 now; each instance reads the newest version when it starts)")
	mustSay(t, "the summary", summary, "Nothing is pinned", "reads the newest version of a secret when it starts",
		"- mlflow_pass → latest (version 1 now", "- mlflow_id → version 1 (as given)")

	// A rotation changes nothing the action writes: instances read the new version when they start.
	c.secrets.AddSecret(project, "mlflow_pass", []byte("s3cret-2"))
	runWrites := c.run.Writes()
	c.registry.ResetCounts()
	deployChecked(t, c, "re-run after a rotation")
	if got := c.run.Writes() - runWrites; got != 0 {
		t.Errorf("with secret_versions: latest a rotation made %d Cloud Run writes", got)
	}
	if got := c.registry.Counts(); got.Writes != 0 {
		t.Errorf("the re-run wrote to the registry: %+v", got)
	}
	if diff := cmp.Diff(want, secretVersions(t, c)); diff != "" {
		t.Errorf("after the rotation, secret references (-want +got):\n%s", diff)
	}
}

// A disabled newest version cannot be pinned (nor read by Cloud Run): the step fails before the push,
// saying how to enable it or name an earlier version.
func TestRunDisabledLatestStopsBeforePush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t)
	disabled := c.secrets.AddSecret(project, "mlflow_pass", []byte("s3cret-2"))
	ts, err := c.tokens.TokenSource(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := gcp.ClientOptions(c.secrets.Addr(), ts)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	if _, err := sm.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: disabled}); err != nil {
		t.Fatal(err)
	}

	_, err = c.action(ctx)
	var me *secrets.MissingError
	if !errors.As(err, &me) || me.Ref.Input != "password_secret" {
		t.Fatalf("want a secret error naming password_secret, got %v", err)
	}
	mustSay(t, "the error", err.Error(), "version 2 is disabled", "gcloud secrets versions enable 2 --secret=mlflow_pass", "mlflow_pass:NUMBER")
	if got := c.registry.Counts(); got.Requests != 0 {
		t.Errorf("the registry was called %d times before the secrets were checked", got.Requests)
	}
	if n := len(c.run.CallCounts()); n != 0 {
		t.Errorf("Cloud Run was called: %v", c.run.CallCounts())
	}
}
