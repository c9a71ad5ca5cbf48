// Command demo deploys MLflow with the action to a local cloud (see package localcloud), logs a model
// to the URL the action outputs, and keeps the server up for a browser until Ctrl-C. Run it with
// `make demo`, which installs what it needs first.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/localcloud"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
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

	step("Running the action as GitHub would (INPUT_*, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)")
	env := c.ActionEnv(fmt.Sprintf("%040x", time.Now().Unix()), dir)
	start := time.Now()
	outputs, err := c.RunAction(ctx, env, os.Stdout)
	if err != nil {
		return fmt.Errorf("%w (revision logs: %s)", err, logFile.Name())
	}
	fmt.Printf("\nDeployed in %s. Outputs:\n", time.Since(start).Round(100*time.Millisecond))
	for _, k := range []string{"url", "revision", "image", "service"} {
		fmt.Printf("  %-9s %s\n", k, outputs[k])
	}

	step("Logging a model from Python, as the article's test.py does")
	runID, err := c.LogModel(ctx, outputs["url"], io.Discard)
	if err != nil {
		return err
	}
	fmt.Printf("  run %s logged; its model is in the bucket gs://%s/artifacts\n", runID, localcloud.Bucket)

	step("MLflow is up")
	fmt.Printf("  open      %s/#/experiments/0/runs/%s\n", outputs["url"], runID)
	fmt.Printf("  username  %s\n  password  %s\n", localcloud.Username, c.Password)
	fmt.Printf("  server logs: %s\n\nPress Ctrl-C to stop everything.\n", logFile.Name())
	<-ctx.Done()
	fmt.Println("\nStopping.")
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }
