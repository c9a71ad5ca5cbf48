// Command demo deploys MLflow with the action to a local cloud (see package localcloud), logs a model
// to the URL the action outputs, says how to log in, and keeps the server up for a browser until Ctrl-C.
// Run it with `make demo`, which installs what it needs first. DEPLOY_MLFLOW_DEMO_AUTH chooses the
// action's auth input: basic (the default), mlflow or iam; with iam the service is private, and as the
// local cloud issues no identity tokens, nothing is logged and the demo shows Cloud Run's refusal.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/localcloud"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	mode, err := authMode(os.Getenv(authEnv))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "deploy-mlflow-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logFile, err := os.Create(filepath.Join(dir, "revisions.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()

	step("Starting the local cloud: token endpoint, Secret Manager, Cloud Run, registry, PostgreSQL, fake-gcs-server")
	c, err := localcloud.Start(ctx, dir, logFile)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("  credentials  %s\n  registry     %s (base image %s)\n  Cloud Run    %s\n  Secret Mgr   %s\n  Resource Mgr %s\n  runtime      %s (may read the secrets)\n",
		c.KeyFile, c.Google.RegistryHost, c.BaseImage, c.Google.Run.Addr(), c.Google.SecretManager.Addr(), c.Google.Projects.Addr(), localcloud.RuntimeAccount)

	step("Running the action as GitHub would (INPUT_*, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY), with auth: " + mode)
	env := c.ActionEnv(fmt.Sprintf("%040x", time.Now().Unix()), dir)
	withAuth(env, mode)
	start := time.Now()
	outputs, err := c.RunAction(ctx, env, os.Stdout)
	if err != nil {
		return fmt.Errorf("%w (revision logs: %s)", err, logFile.Name())
	}
	fmt.Printf("\nDeployed in %s. Outputs:\n", time.Since(start).Round(100*time.Millisecond))
	for _, k := range []string{"url", "revision", "image", "service"} {
		fmt.Printf("  %-9s %s\n", k, outputs[k])
	}

	url := outputs["url"]
	var open string
	if mode == serverenv.AuthIAM {
		step("Asking the private service without an identity token, as a browser would")
		status, err := statusOf(ctx, url+"/health")
		if err != nil {
			return err
		}
		fmt.Printf("  GET %s/health: %s (Cloud Run's invoker IAM check)\n", url, status)
	} else {
		step("Logging a model from Python, as the article's test.py does")
		runID, err := c.LogModel(ctx, url, io.Discard)
		if err != nil {
			return err
		}
		fmt.Printf("  run %s logged; its model is in the bucket gs://%s/artifacts\n", runID, localcloud.Bucket)
		open = fmt.Sprintf("%s/#/experiments/0/runs/%s", url, runID)
	}

	step("MLflow is up")
	if open != "" { // nothing opens without an identity token (auth iam)
		fmt.Printf("  open      %s\n", open)
	}
	fmt.Print(loginHelp(mode, url, c.Password))
	fmt.Printf("  server logs: %s\n\nPress Ctrl-C to stop everything.\n", logFile.Name())
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

// statusOf is the status of a GET of url without credentials.
func statusOf(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking %s: %w", url, err)
	}
	resp.Body.Close()
	return resp.Status, nil
}
