// Package testenv starts the real parts that the tests and the demo run against: PostgreSQL (Debian's
// binaries), fake-gcs-server in process, the CNCF distribution registry (Debian's docker-registry), the
// MLflow virtualenv that internal/testenv/setup.sh creates, and the server program built from ./server.
//
// Every starter takes a context and a directory and returns a value with a Stop method, so a demo program
// can use it as well as a test. The New* functions are thin wrappers for tests: they fail the test on error
// and register Stop with t.Cleanup. Each part listens on 127.0.0.1 on a port chosen free, and every child
// process is killed on Stop, and also when the process that started it dies.
//
// Tests that check processes (which ones a program starts, that none outlives it, how much memory it
// took) read them from /proc with Proc, Procs, Descendants, Cmdline, PeakRSS and WaitGone.
package testenv
