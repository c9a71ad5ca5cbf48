// Package localcloud puts together, on this machine, everything the action deploys to, with no Google
// account: the stand-ins for Google's APIs (token endpoint, Secret Manager, Cloud Run, Artifact
// Registry's front; package gcptest) and the real parts (PostgreSQL, the distribution registry,
// fake-gcs-server, MLflow; package testenv), with Cloud Run revisions running as processes (Runtime, in
// runtime.go, process.go and frontend.go). It runs the action's binary as GitHub does. The demo and the
// end-to-end test both use it.
package localcloud

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/action"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// Names of what the local cloud holds, as in the article.
const (
	Project    = gcptest.DefaultProjectID
	Region     = "us-central1"
	Repository = "mlflow-runner"
	Bucket     = "mlflow-artifacts"
	Database   = "mlflow"
	Username   = "mlflow"
	// RuntimeAccount is the account the revisions run as: the project's Compute Engine default account.
	RuntimeAccount = gcptest.DefaultProjectNumber + "-compute@developer.gserviceaccount.com"
)

// Cloud is a running local cloud. Close stops everything it started.
type Cloud struct {
	Google   *gcptest.Cloud
	Runtime  *Runtime
	Postgres *testenv.Postgres
	GCS      *testenv.FakeGCS
	Registry *testenv.Registry

	Dir          string
	KeyFile      string // the deployer's service-account key (GOOGLE_APPLICATION_CREDENTIALS)
	ActionBinary string // the action, built as its Dockerfile builds it
	ServerBinary string // the server program the action puts in the image
	BaseImage    string // the local stand-in for ghcr.io/mlflow/mlflow:vX-full
	Password     string // the MLflow password in the mlflow_pass secret
	Venv         string

	stops []func()
}

// Start starts the local cloud in dir; logs receives the revisions' output (nil drops it).
func Start(ctx context.Context, dir string, logs io.Writer) (*Cloud, error) {
	c := &Cloud{Dir: dir}
	if err := c.start(ctx, logs); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cloud) start(ctx context.Context, logs io.Writer) (err error) {
	dir := c.Dir
	for _, d := range []string{"postgres", "registry", "revisions"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if c.Venv, err = testenv.Venv(); err != nil {
		return err
	}
	if c.ActionBinary, c.ServerBinary, err = build(ctx, dir); err != nil {
		return err
	}
	if c.Postgres, err = testenv.StartPostgres(ctx, filepath.Join(dir, "postgres")); err != nil {
		return err
	}
	c.stops = append(c.stops, func() { _ = c.Postgres.Stop() })
	if err = c.Postgres.CreateDatabase(ctx, Database); err != nil {
		return err
	}
	if c.GCS, err = testenv.StartFakeGCS(ctx, Bucket); err != nil {
		return err
	}
	c.stops = append(c.stops, c.GCS.Stop)
	if c.Registry, err = testenv.StartRegistry(ctx, filepath.Join(dir, "registry")); err != nil {
		return err
	}
	c.stops = append(c.stops, func() { _ = c.Registry.Stop() })

	// Artifact Registry: the token-checking front, with the real registry process behind it.
	backend := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: c.Registry.Host()})
	c.Runtime = &Runtime{Dir: filepath.Join(dir, "revisions"), Logs: logs, HostEnv: c.hostEnv()}
	// A service's URL is its front end here, which lets requests without an identity token through only
	// when Cloud Run would.
	serviceURL := func(ref gcptest.ServiceRef) string {
		c.Runtime.SetInvokerCheck(ref.Service, func() bool {
			return c.Google.Run.AllowsUnauthenticated(ref.ProjectID, ref.Region, ref.Service)
		})
		return c.Runtime.URL(ref.Service)
	}
	if c.Google, err = gcptest.NewCloud(gcptest.WithRegistryBackend(backend), gcptest.WithRuntime(c.Runtime),
		gcptest.WithServiceURL(serviceURL)); err != nil {
		return err
	}
	c.stops = append(c.stops, c.Google.Close, c.Runtime.Close)
	c.Google.Registry.CreateRepository(Project, Repository)

	// Cloud Run's service agent pulls the image from Artifact Registry with a token of its own.
	agent, err := c.Google.Tokens.TokenSource(ctx, Project, "service-"+gcptest.DefaultProjectNumber+"@serverless-robot-prod.iam.gserviceaccount.com")
	if err != nil {
		return err
	}
	c.Runtime.Remote = []remote.Option{remote.WithAuth(google.NewTokenSourceAuthenticator(agent))}
	// It reads secretKeyRefs through the Secret Manager API, as the runtime service account.
	opts, err := gcp.ClientOptions(c.Google.SecretManager.Addr(), agent)
	if err != nil {
		return err
	}
	sm, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return err
	}
	c.stops = append(c.stops, func() { _ = sm.Close() })
	c.Runtime.Secrets = func(ctx context.Context, project, secret, version string) ([]byte, error) {
		v, err := sm.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{
			Name: "projects/" + project + "/secrets/" + secret + "/versions/" + version,
		})
		if err != nil {
			return nil, err
		}
		return v.GetPayload().GetData(), nil
	}

	if c.KeyFile, err = c.Google.Tokens.ServiceAccountKey(dir, Project, "deployer@"+Project+".iam.gserviceaccount.com"); err != nil {
		return err
	}
	if err = c.pushBase(ctx); err != nil {
		return err
	}
	c.Password = randomText(12)
	for secret, value := range map[string]string{
		"DB_url":      strings.Replace(c.Postgres.URL(Database), "postgresql://", "postgresql+psycopg2://", 1),
		"bucket_url":  "gs://" + Bucket + "/artifacts",
		"mlflow_id":   Username,
		"mlflow_pass": c.Password,
	} {
		c.Google.SecretManager.AddSecret(Project, secret, []byte(value))
		// Nobody may read a new secret: grant the runtime account (the default one, as the action's
		// service_account is empty) access, as `gcloud secrets add-iam-policy-binding` does.
		c.Google.SecretManager.GrantSecretRole(Project, secret, "serviceAccount:"+RuntimeAccount, "roles/secretmanager.secretAccessor")
	}
	return nil
}

// Close stops everything, the last started first.
func (c *Cloud) Close() {
	for i := len(c.stops) - 1; i >= 0; i-- {
		c.stops[i]()
	}
	c.stops = nil
}

// ActionEnv is the environment GitHub gives the action's container for the README's workflow, at
// commit sha, with the endpoints pointed at the local cloud. outDir receives GITHUB_OUTPUT and
// GITHUB_STEP_SUMMARY.
func (c *Cloud) ActionEnv(sha, outDir string) map[string]string {
	return map[string]string{
		"INPUT_PROJECT_ID":                   Project,
		"INPUT_REGION":                       Region,
		"INPUT_REPOSITORY":                   Repository,
		"INPUT_IMAGE":                        c.Google.RegistryHost + "/" + Project + "/" + Repository + "/mlflow",
		"INPUT_BASE_IMAGE":                   c.BaseImage,
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "mlflow_pass",
		"INPUT_MAX_INSTANCES":                "1",
		"GITHUB_SHA":                         sha,
		"GITHUB_SERVER_URL":                  "https://github.com",
		"GITHUB_REPOSITORY":                  "octo-org/mlflow-server",
		"GITHUB_OUTPUT":                      filepath.Join(outDir, "github_output"),
		"GITHUB_STEP_SUMMARY":                filepath.Join(outDir, "step_summary.md"),
		gcp.CredentialsEnv:                   c.KeyFile,
		gcp.RunEndpointEnv:                   c.Google.Run.Addr(),
		gcp.SecretManagerEndpointEnv:         c.Google.SecretManager.Addr(),
		gcp.ResourceManagerEndpointEnv:       c.Google.Projects.Addr(),
		action.ServerBinaryEnv:               c.ServerBinary,
	}
}

// RunAction runs the action's binary with env and nothing else, as GitHub runs a container action, and
// returns the outputs it wrote to GITHUB_OUTPUT. Its stdout and stderr go to log.
func (c *Cloud) RunAction(ctx context.Context, env map[string]string, log io.Writer) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, c.ActionBinary)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the action failed: %w", err)
	}
	return ReadOutputs(env["GITHUB_OUTPUT"])
}

// ReadOutputs parses a GITHUB_OUTPUT file: name<<DELIMITER, the value's lines, DELIMITER.
func ReadOutputs(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, delim, ok := strings.Cut(sc.Text(), "<<")
		if !ok {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				out[k] = v
			}
			continue
		}
		var lines []string
		for sc.Scan() && sc.Text() != delim {
			lines = append(lines, sc.Text())
		}
		out[key] = strings.Join(lines, "\n")
	}
	return out, sc.Err()
}

// LogModel runs the article's test.py against trackingURI with the demo's credentials and returns the
// run's ID.
func (c *Cloud) LogModel(ctx context.Context, trackingURI string, log io.Writer) (string, error) {
	var out strings.Builder
	cmd := exec.CommandContext(ctx, filepath.Join(c.Venv, "bin", "python"), filepath.Join(testenv.ModuleRoot(), "testdata", "client.py"))
	cmd.Env = append(os.Environ(),
		"MLFLOW_TRACKING_URI="+trackingURI, "MLFLOW_TRACKING_USERNAME="+Username, "MLFLOW_TRACKING_PASSWORD="+c.Password,
		"MLFLOW_DISABLE_TELEMETRY=true")
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("logging a model to %s: %w", trackingURI, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if id, ok := strings.CutPrefix(line, "RUN_ID="); ok {
			return strings.TrimSpace(id), nil
		}
	}
	return "", errors.New("the client printed no RUN_ID")
}

// hostEnv is what every revision finds on this machine besides its own env: MLflow from the
// virtualenv (in Cloud Run it is in the image), and fake-gcs-server for GCS.
func (c *Cloud) hostEnv() []string {
	return []string{
		"PATH=" + filepath.Join(c.Venv, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + c.Dir,
		"LANG=C.UTF-8",
		"DEPLOY_MLFLOW_MLFLOW_COMMAND=" + filepath.Join(c.Venv, "bin", "mlflow"),
		"STORAGE_EMULATOR_HOST=" + c.GCS.URL(),
		"GOOGLE_CLOUD_PROJECT=" + Project,
		"MLFLOW_DISABLE_TELEMETRY=true",
	}
}

// pushBase puts the local stand-in for the official MLflow image in the registry, where the action
// pulls it anonymously as it pulls ghcr.io's.
func (c *Cloud) pushBase(ctx context.Context) error {
	img, err := gcptest.BaseImage(1, 4<<20, 2<<20, 1<<20)
	if err != nil {
		return err
	}
	c.BaseImage = c.Registry.Host() + "/mlflow/mlflow:v" + config.DefaultMLflowVersion + "-full"
	ref, err := name.ParseReference(c.BaseImage, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img, remote.WithContext(ctx))
}

// build compiles the action and the server program, static, as the action's Dockerfile does.
func build(ctx context.Context, dir string) (actionBin, serverBin string, err error) {
	actionBin = filepath.Join(dir, "bin", "deploy-mlflow")
	serverBin = filepath.Join(dir, "bin", "deploy-mlflow-server")
	for _, b := range [][2]string{{actionBin, "."}, {serverBin, "./server"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", b[0], b[1])
		cmd.Dir = testenv.ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	return actionBin, serverBin, nil
}

func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
