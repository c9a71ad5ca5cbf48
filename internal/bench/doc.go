// Command bench measures deploy-mlflow against its baselines on this machine and writes BENCHMARKS.md:
//
//	go run ./internal/bench [-out BENCHMARKS.md] [-groups coldstart,registry,action,requestpath,actionimage]
//
// (make bench runs it after internal/testenv/setup.sh.) It starts the real parts with internal/testenv
// (PostgreSQL, docker-registry, the MLflow virtualenv) and the Google stand-ins with internal/gcptest, and
// runs five groups, one file each: coldstart.go (the server program vs stock `mlflow server`),
// registry.go (image pushes vs crane, counted by a proxy: proxy.go), action.go (the action binary's own
// overhead), requestpath.go (the server in front of MLflow) and actionimage.go (the size of the action's
// image). Every figure is a median over repeated runs, next to its baseline measured in the same run.
//
// It is a benchmark, not a test: it asserts no time, and go test does not run it (this package has no
// tests). A missed target is reported as missed in BENCHMARKS.md, never hidden.
package main
