package action

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// promptly is how soon after its cancellation the action must have stopped: GitHub's runner sends
// SIGINT, then SIGTERM 7.5 s later, then kills the process 2.5 s after that.
const promptly = 2 * time.Second

// watchedLog is the action's log, safe to read while the action writes it. When the action writes a
// line starting with cancelOn, the write calls cancel before it returns, so that the action is
// cancelled at exactly that point of the deploy.
type watchedLog struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	cancelOn string
	cancel   func()
}

func (w *watchedLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.buf.Write(p)
	cancel := w.cancel
	hit := w.cancelOn != "" && strings.HasPrefix(string(p), w.cancelOn)
	w.mu.Unlock()
	if hit && cancel != nil {
		cancel()
	}
	return n, err
}

func (w *watchedLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor polls the log until it holds want, or fails after deadline saying what it waited for.
func (w *watchedLog) waitFor(t *testing.T, want string, deadline time.Duration) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !strings.Contains(w.String(), want) {
		if time.Now().After(end) {
			t.Fatalf("the action's log did not show %q within %s:\n%s", want, deadline, w.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCancelled runs the action and cancels it when log.cancelOn shows, or when cancelAt (if not nil)
// calls its argument, and returns the action's error once it has stopped, failing if that took longer
// than promptly.
func runCancelled(t *testing.T, c *cloud, log *watchedLog, cancelAt func(cancel func())) *StoppedError {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	cancelled := make(chan time.Time, 1)
	stop := func() {
		once.Do(func() {
			cancelled <- time.Now()
			cancel()
		})
	}
	log.mu.Lock()
	log.cancel = stop
	log.mu.Unlock()
	env := func(k string) string { return c.env[k] }
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		_, err := Run(ctx, env, log)
		done <- err
	}()
	// However the test ends (a t.Fatal in cancelAt included), the action stops before the test's
	// cleanup removes the files it writes to.
	defer func() { cancel(); <-finished }()
	if cancelAt != nil {
		cancelAt(stop)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(120 * time.Second):
		t.Fatalf("the action had not stopped within 120 s:\n%s", log.String())
	}
	var at time.Time
	select {
	case at = <-cancelled:
	default:
		t.Fatalf("the action ended before it was cancelled: %v\n%s", err, log.String())
	}
	if took := time.Since(at); took > promptly {
		t.Errorf("the action took %s to stop after it was cancelled, want at most %s", took, promptly)
	}
	var se *StoppedError
	if !errors.As(err, &se) {
		t.Fatalf("want a *StoppedError, got %v\n%s", err, log.String())
	}
	summary, _ := os.ReadFile(c.env["GITHUB_STEP_SUMMARY"])
	if !strings.Contains(string(summary), se.State()) || !strings.Contains(string(summary), "deploy cancelled") {
		t.Errorf("the step summary does not say what state the service was left in (%s):\n%s", se.State(), summary)
	}
	if b, _ := os.ReadFile(c.env["GITHUB_OUTPUT"]); len(b) != 0 {
		t.Errorf("a cancelled deploy wrote outputs: %s", b)
	}
	return se
}

func TestRunCancelledDuringPush(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	// Uploads hang until the client gives up, as over a very slow link. (The server notices a client
	// gone only once it has read the request's body; release ends the handlers when the test is over.)
	uploading, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	var once sync.Once
	c.wrapRegistry(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/uploads/") && r.Method != http.MethodPost {
				once.Do(func() { close(uploading) })
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	log := &watchedLog{}
	se := runCancelled(t, c, log, func(cancel func()) {
		select {
		case <-uploading:
		case <-time.After(5 * time.Minute):
			t.Fatalf("the action did not start uploading a layer within 5 minutes:\n%s", log.String())
		}
		cancel()
	})
	if se.Stage != NothingWritten || !strings.Contains(se.Error(), "nothing was written") {
		t.Errorf("stopped during the push: stage %d, %v", se.Stage, se)
	}
	if n := len(c.run.CallCounts()); n != 0 {
		t.Errorf("Cloud Run was called after the push was cancelled: %v", c.run.CallCounts())
	}
}

func TestRunCancelledAfterPush(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	se := runCancelled(t, c, &watchedLog{cancelOn: "pushed "}, nil)
	if _, ok := c.run.Service(project, "us-central1", "mlflow"); ok || se.Stage != ImagePushed ||
		!strings.Contains(se.Error(), "was pushed, but service mlflow was not updated") || !strings.Contains(se.Error(), se.Image) {
		t.Errorf("stopped after the push (service exists: %v): stage %d, %v", ok, se.Stage, se)
	}
}

func TestRunCancelledDuringRollout(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithOperationDelay(time.Minute))
	se := runCancelled(t, c, &watchedLog{cancelOn: "waiting up to"}, nil)
	svc, ok := c.run.Service(project, "us-central1", "mlflow")
	if !ok || se.Stage != UpdateSent || se.Operation == "" || se.Revision == "" {
		t.Fatalf("stopped during the rollout: stage %d, %+v", se.Stage, se)
	}
	for _, want := range []string{"rolling it out", "operation " + se.Operation, "revision " + se.Revision,
		"https://console.cloud.google.com/run/detail/us-central1/mlflow/revisions?project=" + project} {
		if !strings.Contains(se.Error(), want) {
			t.Errorf("the report does not say %q: %v", want, se)
		}
	}
	if got := svc.Template.Containers[0].Image; got != se.Image {
		t.Errorf("the service runs %s, the report says %s", got, se.Image)
	}
}

// TestRunCancelledAsRolloutEnds stops the action once Cloud Run finished the rollout but before the
// action read the result: a fresh read tells that the new revision serves.
func TestRunCancelledAsRolloutEnds(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithInstantOperations())
	se := runCancelled(t, c, &watchedLog{cancelOn: "Cloud Run finished the rollout"}, nil)
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	if se.Stage != Done || !strings.HasSuffix(svc.GetLatestReadyRevision(), se.Revision) || !strings.Contains(se.Error(), "is ready and serves") {
		t.Errorf("stopped as the rollout ended: stage %d, %v (service %v)", se.Stage, se, svc)
	}
}

var (
	actionOnce sync.Once
	actionBin  string
	actionErr  error
)

// builtAction builds the action's program, as its Dockerfile does, once for the package's tests.
func builtAction(t *testing.T) string {
	t.Helper()
	actionOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploy-mlflow-action-")
		if err != nil {
			actionErr = err
			return
		}
		actionBin = filepath.Join(dir, "deploy-mlflow")
		cmd := exec.Command("go", "build", "-o", actionBin, ".")
		cmd.Dir = testenv.ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			actionErr = errors.New("go build the action: " + err.Error() + "\n" + string(out))
		}
	})
	if actionErr != nil {
		t.Fatal(actionErr)
	}
	return actionBin
}

// TestBinaryStopsOnSIGTERM runs the action's program as the runner does and sends it SIGTERM during the
// rollout, as a cancelled job does: it exits promptly with exit code 1 and one error annotation saying
// the rollout goes on, with its operation.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithOperationDelay(time.Minute))
	cmd := exec.Command(builtAction(t))
	for k, v := range c.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	log := &watchedLog{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	log.waitFor(t, "waiting up to", 60*time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(promptly):
		t.Fatalf("the action was still running %s after SIGTERM:\n%s", promptly, log.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit = %v, want exit code 1", err)
	}
	var errorLines []string
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(line, "::error") {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], "the deploy was cancelled") ||
		!strings.Contains(errorLines[0], "rolling it out") || !strings.Contains(errorLines[0], "operation ") {
		t.Errorf("want one error annotation saying the rollout goes on, got %q\n%s", errorLines, log.String())
	}
	summary, _ := os.ReadFile(c.env["GITHUB_STEP_SUMMARY"])
	if !strings.Contains(string(summary), "rolling it out") {
		t.Errorf("the step summary does not say the rollout goes on:\n%s", summary)
	}
}
