package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// Defaults for MLflow's own settings when the service spec leaves them unset. Cloud Run's default instance
// has 1 CPU and 2 GiB, where MLflow's default of 4 workers only competes for the CPU; and every worker
// holds its own SQLAlchemy pool, while Cloud SQL's smaller tiers allow a few dozen connections in all.
var mlflowDefaults = []struct{ name, value string }{
	{serverenv.Workers, "2"},
	{serverenv.DBPoolSize, "2"},
	{serverenv.DBMaxOverflow, "2"},
}

// mlflowEnv builds the environment of MLflow's processes from the server's own: without the server's
// DEPLOY_MLFLOW_* configuration (the basic-auth credentials are the server's alone), with the settings
// that the server owns forced, and with MLflow's tunables passed through or defaulted.
func mlflowEnv(environ []string, c config, port int) []string {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	forced := map[string]string{
		"MLFLOW_BACKEND_STORE_URI":     c.backendURI,
		"MLFLOW_ARTIFACTS_DESTINATION": c.artifacts,
		// Clients upload and download artifacts through the server, under mlflow-artifacts:/ URIs, and
		// need no credentials for the bucket.
		"MLFLOW_SERVE_ARTIFACTS": "true",
		"MLFLOW_HOST":            "127.0.0.1",
		"MLFLOW_PORT":            strconv.Itoa(port),
		// The proxy hands MLflow this Host (see newProxy); nothing else reaches the loopback port.
		"MLFLOW_SERVER_ALLOWED_HOSTS": addr,
		// MLflow's job runner expects a long-lived machine with spare CPU; Cloud Run throttles CPU
		// between requests and stops instances at will.
		"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
	}
	dropped := map[string]bool{
		// With no default artifact root MLflow hands out mlflow-artifacts:/ URIs; a gs:// root would
		// send clients to the bucket directly.
		"MLFLOW_DEFAULT_ARTIFACT_ROOT": true,
		// The server answers and polls /health at the root; a prefix would move MLflow's.
		"MLFLOW_STATIC_PREFIX": true,
		// An artifacts-only MLflow would serve no tracking API.
		"MLFLOW_ARTIFACTS_ONLY": true,
	}
	set := map[string]bool{}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DEPLOY_MLFLOW_") || dropped[k] {
			continue
		}
		if _, ok := forced[k]; ok {
			continue
		}
		set[k] = true
		out = append(out, kv)
	}
	for k, v := range forced {
		out = append(out, k+"="+v)
	}
	sqlite := strings.HasPrefix(strings.ToLower(c.backendURI), "sqlite")
	for _, d := range mlflowDefaults {
		// SQLite's pools take no size settings; MLflow passes them only when set.
		if set[d.name] || (sqlite && d.name != serverenv.Workers) {
			continue
		}
		out = append(out, d.name+"="+d.value)
	}
	if !set["PYTHONUNBUFFERED"] {
		// Piped stdout is block-buffered in Python; lines would reach the log late or be lost in a crash.
		out = append(out, "PYTHONUNBUFFERED=1")
	}
	if !set["MLFLOW_UVICORN_OPTS"] && !set["MLFLOW_GUNICORN_OPTS"] {
		// The server logs every request in Cloud Logging's format; uvicorn's access log would repeat each.
		out = append(out, "MLFLOW_UVICORN_OPTS=--no-access-log")
	}
	return out
}

// freeLoopbackPort picks a port for MLflow on 127.0.0.1. MLflow cannot report the port it bound, so the
// server asks the kernel for a free one and hands it over.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port for MLflow: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// child is an MLflow process in a process group of its own, so that stopping it reaches the uvicorn
// supervisor and workers that `mlflow server` starts below itself.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // valid once done is closed
	relayed sync.WaitGroup
}

// startChild starts the mlflow executable with args and env, relaying its stdout and stderr to the log.
func startChild(log *logger, mlflow string, args, env []string) (*child, error) {
	cmd := exec.Command(mlflow, args...)
	cmd.Env = env
	// If the server is killed outright, MLflow must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{cmd: cmd, done: make(chan struct{})}
	var closeAfterStart []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		if stream == "stdout" {
			cmd.Stdout = w
		} else {
			cmd.Stderr = w
		}
		closeAfterStart = append(closeAfterStart, w)
		c.relayed.Add(1)
		go func() {
			defer c.relayed.Done()
			defer r.Close()
			// The pipe ends when every process holding it (workers included) has gone.
			log.relay(r, "mlflow", stream)
		}()
	}
	err := cmd.Start()
	for _, w := range closeAfterStart {
		w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", mlflow, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM to the child's process group, and SIGKILL after timeout.
func (c *child) stop(timeout time.Duration) {
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
	}
	// Workers may outlive the process that started them; the group goes in any case.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.done
	c.waitRelayed(time.Second)
}

// waitRelayed waits for the child's last lines to reach the log, but not for ever: a process that escaped
// the group could hold the pipe open.
func (c *child) waitRelayed(timeout time.Duration) {
	ch := make(chan struct{})
	go func() { c.relayed.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(timeout):
	}
}

// exitError describes how the child ended.
func (c *child) exitError() error {
	if c.err == nil {
		return errors.New("exited with status 0")
	}
	return c.err
}

// runChild runs mlflow with args to completion; when ctx ends first, it stops the child.
func runChild(ctx context.Context, log *logger, mlflow string, args, env []string) error {
	c, err := startChild(log, mlflow, args, env)
	if err != nil {
		return err
	}
	select {
	case <-c.done:
		c.waitRelayed(5 * time.Second)
		return c.err
	case <-ctx.Done():
		c.stop(2 * time.Second)
		return ctx.Err()
	}
}
