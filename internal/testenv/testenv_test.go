package testenv

import (
	"context"
	"debug/elf"
	"fmt"
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

// client bounds every request of these tests: a part that accepts a connection and never answers fails
// the test instead of hanging it.
var client = &http.Client{Timeout: 30 * time.Second}

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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

	if err := pg.DropDatabase(ctx, "tracking-1"); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "tracking-1"); err != nil {
		t.Errorf("create after drop: %v", err)
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
	resp, err := client.Do(req)
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
	resp, err := client.Get("http://" + reg.Host() + "/v2/_catalog")
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
	if err := staticELF(bin); err != nil {
		t.Errorf("the image needs a static server binary: %v", err)
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

// staticELF checks that the executable at path needs no dynamic loader (no PT_INTERP program header) and
// no shared library (no DT_NEEDED entry): the image's base may not have the libc it was built against.
func staticELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s asks for a dynamic loader (PT_INTERP): build it with CGO_ENABLED=0", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: read its dynamic section: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %q: build it with CGO_ENABLED=0", path, libs)
	}
	return nil
}

// TestStaticELF: the check that guards the server binary tells a dynamic executable from a static one,
// and fails on a file it cannot read as ELF.
func TestStaticELF(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{sh, notELF, filepath.Join(t.TempDir(), "missing")} {
		if err := staticELF(path); err == nil {
			t.Errorf("staticELF(%s) = nil, want an error", path)
		}
	}
}

// TestWaitsNeedDeadline: the server's waits refuse a context without a deadline, and a wait for a line
// that never comes fails naming what it waited for.
func TestWaitsNeedDeadline(t *testing.T) {
	t.Parallel()
	// A stand-in for the server binary that writes one line and then runs until stopped.
	bin := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho started\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := NewServer(t, bin)
	if _, err := s.WaitForLine(context.Background(), "the ready event", func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "no deadline") {
		t.Errorf("WaitForLine without a deadline: %v", err)
	}
	if _, err := s.Wait(context.Background()); err == nil {
		t.Error("Wait without a deadline returned no error")
	}
	if err := s.WaitHealthy(context.Background()); err == nil {
		t.Error("WaitHealthy without a deadline returned no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.WaitForLine(ctx, "the start line", func(l string) bool { return l == "started" }); err != nil {
		t.Error(err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if _, err := s.WaitForLine(short, "the ready event", func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "the ready event") {
		t.Errorf("WaitForLine for a line that never comes: %v", err)
	}
}
