package release

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/localcloud"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

const project = gcptest.DefaultProjectID

// TestReleaseImageDeploys builds the image from this checkout as make release-image does, pushes it, pulls
// it back, unpacks its layer and runs its entrypoint inside that tree (chroot, as root), with the
// environment and mounts GitHub gives a container action, against the stand-ins of Google's APIs.
func TestReleaseImageDeploys(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the action and the server program")
	}
	if os.Geteuid() != 0 {
		t.Skip("running the entrypoint inside the unpacked image needs chroot, so root")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	actionBin, serverBin, err := Compile(ctx, testenv.ModuleRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{Action: actionBin, Server: serverBin, CACerts: "/etc/ssl/certs/ca-certificates.crt",
		Source: "https://github.com/acme/deploy-mlflow", Revision: "0123456789abcdef0123456789abcdef01234567",
		Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := os.Stat(in.CACerts); err != nil {
		t.Skipf("no CA bundle on this machine to put in the image: %v", err)
	}
	img, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	reportSize(t, img)

	// Push, then pull it back by the digest Push returned.
	ghcr := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(ghcr.Close)
	pushed, err := Push(ctx, img, strings.TrimPrefix(ghcr.URL, "http://")+"/acme/deploy-mlflow:v1.0.0", authn.Anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(pushed, "@"+want.String()) {
		t.Fatalf("Push returned %s, want the digest %s", pushed, want)
	}
	ref, err := name.ParseReference(pushed)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	root := unpack(t, pulled)

	// Reproducible: the same binaries and metadata, built again, give the same digest.
	again, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("a second build gave %s, the first %s", d, want)
	}

	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := newCloud(t, root)

	t.Run("bad input", func(t *testing.T) {
		env := c.env()
		delete(env, "INPUT_BACKEND_STORE_SECRET")
		out, err := runEntrypoint(ctx, root, cf.Config, env)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("the entrypoint ended with %v, want exit status 1\n%s", err, out)
		}
		if !strings.Contains(out, "::error") || !strings.Contains(out, "backend_store_secret") {
			t.Errorf("no ::error annotation naming backend_store_secret in:\n%s", out)
		}
	})

	t.Run("deploy", func(t *testing.T) {
		out, err := runEntrypoint(ctx, root, cf.Config, c.env())
		if err != nil {
			t.Fatalf("the entrypoint failed: %v\n%s", err, out)
		}
		outputs, err := localcloud.ReadOutputs(filepath.Join(root, "github/file_commands/output"))
		if err != nil {
			t.Fatalf("read the outputs: %v\n%s", err, out)
		}
		svc, ok := c.run.Service(project, "us-central1", "mlflow")
		if !ok {
			t.Fatalf("no service after the deploy\n%s", out)
		}
		if outputs["url"] == "" || outputs["url"] != svc.Uri || outputs["revision"] == "" ||
			!strings.HasSuffix(svc.LatestReadyRevision, outputs["revision"]) {
			t.Errorf("outputs %v do not match the service (uri %s, revision %s)", outputs, svc.Uri, svc.LatestReadyRevision)
		}
		if summary, err := os.ReadFile(filepath.Join(root, "github/file_commands/summary")); err != nil || len(summary) == 0 {
			t.Errorf("no step summary (%v)", err)
		}
	})
}

// reportSize logs the compressed layer's size, the bytes a runner pulls.
func reportSize(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("compressed layer: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
	}
}

// unpack writes the image's filesystem into a temp dir, with its modes.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, h.FileInfo().Mode()); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, h.FileInfo().Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}

// runEntrypoint runs the image's entrypoint in root, as root, with env and nothing else, in the workspace,
// as the runner's docker run does; it returns stdout and stderr together.
func runEntrypoint(ctx context.Context, root string, cfg v1.Config, env map[string]string) (string, error) {
	if len(cfg.Entrypoint) == 0 {
		return "", fmt.Errorf("the image has no entrypoint")
	}
	cmd := exec.CommandContext(ctx, cfg.Entrypoint[0], cfg.Entrypoint[1:]...)
	// exec.Command resolves the path on the host before the chroot: name it inside the root instead.
	cmd.Path = cfg.Entrypoint[0]
	cmd.Dir = "/github/workspace"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 0, Gid: 0}}
	cmd.Env = append([]string{}, cfg.Env...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// cloud is the stand-ins the entrypoint deploys to, and the files GitHub mounts into the container.
type cloud struct {
	run  *gcptest.Run
	vars map[string]string
}

func newCloud(t *testing.T, root string) *cloud {
	t.Helper()
	tokens := gcptest.StartTokenServer(t)
	secrets := gcptest.StartSecretManager(t, tokens)
	member := "serviceAccount:" + gcptest.DefaultProjectNumber + "-compute@developer.gserviceaccount.com"
	for name, value := range map[string]string{
		"DB_url": "postgresql+psycopg2://mlflow:pw@/mlflow?host=/cloudsql/p:r:i", "bucket_url": "gs://bucket/mlflow",
		"mlflow_id": "admin", "mlflow_pass": "s3cret-Pa55",
	} {
		secrets.AddSecret(project, name, []byte(value))
		secrets.GrantSecretRole(project, name, member, "roles/secretmanager.secretAccessor")
	}
	projects := gcptest.StartResourceManager(t, tokens)
	run := gcptest.StartRun(t, tokens, gcptest.WithSecretManager(secrets), gcptest.WithResourceManager(projects))

	ar := gcptest.NewArtifactRegistry(tokens, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	arSrv := httptest.NewServer(ar)
	t.Cleanup(arSrv.Close)
	ar.CreateRepository(project, "mlflow")

	baseSrv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(baseSrv.Close)
	base, err := gcptest.BaseImage(1, 300<<10, 200<<10)
	if err != nil {
		t.Fatal(err)
	}
	baseRef := strings.TrimPrefix(baseSrv.URL, "http://") + "/mlflow/mlflow:v" + config.DefaultMLflowVersion + "-full"
	ref, err := name.ParseReference(baseRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, base); err != nil {
		t.Fatal(err)
	}

	// What the runner mounts: the workspace, where google-github-actions/auth leaves its credentials file, and
	// the file-command directory holding GITHUB_OUTPUT and GITHUB_STEP_SUMMARY.
	for _, dir := range []string{"github/workspace", "github/file_commands", "github/home"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key, err := tokens.ServiceAccountKey(filepath.Join(root, "github/workspace"), project, "")
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{run: run, vars: map[string]string{
		"INPUT_PROJECT_ID":                   project,
		"INPUT_REPOSITORY":                   "mlflow",
		"INPUT_IMAGE":                        strings.TrimPrefix(arSrv.URL, "http://") + "/" + project + "/mlflow/mlflow",
		"INPUT_BASE_IMAGE":                   baseRef,
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "mlflow_pass",
		"HOME":                               "/github/home",
		"GITHUB_ACTIONS":                     "true",
		"GITHUB_WORKSPACE":                   "/github/workspace",
		"GITHUB_SHA":                         "1111111111111111111111111111111111111111",
		"GITHUB_SERVER_URL":                  "https://github.com",
		"GITHUB_REPOSITORY":                  "acme/ml",
		"GITHUB_OUTPUT":                      "/github/file_commands/output",
		"GITHUB_STEP_SUMMARY":                "/github/file_commands/summary",
		gcp.CredentialsEnv:                   "/github/workspace/" + filepath.Base(key),
		gcp.RunEndpointEnv:                   run.Addr(),
		gcp.SecretManagerEndpointEnv:         secrets.Addr(),
		gcp.ResourceManagerEndpointEnv:       projects.Addr(),
	}}
}

// env is a fresh copy of the container's environment, for a test to change.
func (c *cloud) env() map[string]string {
	env := make(map[string]string, len(c.vars))
	for k, v := range c.vars {
		env[k] = v
	}
	return env
}
