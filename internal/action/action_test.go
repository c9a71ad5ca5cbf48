package action

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/image"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

const (
	project = gcptest.DefaultProjectID
	sha1    = "1111111111111111111111111111111111111111"
	sha2    = "2222222222222222222222222222222222222222"

	// The account Cloud Run runs the service as when service_account is empty, and the role it needs.
	defaultAccount = gcptest.DefaultProjectNumber + "-compute@developer.gserviceaccount.com"
	runtimeMember  = "serviceAccount:" + defaultAccount
	accessor       = "roles/secretmanager.secretAccessor"
)

var (
	serverOnce sync.Once
	serverBin  string
	serverErr  error
)

// builtServer builds the real server program once for the package's tests.
func builtServer(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploy-mlflow-server-")
		if err != nil {
			serverErr = err
			return
		}
		serverBin, serverErr = testenv.BuildServer(context.Background(), dir)
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBin
}

// cloud is every Google API the action calls, standing in on loopback, and the environment that
// points the action at them.
type cloud struct {
	tokens   *gcptest.TokenServer
	secrets  *gcptest.SecretManager
	projects *gcptest.ResourceManager
	run      *gcptest.Run
	registry *gcptest.ArtifactRegistry
	env      map[string]string
	out      *bytes.Buffer

	mu   sync.Mutex
	wrap func(http.Handler) http.Handler // put in front of the registry (wrapRegistry)
}

// wrapRegistry puts wrap in front of Artifact Registry, to slow or watch the action's requests.
func (c *cloud) wrapRegistry(wrap func(http.Handler) http.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrap = wrap
}

func (c *cloud) front() http.Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wrap == nil {
		return c.registry
	}
	return c.wrap(c.registry)
}

// newCloud starts the stand-ins; opts configure Cloud Run and Secret Manager.
func newCloud(t *testing.T, runOpts ...gcptest.Option) *cloud {
	t.Helper()
	c := &cloud{tokens: gcptest.StartTokenServer(t), out: &bytes.Buffer{}}
	c.secrets = gcptest.StartSecretManager(t, c.tokens, runOpts...)
	for name, value := range map[string]string{
		"DB_url": "postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/p:r:i", "bucket_url": "gs://bucket/mlflow",
		"mlflow_id": "admin", "mlflow_pass": "s3cret-Pa55",
	} {
		c.secrets.AddSecret(project, name, []byte(value))
		// As a user would: the runtime account (the default one) may read each secret.
		c.secrets.GrantSecretRole(project, name, runtimeMember, accessor)
	}
	c.projects = gcptest.StartResourceManager(t, c.tokens, runOpts...)
	c.run = gcptest.StartRun(t, c.tokens, append([]gcptest.Option{gcptest.WithSecretManager(c.secrets), gcptest.WithResourceManager(c.projects)}, runOpts...)...)

	c.registry = gcptest.NewArtifactRegistry(c.tokens, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.front().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	c.registry.CreateRepository(project, "mlflow-runner")

	// The base image, on a registry of its own as the official one is on ghcr.io, pulled anonymously.
	ghcr := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(ghcr.Close)
	base, err := gcptest.BaseImage(1, 300<<10, 200<<10)
	if err != nil {
		t.Fatal(err)
	}
	baseRef := strings.TrimPrefix(ghcr.URL, "http://") + "/mlflow/mlflow:v" + config.DefaultMLflowVersion + "-full"
	ref, err := name.ParseReference(baseRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, base); err != nil {
		t.Fatal(err)
	}
	key, err := c.tokens.ServiceAccountKey(t.TempDir(), project, "")
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	c.env = map[string]string{
		"INPUT_PROJECT_ID":                   project,
		"INPUT_REPOSITORY":                   "mlflow-runner",
		"INPUT_IMAGE":                        host + "/" + project + "/mlflow-runner/mlflow",
		"INPUT_BASE_IMAGE":                   baseRef,
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "mlflow_pass",
		"GITHUB_SHA":                         sha1,
		"GITHUB_SERVER_URL":                  "https://github.com",
		"GITHUB_REPOSITORY":                  "acme/ml",
		"GITHUB_OUTPUT":                      filepath.Join(dir, "output"),
		"GITHUB_STEP_SUMMARY":                filepath.Join(dir, "summary"),
		gcp.CredentialsEnv:                   key,
		gcp.RunEndpointEnv:                   c.run.Addr(),
		gcp.SecretManagerEndpointEnv:         c.secrets.Addr(),
		gcp.ResourceManagerEndpointEnv:       c.projects.Addr(),
		ServerBinaryEnv:                      builtServer(t),
	}
	return c
}

func (c *cloud) action(ctx context.Context) (*Outputs, error) {
	c.out.Reset()
	return Run(ctx, func(k string) string { return c.env[k] }, c.out)
}

func TestRunCreatesUpdatesAndRerunsWithoutWriting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t)

	first, err := c.action(ctx)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	svc, ok := c.run.Service(project, "us-central1", "mlflow")
	if !ok {
		t.Fatal("no service after the first deploy")
	}
	if first.URL != svc.Uri || first.Service != "mlflow" || !strings.HasSuffix(svc.LatestReadyRevision, first.Revision) ||
		!strings.HasPrefix(first.Image, c.env["INPUT_IMAGE"]+"@sha256:") || svc.Template.Containers[0].Image != first.Image {
		t.Errorf("outputs %+v do not match the service %v", first, svc)
	}
	if svc.Labels["commit-sha"] != sha1 || svc.Labels["managed-by"] != "deploy-mlflow" {
		t.Errorf("labels = %v", svc.Labels)
	}
	if c.registry.Counts().BlobUploads == 0 {
		t.Error("the first deploy uploaded no blob")
	}
	// allow_unauthenticated defaults to true: public through invoker_iam_disabled, under the
	// domain-restricted-sharing policy that the stand-in enforces by default, with no allUsers binding.
	checkAccess(t, c, true)

	// The same commit again: nothing is written, not to the registry nor to Cloud Run.
	runWrites := c.run.Writes()
	c.registry.ResetCounts()
	again, err := c.action(ctx)
	if err != nil {
		t.Fatalf("re-run: %v\n%s", err, c.out)
	}
	if first.PreviousRevision != "" || !first.Changed {
		t.Errorf("create: previous_revision %q, changed %v; want empty and true", first.PreviousRevision, first.Changed)
	}
	// A re-run changes nothing: the revision that served before is the one serving now.
	if want := (Outputs{URL: first.URL, Revision: first.Revision, Image: first.Image, Service: first.Service,
		PreviousRevision: first.Revision, Changed: false}); *again != want {
		t.Errorf("re-run outputs %+v, want %+v", again, want)
	}
	if out, _ := os.ReadFile(c.env["GITHUB_OUTPUT"]); !strings.Contains(string(out), "changed<<") ||
		!strings.Contains(string(out), "\nfalse\n") || !strings.Contains(string(out), "previous_revision<<") {
		t.Errorf("the output file lacks changed=false or previous_revision:\n%s", out)
	}
	if got := c.registry.Counts(); got.Writes != 0 {
		t.Errorf("re-run wrote to the registry: %+v", got)
	}
	if got := c.run.Writes() - runWrites; got != 0 {
		t.Errorf("re-run made %d Cloud Run writes", got)
	}

	// A new commit: only the image config and manifest are pushed, and a new revision rolls out.
	c.env["GITHUB_SHA"] = sha2
	c.registry.ResetCounts()
	second, err := c.action(ctx)
	if err != nil {
		t.Fatalf("second deploy: %v\n%s", err, c.out)
	}
	if second.Revision == first.Revision || second.Image == first.Image || second.URL != first.URL ||
		second.PreviousRevision != first.Revision || !second.Changed {
		t.Errorf("second deploy outputs %+v, first %+v", second, first)
	}
	if got := c.registry.Counts().BlobUploads; got != 1 {
		t.Errorf("a new commit uploaded %d blobs, want 1 (the config; every layer is already there)", got)
	}
	svc, _ = c.run.Service(project, "us-central1", "mlflow")
	if svc.Labels["commit-sha"] != sha2 || len(c.run.Revisions(project, "us-central1", "mlflow")) != 2 {
		t.Errorf("after the second deploy: labels %v, %d revisions", svc.Labels, len(c.run.Revisions(project, "us-central1", "mlflow")))
	}
	if strings.Contains(c.out.String(), "s3cret-Pa55") {
		t.Error("the log shows a secret's value")
	}
}

// TestRunMovedSecretIsDeployed checks that a secret moved to another project, same name, same commit,
// is deployed: the running service must not keep reading the old project's secret.
func TestRunMovedSecretIsDeployed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t, gcptest.WithProject(project, gcptest.DefaultProjectNumber), gcptest.WithProject("other-project", "777777777777"))
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	c.secrets.AddSecret("other-project", "DB_url", []byte("postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/p:r:other"))
	c.secrets.GrantSecretRole("other-project", "DB_url", runtimeMember, accessor)
	c.env["INPUT_BACKEND_STORE_SECRET"] = "projects/other-project/secrets/DB_url"
	writes := c.run.Writes()
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("re-run with the secret moved: %v\n%s", err, c.out)
	}
	if c.run.Writes() == writes {
		t.Errorf("the re-run wrote nothing to Cloud Run:\n%s", c.out)
	}
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	for _, e := range svc.Template.Containers[0].Env {
		if e.Name == serverenv.BackendStoreURI {
			if got := e.GetValueSource().GetSecretKeyRef().GetSecret(); got != "projects/other-project/secrets/DB_url" {
				t.Errorf("the service reads its backend store from %q, want projects/other-project/secrets/DB_url", got)
			}
		}
	}
}

func TestRunMissingSecretStopsBeforePush(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env["INPUT_PASSWORD_SECRET"] = "mlflow_password"
	_, err := c.action(context.Background())
	var me *secrets.MissingError
	if !errors.As(err, &me) || me.Ref.Input != "password_secret" || !strings.Contains(err.Error(), "gcloud secrets create mlflow_password") {
		t.Fatalf("want a missing-secret error naming password_secret, got %v", err)
	}
	if got := c.registry.Counts(); got.Requests != 0 {
		t.Errorf("the registry was called %d times before the secrets were checked", got.Requests)
	}
	if n := len(c.run.CallCounts()); n != 0 {
		t.Errorf("Cloud Run was called: %v", c.run.CallCounts())
	}
}

func TestRunBadInputMakesNoCall(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env["INPUT_REGION"] = "moon_base"
	c.env["INPUT_MEMORY"] = "lots"
	before := c.tokens.Stats()
	_, err := c.action(context.Background())
	var ie *config.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "input memory") || !strings.Contains(err.Error(), "input region") {
		t.Fatalf("want input errors for region and memory, got %v", err)
	}
	if c.tokens.Stats() != before || c.registry.Counts().Requests != 0 || len(c.run.CallCounts()) != 0 || len(c.secrets.CallCounts()) != 0 {
		t.Error("a bad input led to a network call")
	}
}

func TestRunFailedRevisionFailsTheStep(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithRuntime(gcptest.RuntimeFunc(func(context.Context, *runpb.Service, *runpb.Revision) (string, error) {
		return "", gcptest.ContainerFailedToStart(8080)
	})))
	_, err := c.action(context.Background())
	var re *cloudrun.RevisionError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "failed to start and listen on the port") || !strings.Contains(err.Error(), "/logs?project=") {
		t.Fatalf("want the revision's failure with a logs link, got %v", err)
	}
	if b, _ := os.ReadFile(c.env["GITHUB_OUTPUT"]); len(b) != 0 {
		t.Errorf("a failed deploy wrote outputs: %s", b)
	}
}

func TestRunWorkloadIdentityFederation(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	file, err := c.tokens.ExternalAccountFile(t.TempDir(), gcptest.WorkloadIdentity{ServiceAccount: "deployer@" + project + ".iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	c.env[gcp.CredentialsEnv] = file
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, c.out)
	}
	if st := c.tokens.Stats(); st.STSExchanges == 0 || st.Impersonations == 0 {
		t.Errorf("no STS exchange or impersonation happened: %+v", st)
	}
}

func TestRunMissingRepository(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env["INPUT_IMAGE"] = strings.Replace(c.env["INPUT_IMAGE"], "mlflow-runner", "no-such-repo", 1)
	_, err := c.action(context.Background())
	var nf *image.RepositoryNotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "no-such-repo") {
		t.Fatalf("want a missing repository error, got %v", err)
	}
	if n := len(c.run.CallCounts()); n != 0 {
		t.Errorf("Cloud Run was called after the push failed: %v", c.run.CallCounts())
	}
}

func TestRunMissingServerBinary(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env[ServerBinaryEnv] = filepath.Join(t.TempDir(), "nothing-here")
	before := c.tokens.Stats()
	_, err := c.action(context.Background())
	if err == nil || !strings.Contains(err.Error(), ServerBinaryEnv) || c.tokens.Stats() != before {
		t.Errorf("want a clear error before any call, got %v (token server: %+v)", err, c.tokens.Stats())
	}
}

// checkAccess checks that the service is public or private through invoker_iam_disabled, that its
// policy has no public member, and that the log and the step summary say how it is reachable.
func checkAccess(t *testing.T, c *cloud, public bool) {
	t.Helper()
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	if svc.InvokerIamDisabled != public {
		t.Errorf("invoker_iam_disabled = %v, want %v", svc.InvokerIamDisabled, public)
	}
	policy, _ := c.run.Policy(project, "us-central1", "mlflow")
	for _, b := range policy.GetBindings() {
		for _, m := range b.Members {
			if m == "allUsers" || m == "allAuthenticatedUsers" {
				t.Errorf("the policy grants %s to %s: %v", b.Role, m, policy)
			}
		}
	}
	want := "private: callers need roles/run.invoker and an identity token"
	if public {
		want = "public: Cloud Run's invoker IAM check is disabled; the server's basic auth or MLflow's own login guards it"
	}
	summary, _ := os.ReadFile(c.env["GITHUB_STEP_SUMMARY"])
	if !strings.Contains(c.out.String(), "mlflow is "+want) || !strings.Contains(string(summary), "| access | "+want+" |") {
		t.Errorf("the log and the summary do not say %q:\n%s\n%s", want, c.out, summary)
	}
}

// TestRunRemovesLegacyPublicBinding deploys over a service that an earlier version made public with an
// allUsers invoker binding (granted before the organization enforced domain-restricted sharing): the
// re-run removes the binding, the service stays public through invoker_iam_disabled, and a further run
// writes nothing. Switching to auth: iam makes it private and removes public bindings again.
func TestRunRemovesLegacyPublicBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t)
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	legacy := func() {
		c.run.SetPolicy(project, "us-central1", "mlflow", &iampb.Policy{Bindings: []*iampb.Binding{
			{Role: "roles/run.invoker", Members: []string{"allUsers", "serviceAccount:ci@" + project + ".iam.gserviceaccount.com"}},
			{Role: "roles/run.invoker", Members: []string{"allAuthenticatedUsers"}},
		}})
	}
	legacy()
	before := c.run.CallCounts()
	o, err := c.action(ctx)
	if err != nil {
		t.Fatalf("re-run over the legacy binding: %v\n%s", err, c.out)
	}
	if !o.Changed {
		t.Error("a run that wrote only the IAM policy says changed: false")
	}
	checkAccess(t, c, true)
	after := c.run.CallCounts()
	if n := after["SetIamPolicy"] - before["SetIamPolicy"]; n != 1 || after["UpdateService"] != before["UpdateService"] {
		t.Errorf("removing the binding took %d policy writes and %d service updates, want 1 and 0",
			n, after["UpdateService"]-before["UpdateService"])
	}
	policy, _ := c.run.Policy(project, "us-central1", "mlflow")
	if !strings.Contains(policy.String(), "serviceAccount:ci@") {
		t.Errorf("an invoker that is not public was removed: %v", policy)
	}
	writes := c.run.Writes()
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("third run: %v\n%s", err, c.out)
	}
	if got := c.run.Writes() - writes; got != 0 {
		t.Errorf("a run with nothing to change made %d Cloud Run writes", got)
	}

	// auth: iam: private, and the public bindings go again.
	legacy()
	c.env["INPUT_AUTH"], c.env["INPUT_USERNAME_SECRET"], c.env["INPUT_PASSWORD_SECRET"] = "iam", "", ""
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("switch to auth: iam: %v\n%s", err, c.out)
	}
	checkAccess(t, c, false)
	writes = c.run.Writes()
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("re-run with auth: iam: %v\n%s", err, c.out)
	}
	if got := c.run.Writes() - writes; got != 0 {
		t.Errorf("a private re-run with nothing to change made %d Cloud Run writes", got)
	}
}

// TestRunIAMAuthIsPrivate deploys with auth: iam from the start: the invoker IAM check stays on and no
// public member is bound.
func TestRunIAMAuthIsPrivate(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.env["INPUT_AUTH"], c.env["INPUT_USERNAME_SECRET"], c.env["INPUT_PASSWORD_SECRET"] = "iam", "", ""
	if _, err := c.action(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, c.out)
	}
	checkAccess(t, c, false)
	if n := c.run.Calls("SetIamPolicy"); n != 0 {
		t.Errorf("a new private service had its policy written %d times", n)
	}
}
