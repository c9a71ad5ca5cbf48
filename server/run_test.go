package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// fakeMLflowScript stands in for the mlflow executable in the tests that run the server in this process:
// `db upgrade` sleeps for $FAKE_MLFLOW_UPGRADE_SECONDS, and `server` behaves as $FAKE_MLFLOW_MODE says.
// Every process it starts appends its PID to $FAKE_MLFLOW_DIR/pids; files named after the steps show which
// ran.
const fakeMLflowScript = `#!/bin/sh
dir=$FAKE_MLFLOW_DIR
echo $$ >> "$dir/pids"
case "$1" in
db)
	touch "$dir/upgrade-started"
	sleep "${FAKE_MLFLOW_UPGRADE_SECONDS:-0}"
	touch "$dir/upgrade-done"
	exit 0
	;;
server) ;;
*) exit 2 ;;
esac
case "$FAKE_MLFLOW_MODE" in
ignore-term)
	# MLflow and everything below it ignore SIGTERM.
	trap '' TERM
	sleep 300 & echo $! >> "$dir/pids"
	sleep 300 & echo $! >> "$dir/pids"
	touch "$dir/server"
	wait
	;;
children-ignore-term)
	# MLflow stops on SIGTERM, the processes it started do not.
	( trap '' TERM; exec sleep 300 ) & echo $! >> "$dir/pids"
	touch "$dir/server"
	exec sleep 300
	;;
exits)
	# MLflow dies and leaves a process behind that ignores SIGTERM.
	( trap '' TERM; exec sleep 300 ) & echo $! >> "$dir/pids"
	touch "$dir/server"
	exit 3
	;;
*)
	sleep 300 & echo $! >> "$dir/pids"
	touch "$dir/server"
	wait
	;;
esac
`

// fakeMLflow is one run of the server in this process with the fake mlflow.
type fakeMLflow struct {
	dir    string
	port   string
	out    *lineWriter
	cancel context.CancelFunc // SIGTERM
	done   chan error         // run's result
}

// startFakeMLflow runs the server with SQLite, auth: iam and the fake mlflow; vars (KEY=value) set the
// server's configuration and the fake's behaviour.
func startFakeMLflow(t *testing.T, out *lineWriter, vars ...string) *fakeMLflow {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "mlflow")
	if err := os.WriteFile(script, []byte(fakeMLflowScript), 0o755); err != nil {
		t.Fatal(err)
	}
	free, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(free)
	config := map[string]string{
		"PORT":                                port,
		"DEPLOY_MLFLOW_BACKEND_STORE_URI":     "sqlite:///" + filepath.Join(dir, "mlflow.db"),
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION": filepath.Join(dir, "artifacts"),
		"DEPLOY_MLFLOW_AUTH":                  "iam",
		"DEPLOY_MLFLOW_MLFLOW_COMMAND":        script,
		"DEPLOY_MLFLOW_SHUTDOWN_GRACE":        "100ms",
	}
	environ := []string{"PATH=" + os.Getenv("PATH"), "FAKE_MLFLOW_DIR=" + dir}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "FAKE_MLFLOW_") {
			environ = append(environ, kv)
		} else {
			config[k] = v
		}
	}
	if out == nil {
		out = &lineWriter{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeMLflow{dir: dir, port: port, out: out, cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- run(ctx, env{getenv: func(k string) string { return config[k] }, environ: environ, lookPath: exec.LookPath}, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
		// Whatever a failed test left running.
		for _, pid := range f.pids(t) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return f
}

// waitFor waits until the fake has created the file name.
func (f *fakeMLflow) waitFor(t *testing.T, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f.ran(name) {
			return
		}
	}
	t.Fatalf("the fake mlflow never created %s; server output:\n%s", name, f.out)
}

func (f *fakeMLflow) ran(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name))
	return err == nil
}

// pids lists every process the fake started.
func (f *fakeMLflow) pids(t *testing.T) []int {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(f.dir, "pids"))
	var out []int
	for _, s := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("pids file: %q", b)
		}
		out = append(out, pid)
	}
	return out
}

// result waits for run to return.
func (f *fakeMLflow) result(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("run did not return within %v; output:\n%s", within, f.out)
		return nil
	}
}

// assertGone checks that every process the fake started has ended (zombies waiting for a parent that does
// not reap them count as ended).
func (f *fakeMLflow) assertGone(t *testing.T) {
	t.Helper()
	pids := f.pids(t)
	if len(pids) == 0 {
		t.Fatal("the fake mlflow recorded no processes")
	}
	var procs []testenv.Proc
	for _, pid := range pids {
		procs = append(procs, testenv.Proc{PID: pid})
	}
	for _, p := range testenv.WaitGone(procs, 3*time.Second) {
		t.Errorf("process %d (%s) outlived the server", p.PID, testenv.Cmdline(p.PID))
	}
}

// lineWriter collects the server's output; hook, when set, sees each line as it is written, before the
// writer returns to the server.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	hook func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.hook != nil {
		w.hook(string(p))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestShutdownKillsMLflowGroup: after SIGTERM the server kills every process that MLflow started, those
// that ignore SIGTERM included, and returns.
func TestShutdownKillsMLflowGroup(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"plain", "ignore-term", "children-ignore-term"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := startFakeMLflow(t, nil, "FAKE_MLFLOW_MODE="+mode)
			f.waitFor(t, "server")
			f.cancel()
			if err := f.result(t, 10*time.Second); err != nil {
				t.Fatalf("run after SIGTERM: %v", err)
			}
			f.assertGone(t)
			if !strings.Contains(f.out.String(), `"message":"stopped"`) {
				t.Errorf("no stopped line:\n%s", f.out)
			}
		})
	}
}

// TestMLflowExitKillsGroup: when MLflow dies on its own, the server kills what it left behind and fails.
func TestMLflowExitKillsGroup(t *testing.T) {
	t.Parallel()
	f := startFakeMLflow(t, nil, "FAKE_MLFLOW_MODE=exits")
	err := f.result(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "MLflow exited on its own") {
		t.Fatalf("run = %v, want MLflow exited on its own", err)
	}
	f.assertGone(t)
}

// TestSIGTERMDuringSchemaUpgrade: the upgrade runs to its end, and MLflow is not started after it.
func TestSIGTERMDuringSchemaUpgrade(t *testing.T) {
	t.Parallel()
	f := startFakeMLflow(t, nil, "FAKE_MLFLOW_UPGRADE_SECONDS=1")
	f.waitFor(t, "upgrade-started")
	f.cancel()
	if err := f.result(t, 10*time.Second); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if !f.ran("upgrade-done") {
		t.Error("SIGTERM interrupted the schema upgrade")
	}
	if f.ran("server") {
		t.Error("MLflow started after SIGTERM")
	}
	if !strings.Contains(f.out.String(), "stopped during the schema upgrade") {
		t.Errorf("output:\n%s", f.out)
	}
	f.assertGone(t)
}

// TestMigrationTimeout: an upgrade that overruns DEPLOY_MLFLOW_MIGRATION_TIMEOUT is stopped, logged as an
// event, and the server fails without starting MLflow.
func TestMigrationTimeout(t *testing.T) {
	t.Parallel()
	f := startFakeMLflow(t, nil, "FAKE_MLFLOW_UPGRADE_SECONDS=300", "DEPLOY_MLFLOW_MIGRATION_TIMEOUT=300ms")
	err := f.result(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "DEPLOY_MLFLOW_MIGRATION_TIMEOUT") {
		t.Fatalf("run = %v, want an error naming DEPLOY_MLFLOW_MIGRATION_TIMEOUT", err)
	}
	out := f.out.String()
	if !strings.Contains(out, `"event":"schema-timeout"`) || !strings.Contains(out, `"severity":"CRITICAL"`) {
		t.Errorf("no schema-timeout event or no CRITICAL line:\n%s", out)
	}
	if f.ran("upgrade-done") || f.ran("server") {
		t.Error("the upgrade ran to its end, or MLflow started")
	}
	f.assertGone(t)
}

// TestDrainingLoggedAfterListenerClosed: once the draining line is written, new connections are refused.
// The hook dials while the server is still inside the log call, so a line written before the listener
// closes is caught every time.
func TestDrainingLoggedAfterListenerClosed(t *testing.T) {
	t.Parallel()
	out := &lineWriter{}
	dialed := make(chan error, 1)
	var port string
	var once sync.Once
	out.hook = func(line string) {
		if strings.Contains(line, "draining in-flight requests") {
			once.Do(func() {
				c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second)
				if err == nil {
					c.Close()
				}
				dialed <- err
			})
		}
	}
	f := startFakeMLflow(t, out)
	port = f.port
	f.waitFor(t, "server")
	f.cancel()
	if err := f.result(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-dialed:
		if err == nil {
			t.Error("a connection was accepted after the draining line")
		}
	default:
		t.Fatalf("no draining line:\n%s", out)
	}
}

// TestForcedExit: the first signal cancels, the second forces.
func TestForcedExit(t *testing.T) {
	t.Parallel()
	signals := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancel(context.Background())
	forced := make(chan struct{})
	go onSignals(signals, cancel, func() { close(forced) })
	signals <- syscall.SIGTERM
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not cancel the server's context")
	}
	select {
	case <-forced:
		t.Fatal("forced after one signal")
	case <-time.After(50 * time.Millisecond):
	}
	signals <- syscall.SIGTERM
	select {
	case <-forced:
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not force the exit")
	}
}

// TestKillChildren: the forced exit kills MLflow's whole group at once, and nothing starts after it. Not
// parallel: it kills every child of this process's server runs.
func TestKillChildren(t *testing.T) {
	f := &fakeMLflow{dir: t.TempDir()}
	script := filepath.Join(f.dir, "mlflow")
	if err := os.WriteFile(script, []byte(fakeMLflowScript), 0o755); err != nil {
		t.Fatal(err)
	}
	log := newLogger(&lineWriter{}, newRedactor())
	env := []string{"PATH=" + os.Getenv("PATH"), "FAKE_MLFLOW_DIR=" + f.dir, "FAKE_MLFLOW_MODE=ignore-term"}
	c, err := startChild(log, script, []string{"server"}, env)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		groups.Lock()
		groups.killed = false
		groups.Unlock()
	}()
	f.waitFor(t, "server")
	killChildren()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("MLflow still runs after killChildren")
	}
	f.assertGone(t)
	if _, err := startChild(log, script, []string{"server"}, env); err == nil {
		t.Error("a child started after killChildren")
	}
}

// TestStartChildPipeFailure: when the second pipe cannot be made, the first one is closed.
func TestStartChildPipeFailure(t *testing.T) {
	var made []*os.File
	osPipe = func() (*os.File, *os.File, error) {
		if len(made) > 0 {
			return nil, nil, errors.New("too many open files")
		}
		r, w, err := os.Pipe()
		made = append(made, r, w)
		return r, w, err
	}
	defer func() { osPipe = os.Pipe }()
	if _, err := startChild(newLogger(&lineWriter{}, newRedactor()), "/bin/true", nil, nil); err == nil {
		t.Fatal("startChild succeeded without its pipes")
	}
	for _, f := range made {
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("%s left open", f.Name())
		}
	}
}
