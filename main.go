// Command deploy-mlflow is the GitHub Action: it builds the MLflow image, pushes it and deploys it to
// Cloud Run. See README.md for its inputs and outputs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-githubactions"

	"github.com/deploy-mlflow/deploy-mlflow/internal/action"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := action.Run(ctx, os.Getenv, os.Stdout); err != nil {
		action.Annotate(githubactions.New(), err)
		stop()
		os.Exit(1)
	}
}
