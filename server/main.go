package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	// Cloud Run sends SIGTERM before stopping an instance; Ctrl-C does the same for a local run. The first
	// starts the orderly shutdown; a second one ends the server at once.
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	go onSignals(signals, cancel, func() {
		// Not the signal's default action: that would leave MLflow's uvicorn processes behind in a local
		// run, and as PID 1 of a container the server would not even be ended by it.
		killChildren()
		newLogger(os.Stdout, newRedactor()).warn("second signal: exiting at once; MLflow killed")
		os.Exit(1)
	})
	err := run(ctx, env{getenv: os.Getenv, environ: os.Environ(), lookPath: exec.LookPath}, os.Stdout)
	if err != nil {
		// run has logged the error as a structured line already.
		os.Exit(1)
	}
}

// onSignals cancels the server's context on the first signal and calls force on the second.
func onSignals(signals <-chan os.Signal, cancel context.CancelFunc, force func()) {
	<-signals
	cancel()
	<-signals
	force()
}
