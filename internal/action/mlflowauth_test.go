package action

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

const kekWarning = "::warning title=deploy-mlflow input kek_passphrase_secret::"

// TestRunMLflowAuth deploys with MLflow's own auth: the service is public (MLflow checks the password),
// the flask and KEK secrets are pinned like the others, and the settings reach the service.
func TestRunMLflowAuth(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	for _, name := range []string{"flask_key", "kek"} {
		c.secrets.AddSecret(project, name, []byte("v1-"+name))
		c.secrets.AddSecret(project, name, []byte("v2-"+name)) // latest is version 2
		c.secrets.GrantSecretRole(project, name, runtimeMember, accessor)
	}
	c.env["INPUT_AUTH"] = "mlflow"
	c.env["INPUT_DEFAULT_PERMISSION"] = "no_permissions"
	c.env["INPUT_FLASK_SECRET_KEY_SECRET"] = "flask_key"
	c.env["INPUT_KEK_PASSPHRASE_SECRET"] = "kek"

	_, log, summary := deployChecked(t, c, "deploy with auth mlflow")
	want := map[string]string{
		serverenv.BackendStoreURI:      "DB_url:1",
		serverenv.ArtifactsDestination: "bucket_url:1",
		serverenv.Username:             "mlflow_id:1",
		serverenv.Password:             "mlflow_pass:1",
		serverenv.FlaskSecretKey:       "flask_key:2",
		serverenv.KEKPassphrase:        "kek:2",
	}
	if diff := cmp.Diff(want, secretVersions(t, c)); diff != "" {
		t.Errorf("secret references (-want +got):\n%s", diff)
	}
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	plain := map[string]string{}
	for _, e := range svc.GetTemplate().GetContainers()[0].GetEnv() {
		if e.GetValueSource() == nil {
			plain[e.GetName()] = e.GetValue()
		}
	}
	for k, v := range map[string]string{serverenv.Auth: "mlflow", serverenv.DefaultPermission: "NO_PERMISSIONS", serverenv.Workers: "2"} {
		if plain[k] != v {
			t.Errorf("%s = %q, want %q", k, plain[k], v)
		}
	}
	checkAccess(t, c, true)
	mustSay(t, "the summary", summary, "- flask_key → version 2 (was latest)", "- kek → version 2 (was latest)")
	for _, value := range []string{"v1-", "v2-"} {
		if strings.Contains(log+summary, value) {
			t.Errorf("the log or the summary shows a secret's value (%s...):\n%s\n%s", value, log, summary)
		}
	}
	if strings.Contains(log, kekWarning) || strings.Contains(summary, "kek_passphrase_secret is not set") {
		t.Errorf("warned about the default KEK passphrase although kek_passphrase_secret is set:\n%s\n%s", log, summary)
	}
}

// TestRunWarnsOfDefaultKEK: without kek_passphrase_secret, the run is annotated and the summary says
// what that means and how to fix it.
func TestRunWarnsOfDefaultKEK(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	_, log, summary := deployChecked(t, c, "deploy without kek_passphrase_secret")
	var warnings []string
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, kekWarning) {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("want one warning annotation about kek_passphrase_secret, got %d:\n%s", len(warnings), log)
	}
	says := []string{"AI Gateway provider keys", "MLflow's default passphrase", "gcloud secrets create", "set kek_passphrase_secret", "mlflow crypto rotate-kek"}
	mustSay(t, "the annotation", warnings[0], says...)
	mustSay(t, "the summary", summary, append(says, "> [!WARNING]")...)
}
