package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestAuthStepWaitsForSchemaLock: the auth step runs only while this instance holds the schema lock, so
// that instances starting together migrate the auth tables and set the admin's password one at a time.
// A stand-in for MLflow's interpreter records that it ran; the test holds the lock and sees the step
// wait for it in pg_locks before the stand-in runs.
func TestAuthStepWaitsForSchemaLock(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	dir := t.TempDir()
	python := filepath.Join(dir, "python")
	// argv: -c SCRIPT OUTCOME_FILE
	if err := os.WriteFile(python, []byte("#!/bin/sh\necho created > \"$3\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mlflow := filepath.Join(dir, "mlflow")
	if err := os.WriteFile(mlflow, []byte("#!"+python+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, world.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", schemaLockKey); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	c := config{auth: "mlflow", backendURI: backendURI(db), mlflow: mlflow, migrationTimeout: time.Minute}
	done := make(chan error, 1)
	go func() {
		_, err := prepareStore(ctx, newLogger(&out, newRedactor()), c, &mlflowAuth{}, os.Environ(), time.Now().Add(time.Minute))
		done <- err
	}()
	for waiting := false; !waiting; {
		select {
		case err := <-done:
			t.Fatalf("the auth step finished (%v) while another session held the schema lock", err)
		case <-ctx.Done():
			t.Fatal("the auth step was never seen waiting for the schema lock")
		case <-time.After(50 * time.Millisecond):
		}
		if err := holder.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", schemaLockKey); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the auth step did not finish once the lock was free")
	}
	if s := out.String(); !strings.Contains(s, `"outcome":"created"`) {
		t.Errorf("log does not report the admin created: %s", s)
	}
}
