package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
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

// outdatedDatabase creates a database at the schema MLflow expects, then takes it one revision back with
// MLflow's own downgrade of its newest migration, so that `mlflow db upgrade` has real work to do. It
// returns the database and the revisions before and after.
func outdatedDatabase(t *testing.T) (db, previous, head string) {
	t.Helper()
	db = newDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), "MLFLOW_DISABLE_TELEMETRY=true")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
	}
	version := func() string {
		t.Helper()
		conn, err := pgx.Connect(ctx, world.pg.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		v, err := schemaVersion(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	run(world.mlflow, "db", "upgrade", backendURI(db))
	head = version()
	run(world.python, "-c", `import sys
from alembic import command
from mlflow.store.db.utils import _get_alembic_config
command.downgrade(_get_alembic_config(sys.argv[1]), "-1")`, backendURI(db))
	previous = version()
	if previous == "" || previous == head {
		t.Fatalf("the downgrade left alembic at %q, from %q", previous, head)
	}
	return db, previous, head
}

// TestOutdatedSchemaMigratedOnce starts three instances at once on a database one migration behind, whose
// marker lies (it says this release's upgrade left the database current, as after a restored backup):
// the marker is not trusted, exactly one instance migrates, under the lock; the other two then find the
// marker true and skip `mlflow db upgrade`; all three serve, through uvicorn started directly.
func TestOutdatedSchemaMigratedOnce(t *testing.T) {
	needWorld(t)
	db, previous, head := outdatedDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, world.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := writeMarker(ctx, conn, "3.17.2", head); err != nil {
		t.Fatal(err)
	}

	var instances []*instance
	for range 3 {
		// One worker each: three MLflows start on two cores here.
		instances = append(instances, startInstance(t, db, "MLFLOW_WORKERS=1"))
	}
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Go(func() { in.waitHealthy(t) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	var migrated, byMarker, direct int
	for i, in := range instances {
		var upgraded, ran bool
		for _, e := range in.entries(t) {
			switch {
			case e["event"] == eventSchemaMigrated:
				migrated++
				upgraded = true
				if e["schemaFrom"] != previous || e["schemaVersion"] != head {
					t.Errorf("instance %d migrated from %v to %v, want from %s to %s", i, e["schemaFrom"], e["schemaVersion"], previous, head)
				}
			case e["event"] == eventSchemaCurrent && e["checkedBy"] == "marker":
				byMarker++
			case e["launch"] == "uvicorn":
				direct++
			}
			// What every `mlflow db upgrade` of an existing database logs (mlflow.store.db.utils._upgrade_db).
			if msg, _ := e["message"].(string); strings.Contains(msg, "Updating database tables") {
				ran = true
			}
		}
		if ran != upgraded {
			t.Errorf("instance %d: mlflow db upgrade ran: %v; migrated: %v; want both or neither", i, ran, upgraded)
		}
	}
	if migrated != 1 || byMarker != 2 || direct != 3 {
		t.Errorf("migrated by %d instances, found current by the marker by %d, uvicorn started directly by %d; want 1, 2, 3", migrated, byMarker, direct)
	}
	if live, ok, err := markedCurrent(ctx, conn, "3.17.2"); err != nil || !ok || live != head {
		t.Errorf("after the start: marker holds %v at %q (%v); want it to hold at %s", ok, live, err, head)
	}
	for i, in := range instances {
		var out struct {
			ID string `json:"experiment_id"`
		}
		in.api(t, "POST", "/api/2.0/mlflow/experiments/create", map[string]any{"name": fmt.Sprintf("from-%d", i)}, &out)
	}
}
