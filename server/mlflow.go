package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// that the server owns forced, and with MLflow's tunables passed through or defaulted. port is where
// `mlflow server` listens on loopback; 0 for `mlflow db upgrade`, which listens nowhere.
func mlflowEnv(environ []string, c config, port int) []string {
	forced := map[string]string{
		"MLFLOW_BACKEND_STORE_URI":     c.backendURI,
		"MLFLOW_ARTIFACTS_DESTINATION": c.artifacts,
		// Clients upload and download artifacts through the server, under mlflow-artifacts:/ URIs, and
		// need no credentials for the bucket.
		"MLFLOW_SERVE_ARTIFACTS": "true",
		// MLflow's job runner expects a long-lived machine with spare CPU; Cloud Run throttles CPU
		// between requests and stops instances at will.
		"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
	}
	if port != 0 {
		forced["MLFLOW_HOST"] = "127.0.0.1"
		forced["MLFLOW_PORT"] = strconv.Itoa(port)
		// The proxy hands MLflow this Host (see newProxy); nothing else reaches the loopback port.
		forced["MLFLOW_SERVER_ALLOWED_HOSTS"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	dropped := map[string]bool{
		// Where MLflow listens is the server's choice (above), never inherited.
		"MLFLOW_HOST": true, "MLFLOW_PORT": true, "MLFLOW_SERVER_ALLOWED_HOSTS": true,
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

// groups holds the process groups of the children started and not yet killed, for killChildren.
var groups struct {
	sync.Mutex
	live   map[int]bool
	killed bool // killChildren ran: start nothing more
}

// osPipe is os.Pipe, replaceable in tests.
var osPipe = os.Pipe

// startChild starts the mlflow executable with args and env, relaying its stdout and stderr to the log.
func startChild(log *logger, mlflow string, args, env []string) (*child, error) {
	cmd := exec.Command(mlflow, args...)
	cmd.Env = env
	// The child leads a process group of its own, which holds whatever it starts (uvicorn's supervisor
	// and workers below `mlflow server`); every way out of the server kills that group (stop,
	// killChildren). Pdeathsig covers the one way the server cannot, being killed outright, and reaches
	// only this direct child, not the processes below it. On Cloud Run that SIGKILL ends the instance,
	// and its container with every process in it; in a local run, uvicorn can outlive a server killed
	// with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{cmd: cmd, done: make(chan struct{})}
	var readEnds, writeEnds []*os.File
	closeAll := func(files []*os.File) {
		for _, f := range files {
			f.Close()
		}
	}
	for range 2 {
		r, w, err := osPipe()
		if err != nil {
			closeAll(readEnds)
			closeAll(writeEnds)
			return nil, fmt.Errorf("start %s: a pipe for its output: %w", mlflow, err)
		}
		readEnds, writeEnds = append(readEnds, r), append(writeEnds, w)
	}
	cmd.Stdout, cmd.Stderr = writeEnds[0], writeEnds[1]
	for i, stream := range []string{"stdout", "stderr"} {
		r := readEnds[i]
		c.relayed.Add(1)
		go func() {
			defer c.relayed.Done()
			defer r.Close()
			// The pipe ends when every process holding it (workers included) has gone.
			log.relay(r, "mlflow", stream)
		}()
	}
	groups.Lock()
	defer groups.Unlock()
	err := errors.New("the server is exiting")
	if !groups.killed {
		err = cmd.Start()
	}
	closeAll(writeEnds)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", mlflow, err)
	}
	if groups.live == nil {
		groups.live = map[int]bool{}
	}
	groups.live[cmd.Process.Pid] = true
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop sends SIGTERM to the child's process group, and after timeout (or as soon as the child has exited)
// SIGKILL to whatever is left in the group, such as uvicorn's workers or a process that ignores SIGTERM.
func (c *child) stop(timeout time.Duration) {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
	}
	c.killGroup()
	<-c.done
	c.waitRelayed(relayDrainTimeout)
}

// killGroup sends SIGKILL to the child's process group. The group keeps the child's PID as its ID while
// any member is left, even after the child itself has exited.
func (c *child) killGroup() {
	groups.Lock()
	defer groups.Unlock()
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	delete(groups.live, pgid)
}

// killChildren sends SIGKILL to the process group of every child not stopped yet, for an exit that cannot
// wait for the orderly stop.
func killChildren() {
	groups.Lock()
	defer groups.Unlock()
	groups.killed = true
	for pgid := range groups.live {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		delete(groups.live, pgid)
	}
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
		// Nothing it started may stay behind.
		c.killGroup()
		c.waitRelayed(5 * time.Second)
		return c.err
	case <-ctx.Done():
		c.stop(2 * time.Second)
		return ctx.Err()
	}
}

// directLaunchVersions are the MLflow releases whose `mlflow server` startMLflowServer has read and
// reproduces (mlflow/cli/__init__.py: server, mlflow/server/__init__.py: _run_server). How the CLI hands
// its settings to uvicorn's workers is MLflow's internal affair and may change in any release: for others,
// the server runs `mlflow server`.
var directLaunchVersions = map[string]bool{"3.17.2": true}

// cliOnlySettings are settings of `mlflow server` that the direct launch does not reproduce: set, they
// make the server run the CLI.
var cliOnlySettings = []string{
	"MLFLOW_GUNICORN_OPTS", "MLFLOW_EXPOSE_PROMETHEUS", "MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE_STORE_URI",
	"MLFLOW_WORKSPACE", "MLFLOW_TRACE_ARCHIVAL_CONFIG", "MLFLOW_READ_REPLICA_BACKEND_STORE_URI",
	"MLFLOW_REGISTRY_STORE_URI", "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "MLFLOW_SQL_TRACE_ROLLUPS_ENABLED",
	"MLFLOW_DEFAULT_ARTIFACT_ROOT", "MLFLOW_STATIC_PREFIX", "MLFLOW_ARTIFACTS_ONLY",
}

// basicAuthApp is what `mlflow server --app-name basic-auth` runs in the releases of directLaunchVersions:
// the entry point `basic-auth = mlflow.server.auth:create_app` (group mlflow.app), a function, which the
// CLI hands to uvicorn with --factory.
const basicAuthApp = "mlflow.server.auth:create_app"

// directLaunch builds what `mlflow server` would run for the settings in env, without the CLI: the CLI
// imports all of MLflow (seconds) only to start `python -m uvicorn` with a few internal variables, and each
// uvicorn worker imports MLflow again anyway. It returns why not when the CLI has to run: arguments other
// than "server" or "server --app-name basic-auth", an unknown release, or a setting only the CLI handles.
//
// With --app-name basic-auth the CLI first bootstraps the auth app (migrates its tables, creates the admin)
// and then tells the workers so with _MLFLOW_AUTH_ADMIN_BOOTSTRAPPED, which makes them only open the
// store. adminReady says that prepareStore has done that bootstrap, under the schema lock; without it the
// CLI runs.
//
// What the CLI does and this skips: initialize_backend_stores, which creates the tables of an empty
// database (upgradeSchema has done that before MLflow starts); validate_sql_trace_rollup_startup, which
// refuses to start with trace-rollup rows while rollups are off (rollups need job execution, which the
// server turns off); and its usage-telemetry event.
func directLaunch(inst mlflowInstall, args, env []string, bootID string, adminReady bool) (argv, outEnv []string, whyNot string) {
	app, factory := "mlflow.server.fastapi_app:app", false
	switch {
	case slices.Equal(args, []string{"server"}):
	case slices.Equal(args, []string{"server", "--app-name", "basic-auth"}):
		if !adminReady {
			return nil, nil, "the auth app's admin user was not set up before the start"
		}
		app, factory = basicAuthApp, true
	default:
		return nil, nil, fmt.Sprintf("arguments %q", args)
	}
	if !directLaunchVersions[inst.version] {
		return nil, nil, "MLflow " + inst.version + " is not a release whose server command this server reproduces"
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for _, k := range cliOnlySettings {
		if vars[k] != "" {
			return nil, nil, k + " is set"
		}
	}
	if factory && vars[serverenv.FlaskSecretKey] == "" {
		// The CLI refuses to start without it in one clear error; each worker would fail and be restarted.
		return nil, nil, serverenv.FlaskSecretKey + " is unset"
	}
	if vars["MLFLOW_SERVE_ARTIFACTS"] != "true" || vars["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] != "false" {
		return nil, nil, "artifacts not served or job execution on"
	}
	host, port, dest, backend := vars["MLFLOW_HOST"], vars["MLFLOW_PORT"], vars["MLFLOW_ARTIFACTS_DESTINATION"], vars["MLFLOW_BACKEND_STORE_URI"]
	if host == "" || port == "" || dest == "" || backend == "" {
		return nil, nil, "host, port, backend store or artifacts destination unset"
	}
	workers := "4" // the CLI's default
	if w := vars["MLFLOW_WORKERS"]; w != "" {
		if n, err := strconv.Atoi(w); err != nil || n < 1 {
			return nil, nil, "MLFLOW_WORKERS=" + w + " is not a positive number"
		}
		workers = w
	}
	// The CLI splits the options with Python's shlex; without quotes or escapes that is splitting at spaces.
	opts := vars["MLFLOW_UVICORN_OPTS"]
	if strings.ContainsAny(opts, `"'\`) {
		return nil, nil, "MLFLOW_UVICORN_OPTS has quotes or escapes"
	}
	argv = []string{inst.python, "-m", "uvicorn"}
	argv = append(argv, strings.Fields(opts)...)
	if !slices.ContainsFunc(argv, func(o string) bool { return o == "--log-config" || strings.HasPrefix(o, "--log-config=") }) {
		argv = append(argv, "--log-config", filepath.Join(inst.sitePackages, "mlflow", "server", "uvicorn_log_config.yaml"))
	}
	argv = append(argv, "--host", host, "--port", port, "--workers", workers)
	if factory {
		argv = append(argv, "--factory")
	}
	argv = append(argv, app)

	// What _run_server hands its workers, and what the CLI writes into its own environment first.
	set := map[string]string{
		"_MLFLOW_SERVER_FILE_STORE":            backend,
		"_MLFLOW_SERVER_REGISTRY_STORE":        backend,
		"_MLFLOW_SERVER_ARTIFACT_ROOT":         "mlflow-artifacts:/",
		"_MLFLOW_SERVER_SERVE_ARTIFACTS":       "true",
		"_MLFLOW_SERVER_ARTIFACT_DESTINATION":  dest,
		"MLFLOW_SERVER_SECRETS_CACHE_TTL":      "60",   // --secrets-cache-ttl's default; it has no variable
		"MLFLOW_SERVER_SECRETS_CACHE_MAX_SIZE": "1000", // likewise --secrets-cache-max-size
		"_MLFLOW_SERVER_BOOT_ID":               bootID,
		"_MLFLOW_IN_JOB_EXECUTOR":              "false",
		"_MLFLOW_SGI_NAME":                     "uvicorn",
		"MLFLOW_ENABLE_WORKSPACES":             "false",
	}
	if factory {
		// The admin exists with the configured password and the auth tables are at head: the workers
		// only open the auth store. (mlflowAuth.environ drops inherited values, so only this sets it.)
		set[authBootstrappedEnv] = "true"
	}
	if vars["MLFLOW_SERVER_X_FRAME_OPTIONS"] == "" {
		set["MLFLOW_SERVER_X_FRAME_OPTIONS"] = "SAMEORIGIN" // --x-frame-options' default
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			outEnv = append(outEnv, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		outEnv = append(outEnv, k+"="+set[k])
	}
	return argv, outEnv, ""
}

// startMLflowServer starts MLflow's server: uvicorn directly when directLaunch can reproduce `mlflow
// server`, else the CLI. The log says which and why. adminReady is directLaunch's.
func startMLflowServer(log *logger, mlflow string, args, env []string, adminReady bool) (*child, error) {
	inst, err := inspectMLflow(mlflow)
	whyNot := ""
	if err != nil {
		whyNot = err.Error()
	} else {
		argv, denv, why := directLaunch(inst, args, env, randomHex(16), adminReady)
		if why == "" {
			log.info("starting MLflow's uvicorn directly, as `mlflow server` "+inst.version+" would", "launch", "uvicorn")
			return startChild(log, argv[0], argv[1:], denv)
		}
		whyNot = why
	}
	log.info("starting MLflow through `mlflow server`: "+whyNot, "launch", "cli")
	return startChild(log, mlflow, args, env)
}

// randomHex is n random bytes in hex, as uuid4().hex is for the CLI's boot id.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// warmUpTimeout bounds warmUp: a store that takes longer to open is MLflow's to report, per request.
const warmUpTimeout = 30 * time.Second

// warmUp asks MLflow for the Default experiment once it answers /health, before the server reports ready.
// A uvicorn worker opens the tracking store (SQLAlchemy engine, MLflow's own schema check, the Default
// experiment on a new database) at its first request; `mlflow server` also opened it once before starting
// uvicorn, which the direct launch skips. This request restores "the Default experiment exists once the
// server is ready", surfaces a store that cannot open in the log at start, and takes that cost off the first
// client's request (in the worker that answers it). Its failures are only logged; it returns an error only
// when ctx ended, and then the server is stopping.
func warmUp(ctx context.Context, log *logger, addr string) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, warmUpTimeout)
	defer cancel()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/2.0/mlflow/experiments/get?experiment_id=0", nil)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if parent.Err() != nil {
		return parent.Err()
	}
	if err != nil {
		log.warn("MLflow's first request (the Default experiment) failed: "+err.Error(), "duration", time.Since(start))
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	switch {
	case resp.StatusCode == http.StatusOK:
		log.info("MLflow's tracking store is open", "duration", time.Since(start))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// MLflow's own authentication (--app-name) guards the API; the CLI opened the store then.
	default:
		log.warn("MLflow's first request (the Default experiment) answered "+resp.Status+": "+string(body), "duration", time.Since(start))
	}
	return nil
}
