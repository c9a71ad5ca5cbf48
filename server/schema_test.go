package main

import (
	"context"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// TestConnectWithRetryWaitsForTheDatabase: at a cold start the database may not accept connections yet;
// the server keeps trying, saying so in a warning without the password, and connects once it does.
func TestConnectWithRetryWaitsForTheDatabase(t *testing.T) {
	needWorld(t)
	t.Parallel()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// The database's URL, but on a port where nothing listens yet.
	u, _ := url.Parse(world.pg.URL("postgres"))
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	out := &lineWriter{}
	log := newLogger(out, newRedactor(world.pg.Password()))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		conn *pgx.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := connectWithRetry(ctx, log, u.String())
		done <- result{conn, err}
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "retrying"); time.Sleep(20 * time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("connectWithRetry returned (%v) before the database was up, want it to retry; log:\n%s", r.err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry warning within 30s; log:\n%s", out)
		}
	}
	// The database comes up on that port.
	stop := forward(t, u.Host, world.pg.Addr())
	defer stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("connectWithRetry after the database came up: %v; log:\n%s", r.err, out)
		}
		defer r.conn.Close(context.Background())
		var one int
		if err := r.conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("SELECT 1 on the connection: %d, %v", one, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("connectWithRetry still waiting 30s after the database came up; log:\n%s", out)
	}
	if !strings.Contains(out.String(), `"severity":"WARNING"`) || strings.Contains(out.String(), world.pg.Password()) {
		t.Errorf("want WARNING retry lines without the password; log:\n%s", out)
	}
}

// forward accepts connections on addr and relays each to target, until stop.
func forward(t *testing.T, addr, target string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, up)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(up, in); up.Close() })
			wg.Go(func() { _, _ = io.Copy(in, up); in.Close() })
		}
	})
	return func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// TestDatabaseNeverUp: a database that never accepts connections ends the start within
// DEPLOY_MLFLOW_MIGRATION_TIMEOUT, with a schema-timeout event, an error naming the variable, and no
// upgrade or MLflow started; the password appears nowhere.
func TestDatabaseNeverUp(t *testing.T) {
	t.Parallel()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const password = "db-password-never-logged"
	f := startFakeMLflow(t, nil,
		"DEPLOY_MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow:"+password+"@127.0.0.1:"+strconv.Itoa(port)+"/mlflow",
		"DEPLOY_MLFLOW_MIGRATION_TIMEOUT=2s")
	start := time.Now()
	err = f.result(t, 20*time.Second)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "could not connect to the backend store within 2s (DEPLOY_MLFLOW_MIGRATION_TIMEOUT)") {
		t.Errorf("run = %v, want the connect timeout naming DEPLOY_MLFLOW_MIGRATION_TIMEOUT", err)
	}
	if took < 2*time.Second {
		t.Errorf("gave up after %v, before the 2s timeout", took)
	}
	out := f.out.String()
	for _, want := range []string{`"event":"schema-timeout"`, `"step":"connecting to the backend store"`, "cannot connect to the backend store yet; retrying", `"severity":"CRITICAL"`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in the log:\n%s", want, out)
		}
	}
	if strings.Contains(out, password) {
		t.Errorf("the database password in the log:\n%s", out)
	}
	if f.ran("upgrade-started") || f.ran("server") {
		t.Error("the upgrade or MLflow started without a database")
	}
}

// TestSchemaVersion reads alembic's revision: none before the first migration (no table, or an empty
// one), and every head, sorted, when the history has branches.
func TestSchemaVersion(t *testing.T) {
	needWorld(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, world.pg.URL(newDatabase(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	steps := []struct {
		sql, want string
	}{
		{"", ""},
		{"CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)", ""},
		{"INSERT INTO alembic_version VALUES ('c48cb773bb87')", "c48cb773bb87"},
		{"INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')", "1b5f0d9ad7c1,c48cb773bb87"},
	}
	for _, s := range steps {
		if s.sql != "" {
			if _, err := conn.Exec(ctx, s.sql); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := schemaVersion(ctx, conn); err != nil || got != s.want {
			t.Errorf("after %q: schemaVersion = %q, %v; want %q", s.sql, got, err, s.want)
		}
	}
	conn.Close(ctx)
	if _, err := schemaVersion(ctx, conn); err == nil || !strings.Contains(err.Error(), "read the schema version") {
		t.Errorf("schemaVersion on a closed connection: %v", err)
	}
}
