package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	// Cloud Run sends SIGTERM before stopping an instance; Ctrl-C does the same for a local run.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, env{getenv: os.Getenv, environ: os.Environ(), lookPath: exec.LookPath}, os.Stdout)
	if err != nil {
		// run has logged the error as a structured line already.
		os.Exit(1)
	}
}
