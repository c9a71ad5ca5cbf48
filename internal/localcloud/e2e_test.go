package localcloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	commit1 = "c0ffee0000000000000000000000000000000001"
	commit2 = "c0ffee0000000000000000000000000000000002"
	commit3 = "c0ffee0000000000000000000000000000000003"
)

// TestEndToEnd deploys MLflow with the action's binary, as GitHub runs it, to the local cloud, logs a
// model to the URL it outputs, and then redeploys: unchanged, at a new commit, and with a bad secret.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a registry and MLflow")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, _ := startCloud(t, ctx)

	// Every deploy also mounts a secret as a file, as a user's own key file would be.
	const extraSecret, extraValue, extraPath = "some_secret", "extra value\n", "/secrets/extra.txt"
	c.Google.SecretManager.AddSecret(Project, extraSecret, []byte(extraValue))
	c.Google.SecretManager.GrantSecretRole(Project, extraSecret, "serviceAccount:"+RuntimeAccount, "roles/secretmanager.secretAccessor")
	actionEnv := func(sha, outDir string) map[string]string {
		env := c.ActionEnv(sha, outDir)
		env["INPUT_SECRETS"] = extraPath + "=" + extraSecret
		return env
	}

	// First deploy.
	out := t.TempDir()
	env := actionEnv(commit1, out)
	first, actionLog := deploy(t, ctx, c, env)
	if !strings.Contains(actionLog, RuntimeAccount+" may read every secret the service references") {
		t.Errorf("the action did not check the runtime account's access to the secrets:\n%s", actionLog)
	}
	url := first["url"]
	if !strings.HasPrefix(url, "http://127.0.0.1:") || first["service"] != "mlflow" || first["revision"] == "" ||
		!strings.HasPrefix(first["image"], env["INPUT_IMAGE"]+"@sha256:") {
		t.Fatalf("outputs = %v", first)
	}
	summary, err := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{url, first["revision"], first["image"], "/logs?project=" + Project, "service created"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("the step summary does not show %q:\n%s", want, summary)
		}
	}
	if strings.Contains(actionLog, c.Password) || strings.Contains(string(summary), c.Password) {
		t.Error("the action printed the MLflow password")
	}
	// Public through invoker_iam_disabled (the Run stand-in refuses allUsers by default, as a secure-by-
	// default organization does): a request without credentials passes Cloud Run's invoker check and
	// meets the server's basic auth.
	resp, err := http.Get(url + "/api/2.0/mlflow/experiments/search")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a request without credentials: %s, want the server's 401 behind Cloud Run's invoker check", resp.Status)
	}
	if !strings.Contains(string(summary), "public: Cloud Run's invoker IAM check is disabled") {
		t.Errorf("the step summary does not say the service is public:\n%s", summary)
	}

	// The server's process finds the secret at the path the input names, as a read-only file of mode
	// 0444, and the host does not.
	checkSecretFile(t, c, first["revision"], extraPath, extraValue)

	// A client logs the article's model to the URL output.
	runID, err := c.LogModel(ctx, url, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, c, url, runID)
	objects, err := c.GCS.ObjectNames(Bucket, "artifacts/")
	if err != nil {
		t.Fatal(err)
	}
	// MLflow 3 keeps a logged model under the experiment's models/, with its MLmodel and the pickled (or
	// skops) estimator.
	if !containsSuffix(objects, "/MLmodel") || !containsSuffix(objects, "/model.skops") && !containsSuffix(objects, "/model.pkl") {
		t.Errorf("the model's files are not in the bucket: %v", objects)
	}

	// The same commit again writes nothing.
	registryWrites, runWrites := c.Google.Registry.Counts().Writes, c.Google.Run.Writes()
	again, _ := deploy(t, ctx, c, actionEnv(commit1, t.TempDir()))
	if again["revision"] != first["revision"] || again["image"] != first["image"] {
		t.Errorf("an unchanged re-run gave %v, first %v", again, first)
	}
	if c.Google.Registry.Counts().Writes != registryWrites || c.Google.Run.Writes() != runWrites {
		t.Errorf("an unchanged re-run wrote: registry %d writes, Cloud Run %d",
			c.Google.Registry.Counts().Writes-registryWrites, c.Google.Run.Writes()-runWrites)
	}

	// A new commit rolls a new revision on the same URL, and the run logged before is still there.
	second, _ := deploy(t, ctx, c, actionEnv(commit2, t.TempDir()))
	if second["revision"] == first["revision"] || second["url"] != url {
		t.Errorf("redeploy outputs %v, first %v", second, first)
	}
	checkRun(t, c, url, runID)

	// A 50 MiB artifact goes through the h2c deployment (over Cloud Run's 32 MiB HTTP/1 limit).
	const size = 50 << 20
	path := runArtifactPath(t, c, url, runID) + "/big.bin"
	sum := uploadArtifact(t, c, url+"/api/2.0/mlflow-artifacts/artifacts/"+path, size)
	got, err := c.GCS.Open(Bucket, "artifacts/"+path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, got)
	got.Close()
	if n != size || !bytes.Equal(h.Sum(nil), sum) {
		t.Errorf("the bucket holds %d bytes with another hash", n)
	}

	// A bad secret name stops the action before anything is pushed or deployed.
	bad := actionEnv(commit1[:39]+"9", t.TempDir())
	bad["INPUT_PASSWORD_SECRET"] = "mlflow_password"
	registryWrites, runWrites = c.Google.Registry.Counts().Writes, c.Google.Run.Writes()
	var badLog bytes.Buffer
	if _, err := c.RunAction(ctx, bad, &badLog); err == nil {
		t.Fatal("the action succeeded with a secret that does not exist")
	}
	var exit *exec.ExitError
	if _, err := c.RunAction(ctx, bad, io.Discard); !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit = %v, want exit code 1", err)
	}
	if !strings.Contains(badLog.String(), "::error") || !strings.Contains(badLog.String(), "mlflow_password") ||
		!strings.Contains(badLog.String(), "password_secret") {
		t.Errorf("the error annotation does not name the secret and its input:\n%s", badLog.String())
	}
	if c.Google.Registry.Counts().Writes != registryWrites || c.Google.Run.Writes() != runWrites {
		t.Error("a bad secret name did not stop the action before it pushed or deployed")
	}

	// A revision that cannot start (its database does not exist) fails the step with the server's last
	// log lines, and the previous revision keeps serving.
	missingDB := strings.Replace(c.Postgres.URL("no_such_db"), "postgresql://", "postgresql+psycopg2://", 1)
	c.Google.SecretManager.AddSecret(Project, "DB_url", []byte(missingDB))
	var failLog bytes.Buffer
	if _, err := c.RunAction(ctx, actionEnv(commit3, t.TempDir()), &failLog); err == nil {
		t.Fatal("a revision whose database does not exist was reported ready")
	}
	if !strings.Contains(failLog.String(), "startup probe") || !strings.Contains(failLog.String(), "no_such_db") {
		t.Errorf("the failure does not give the probe's verdict and the server's log lines:\n%s", failLog.String())
	}
	if strings.Contains(failLog.String(), c.Postgres.Password()) {
		t.Error("the failure shows the database password")
	}
	checkRun(t, c, url, runID)
}

// checkSecretFile checks that revision's process sees a file at path with value and mode 0444, through
// /proc/PID/root, which resolves paths in the process's own mount namespace; and that the host does not.
func checkSecretFile(t *testing.T, c *Cloud, revision, path, value string) {
	t.Helper()
	c.Runtime.mu.Lock()
	p := c.Runtime.procs[revision]
	c.Runtime.mu.Unlock()
	if p == nil {
		t.Fatalf("revision %s is not running", revision)
	}
	inside := fmt.Sprintf("/proc/%d/root%s", p.cmd.Process.Pid, path)
	got, err := os.ReadFile(inside)
	if err != nil || string(got) != value {
		t.Errorf("the server's process reads %s as %q (%v), want %q", path, got, err, value)
	}
	if fi, err := os.Stat(inside); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o444 {
		t.Errorf("%s in the server's process has mode %v, want 0444", path, fi.Mode().Perm())
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s is visible outside the revision's process", path)
	}
}

// getRun reads a run through the server with the demo's credentials.
func getRun(t *testing.T, c *Cloud, url, runID string) (int, []byte) {
	t.Helper()
	return apiGet(t, c, url+"/api/2.0/mlflow/runs/get?run_id="+runID)
}

// apiGet GETs an API address with the demo's credentials and returns the status code and body.
func apiGet(t *testing.T, c *Cloud, address string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, address, nil)
	req.SetBasicAuth(Username, c.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// checkRun checks the run is there with the parameter and metric the client logged.
func checkRun(t *testing.T, c *Cloud, url, runID string) {
	t.Helper()
	code, body := getRun(t, c, url, runID)
	if code != http.StatusOK || !strings.Contains(string(body), `"fit_intercept"`) || !strings.Contains(string(body), `"mse"`) {
		t.Errorf("run %s: %d %s", runID, code, body)
	}
}

// runArtifactPath is where the run's artifacts live under the artifacts destination: EXPERIMENT/RUN/artifacts.
func runArtifactPath(t *testing.T, c *Cloud, url, runID string) string {
	t.Helper()
	_, body := getRun(t, c, url, runID)
	var r struct {
		Run struct {
			Info struct {
				ArtifactURI string `json:"artifact_uri"`
			} `json:"info"`
		} `json:"run"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(r.Run.Info.ArtifactURI, "mlflow-artifacts:/")
}

// uploadArtifact streams size pseudo-random bytes to an artifact URL over HTTP/1.1, as the Python client
// uploads, and returns their SHA-256.
func uploadArtifact(t *testing.T, c *Cloud, url string, size int64) []byte {
	t.Helper()
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), h)
	req, err := http.NewRequest(http.MethodPut, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.SetBasicAuth(Username, c.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("uploading %d bytes: %s %s", size, resp.Status, msg)
	}
	return h.Sum(nil)
}

func containsSuffix(list []string, suffix string) bool {
	for _, s := range list {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
