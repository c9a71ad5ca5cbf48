package main

import (
	"context"
	"fmt"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/action"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

const (
	actionRuns = 5
	project    = gcptest.DefaultProjectID
	region     = "us-central1"
	repository = "mlflow-runner"
	service    = config.DefaultService
)

// actionOverhead runs the built action binary as GitHub runs it, against the Google stand-ins with
// operations that finish at their first poll and no revision process, so that what is timed is the
// action's own work: a redeploy of a new commit (new config and manifest, a new revision).
func actionOverhead(ctx context.Context, w *world, r *report) error {
	bin := filepath.Join(w.dir, "deploy-mlflow")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	build.Dir, build.Env = moduleRoot(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the action: %w\n%s", err, out)
	}
	regDir, err := w.subdir("action-registry")
	if err != nil {
		return err
	}
	reg, err := testenv.StartRegistry(ctx, regDir)
	if err != nil {
		return err
	}
	defer reg.Stop()
	cloud, err := gcptest.NewCloud(gcptest.WithInstantOperations(),
		gcptest.WithRegistryBackend(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: reg.Host()})))
	if err != nil {
		return err
	}
	defer cloud.Close()
	env, err := actionWorld(ctx, w, cloud, reg.Host())
	if err != nil {
		return err
	}

	s := r.section("3. The action's own overhead (redeploy)", "go run ./internal/bench -groups action", actionRuns)
	s.add("\nThe action binary (`go build -trimpath .`, CGO_ENABLED=0) run with only the environment GitHub gives a container action " +
		"(as localcloud.RunAction does), against internal/gcptest with WithInstantOperations and no Runtime, so the simulated rollout takes no time; " +
		"Artifact Registry's front has docker-registry behind it; the base is gcptest.BaseImage with 10 layers of 1 MiB (a redeploy only HEADs base layers, " +
		"so their size does not matter). One untimed first deploy, then each run deploys a new commit. Wall time and peak RSS (wait4's ru_maxrss) of the action process " +
		"are taken by a small helper parent (this program re-run with " + rusageFlag + ", see rusage.go), as wait4 from the benchmark itself would count the benchmark's own peak RSS.")
	if _, _, err := runAction(ctx, bin, env, "0000000000000000000000000000000000000000", w.dir); err != nil {
		return fmt.Errorf("first deploy: %w", err)
	}
	var walls, rss, tails []float64
	for i := range actionRuns {
		sha := fmt.Sprintf("%040x", i+1)
		before, _ := cloud.Run.Service(project, region, service)
		// The operation completes inside the stand-in when the action polls it; watching the service for
		// the new ready revision (every 1 ms) timestamps that moment without a hook in gcptest.
		var doneAt atomic.Int64
		stop := make(chan struct{})
		go func() {
			for {
				if svc, ok := cloud.Run.Service(project, region, service); ok && svc.GetLatestReadyRevision() != before.GetLatestReadyRevision() {
					doneAt.Store(time.Now().UnixNano())
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		wall, maxrss, err := runAction(ctx, bin, env, sha, w.dir)
		end := time.Now()
		close(stop)
		if err != nil {
			return fmt.Errorf("redeploy %d: %w", i+1, err)
		}
		walls, rss = append(walls, secs(wall)), append(rss, float64(maxrss))
		if t := doneAt.Load(); t != 0 {
			tails = append(tails, secs(end.Sub(time.Unix(0, t))))
		}
	}
	s.table("figure", "median", "each run", "target", "result")
	s.row("wall time of the action process", fmtSecs(median(walls)), list(walls), "< 2 s", verdict(median(walls) < 2))
	s.row("peak RSS of the action process", fmtMiB(median(rss)), mibList(rss), "< 100 MB", verdict(median(rss) < 100e6))
	if len(tails) == len(walls) {
		s.row("Cloud Run operation done → step ended", fmtMs(median(tails)), msList(tails), "< 2 s", verdict(median(tails) < 2))
	} else {
		s.row("Cloud Run operation done → step ended", "not measured", fmt.Sprintf("the new revision was seen in %d of %d runs", len(tails), len(walls)), "< 2 s", "unknown")
	}
	s.add("\nThe operation's completion is approximated by when the service's latest ready revision changes, polled every 1 ms " +
		"through gcptest's Run.Service (the stand-in completes the operation and readies the revision in the same locked step), so the " +
		"figure is exact to about 1 ms plus the poll's own delay. An exact figure needs a hook in gcptest's operations.go: " +
		"a callback (e.g. an option WithOperationDone(func(name string, at time.Time))) called from Run.complete.")
	return nil
}

func mibList(xs []float64) string {
	var mib []float64
	for _, x := range xs {
		mib = append(mib, x/(1<<20))
	}
	return list(mib) + " MiB"
}

// actionWorld puts in the stand-ins what the README's workflow needs (repository, secrets readable
// by the runtime account, a deployer key, a base image) and returns the action's environment.
func actionWorld(ctx context.Context, w *world, cloud *gcptest.Cloud, registry string) (map[string]string, error) {
	cloud.Registry.CreateRepository(project, repository)
	runtimeAccount := gcptest.DefaultProjectNumber + "-compute@developer.gserviceaccount.com"
	for secret, value := range map[string]string{
		"DB_url": w.backendURI("mlflow"), "bucket_url": "gs://mlflow-artifacts/artifacts",
		"mlflow_id": benchUser, "mlflow_pass": benchPass,
	} {
		cloud.SecretManager.AddSecret(project, secret, []byte(value))
		cloud.SecretManager.GrantSecretRole(project, secret, "serviceAccount:"+runtimeAccount, "roles/secretmanager.secretAccessor")
	}
	key, err := cloud.Tokens.ServiceAccountKey(w.dir, project, "deployer@"+project+".iam.gserviceaccount.com")
	if err != nil {
		return nil, err
	}
	base := registry + "/mlflow/mlflow:v" + config.DefaultMLflowVersion + "-full"
	img, err := gcptest.BaseImage(1, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20)
	if err != nil {
		return nil, err
	}
	ref, _ := name.ParseReference(base, name.Insecure)
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return nil, err
	}
	return map[string]string{
		"INPUT_PROJECT_ID":                   project,
		"INPUT_REGION":                       region,
		"INPUT_REPOSITORY":                   repository,
		"INPUT_IMAGE":                        cloud.RegistryHost + "/" + project + "/" + repository + "/mlflow",
		"INPUT_BASE_IMAGE":                   base,
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "mlflow_pass",
		"INPUT_MAX_INSTANCES":                "1",
		"GITHUB_SERVER_URL":                  "https://github.com",
		"GITHUB_REPOSITORY":                  "octo-org/mlflow-server",
		gcp.CredentialsEnv:                   key,
		gcp.RunEndpointEnv:                   cloud.Run.Addr(),
		gcp.SecretManagerEndpointEnv:         cloud.SecretManager.Addr(),
		gcp.ResourceManagerEndpointEnv:       cloud.Projects.Addr(),
		action.ServerBinaryEnv:               w.server,
	}, nil
}

// runAction runs the action at commit sha and returns its wall time and peak RSS in bytes.
func runAction(ctx context.Context, bin string, env map[string]string, sha, dir string) (time.Duration, int64, error) {
	out := filepath.Join(dir, "action-out-"+sha[:8])
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, bin)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "GITHUB_SHA="+sha, "GITHUB_OUTPUT="+filepath.Join(out, "github_output"),
		"GITHUB_STEP_SUMMARY="+filepath.Join(out, "step_summary.md"))
	u, b, err := measured(cmd)
	if err != nil {
		return 0, 0, fmt.Errorf("the action failed: %w\n%s", err, b)
	}
	return u.Wall, u.MaxRSS, nil
}
