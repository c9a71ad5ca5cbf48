package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long a wrapper waits for a part to come up.
const startTimeout = 2 * time.Minute

// skipShort skips a test that needs a part make setup installs (MLflow, PostgreSQL, the registry) under
// go test -short, the inner loop that runs with nothing installed.
func skipShort(t testing.TB, part string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s, which make setup installs; skipped under -short", part)
	}
}

// NeedVenv returns Venv, or fails the test with the message that says to run internal/testenv/setup.sh.
// Under -short it skips the test.
func NeedVenv(t testing.TB) string {
	t.Helper()
	skipShort(t, "the MLflow virtualenv")
	dir, err := Venv()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// NewPostgres starts PostgreSQL in a temp dir and stops it when the test ends. Under -short it skips the
// test.
func NewPostgres(t testing.TB) *Postgres {
	t.Helper()
	skipShort(t, "PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := StartPostgres(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// NewFakeGCS starts fake-gcs-server with the given buckets and stops it when the test ends.
func NewFakeGCS(t testing.TB, buckets ...string) *FakeGCS {
	t.Helper()
	f, err := StartFakeGCS(context.Background(), buckets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

// NewRegistry starts a registry in a temp dir and stops it when the test ends. Under -short it skips the
// test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	skipShort(t, "the distribution registry")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	r, err := StartRegistry(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// NewServer starts the server binary with env (see StartServer) and stops it when the test ends; if the
// test failed, the server's output goes to the test log.
func NewServer(t testing.TB, bin string, env ...string) *Server {
	t.Helper()
	s, err := StartServer(bin, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Stop()
		if t.Failed() {
			t.Logf("output of the server on %s:\n%s", s.Addr(), strings.Join(s.Lines(), "\n"))
		}
	})
	return s
}

// NewServerBinary builds the server program into a temp dir (see BuildServer) and returns its path.
func NewServerBinary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	bin, err := BuildServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
