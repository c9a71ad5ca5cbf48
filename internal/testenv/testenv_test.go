package testenv

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := NewPostgres(t)
	ctx := context.Background()
	if err := pg.CreateDatabase(ctx, "tracking-1"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.URL("tracking-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if db != "tracking-1" {
		t.Errorf("connected to %q, want tracking-1", db)
	}

	// The password is required: a wrong one is refused.
	wrong := strings.Replace(pg.URL("tracking-1"), pg.Password(), "wrong", 1)
	if c, err := pgx.Connect(ctx, wrong); err == nil {
		c.Close(ctx)
		t.Error("connected with a wrong password")
	}

	pid := pg.proc.cmd.Process.Pid
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		t.Errorf("postgres (pid %d) still running after Stop", pid)
	}
}

func TestFakeGCS(t *testing.T) {
	t.Parallel()
	gcs := NewFakeGCS(t, "bucket-a")
	// Upload through the JSON API, as MLflow's client does, then read it back with ObjectNames and Open.
	req, _ := http.NewRequest(http.MethodPost, gcs.URL()+"/upload/storage/v1/b/bucket-a/o?uploadType=media&name=dir/hello.txt", strings.NewReader("hello"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %s", resp.Status)
	}
	names, err := gcs.ObjectNames("bucket-a", "dir/")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "dir/hello.txt" {
		t.Fatalf("objects = %q, want [dir/hello.txt]", names)
	}
	r, err := gcs.Open("bucket-a", "dir/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, _ := io.ReadAll(r); string(b) != "hello" {
		t.Errorf("content = %q", b)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(t)
	resp, err := http.Get("http://" + reg.Host() + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "repositories") {
		t.Errorf("GET /v2/_catalog = %s %s", resp.Status, body)
	}
}

func TestVenv(t *testing.T) {
	t.Setenv(VenvEnv, filepath.Join(t.TempDir(), "missing"))
	_, err := Venv()
	if err == nil || !strings.Contains(err.Error(), "internal/testenv/setup.sh") {
		t.Errorf("Venv() with a missing virtualenv = %v, want an error that says to run internal/testenv/setup.sh", err)
	}
}

func TestBuildAndStartServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := NewServerBinary(t)
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("server binary is not static: %s", out)
	}
	// Without configuration the server must refuse to start, and say so on stdout.
	s := NewServer(t, bin, "DEPLOY_MLFLOW_AUTH=no-such-mode")
	code, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Errorf("exit code 0, want non-zero")
	}
	if out := strings.Join(s.Lines(), "\n"); !strings.Contains(out, "DEPLOY_MLFLOW_AUTH") {
		t.Errorf("output does not name DEPLOY_MLFLOW_AUTH:\n%s", out)
	}
}
