package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Events that prepareStore logs, in the "event" field.
const (
	eventAuthSchemaMigrated = "auth-schema-migrated" // this instance created or changed the auth app's tables
	eventAuthSchemaCurrent  = "auth-schema-current"  // they were up to date already
	eventAuthAdmin          = "auth-admin"           // what became of the admin: created, rotated or current
	eventAuthStepSkipped    = "auth-step-skipped"    // tables at head and admin as configured: no auth step
)

// authStepScript runs MLflow's own code, so that the tables and the password hash are exactly what the
// auth app expects: init_db runs the auth schema's alembic migrations when they are not at head; then
// the admin is created, or its password made the configured one (MLflow itself reads the configured
// password only when it creates the admin), and its admin flag restored. It writes the outcome to the
// file named by its argument. Configuration comes from MLFLOW_AUTH_CONFIG_PATH and MLFLOW_AUTH_ADMIN_*.
const authStepScript = `
import sys
from mlflow.server import auth
cfg, store = auth.auth_config, auth.store
store.init_db(cfg.database_uri)
user, password = cfg.admin_username, cfg.admin_password
if not store.has_user(user, use_primary=True):
    auth.create_admin_user(user, password)
    outcome = "created"
else:
    outcome = "current"
    if not store.authenticate_user(user, password, use_primary=True):
        store.update_user(user, password=password)
        outcome = "rotated"
    if not store.get_user(user).is_admin:
        store.update_user(user, is_admin=True)
        outcome += ",admin-restored"
    # What the mlflow CLI's bootstrap also does at every start (create_admin_user above does it too).
    warn = getattr(auth, "_warn_if_legacy_default_password_in_use", None)
    if warn:
        warn(user)
with open(sys.argv[1], "w") as f:
    f.write(outcome)
`

// prepareStore runs, after the tracking schema is current and before MLflow starts, what must happen once
// per start against the database: in auth mode mlflow, the auth app's migrations and the admin's password
// (authStep), and in every mode the check that the KEK passphrase opens the stored gateway keys
// (checkKEK). On PostgreSQL the auth step takes the schema's advisory lock, so that instances starting
// together migrate once and do not race on the admin. It returns settings to add to MLflow's
// environment. deadline is the schema step's (DEPLOY_MLFLOW_MIGRATION_TIMEOUT).
func prepareStore(ctx context.Context, log *logger, c config, a *mlflowAuth, env []string, deadline time.Time) ([]string, error) {
	connString, isPostgres, err := postgresConnString(c.backendURI)
	if err != nil {
		return nil, err
	}
	if !isPostgres {
		// SQLite, for local runs: one writer, no lock, and no driver here to read the gateway keys with.
		if a == nil {
			return nil, nil
		}
		_, err := authStep(ctx, log, c, env, deadline)
		return nil, err
	}
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := connectWithRetry(waitCtx, log, connString)
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	extra, err := checkKEK(waitCtx, log, conn, c.kekPassphrase, c.kekVersion)
	if err != nil || a == nil {
		return extra, err
	}
	// Read without the lock, like the schema marker: when the step has nothing to do, the common start takes
	// neither the lock nor a Python start.
	version := ""
	if inst, err := inspectMLflow(c.mlflow); err == nil {
		version = inst.version
	}
	if authCurrent(waitCtx, log, conn, c, version) {
		return extra, nil
	}

	if _, err := conn.Exec(waitCtx, "SELECT pg_advisory_lock($1)", schemaLockKey); err != nil {
		if waitCtx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("the schema lock was not free within %v (DEPLOY_MLFLOW_MIGRATION_TIMEOUT) for the auth tables: another instance is still upgrading, or a stale session holds PostgreSQL advisory lock %d (see pg_locks)", c.migrationTimeout, schemaLockKey)
		}
		return nil, fmt.Errorf("wait for the schema lock (auth tables): %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		_, _ = conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", schemaLockKey)
	}()
	// Another instance may have done the work while this one waited for the lock.
	if authCurrent(waitCtx, log, conn, c, version) {
		return extra, nil
	}
	before, err := authSchemaVersion(waitCtx, conn)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	admin, err := authStep(ctx, log, c, env, deadline)
	if err != nil {
		return nil, err
	}
	after, err := authSchemaVersion(waitCtx, conn)
	if err != nil {
		return nil, err
	}
	if err := writeAuthMarker(waitCtx, conn, version, after); err != nil {
		// Only the next start's speed depends on it.
		log.warn("the next start will run the auth step again: " + err.Error())
	}
	if before == after {
		log.info("MLflow auth tables already current at "+after, "event", eventAuthSchemaCurrent, "schemaVersion", after)
	} else {
		log.info("MLflow auth tables migrated from "+cmpOr(before, "nothing")+" to "+after, "event", eventAuthSchemaMigrated, "schemaFrom", before, "schemaVersion", after)
	}
	log.info("MLflow admin user "+admin, "event", eventAuthAdmin, "outcome", admin, "duration", time.Since(start))
	return extra, nil
}

// authCurrent reports whether the auth step has nothing to do for release version (see
// mlflowauth_current.go), logging the skip event if so. An error reading is only logged: the locked step
// that follows is always safe.
func authCurrent(ctx context.Context, log *logger, conn *pgx.Conn, c config, version string) bool {
	if version == "" {
		return false
	}
	start := time.Now()
	st, err := readAuthState(ctx, conn, version, c.username)
	if err != nil {
		log.warn("could not read the auth marker; running the auth step: " + err.Error())
		return false
	}
	if why := authStepNeeded(st, c.password); why != "" {
		log.info("running the auth step: "+why, "mlflowVersion", version)
		return false
	}
	log.info("MLflow auth tables current at "+st.live+" and the admin user as configured; auth step skipped",
		"event", eventAuthStepSkipped, "schemaVersion", st.live, "mlflowVersion", version, "duration", time.Since(start))
	return true
}

// authStep runs authStepScript with the interpreter of the mlflow executable and returns its outcome.
// Like `mlflow db upgrade`, SIGTERM does not stop it; the deadline does.
func authStep(ctx context.Context, log *logger, c config, env []string, deadline time.Time) (string, error) {
	dir, err := os.MkdirTemp("", "deploy-mlflow-auth-step-")
	if err != nil {
		return "", fmt.Errorf("MLflow auth setup: %w", err)
	}
	defer os.RemoveAll(dir)
	result := filepath.Join(dir, "outcome")
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	if err := runChild(sctx, log, pythonFor(c.mlflow), []string{"-c", authStepScript, result}, env); err != nil {
		if sctx.Err() != nil {
			return "", fmt.Errorf("setting up MLflow's auth tables and admin did not finish within %v (DEPLOY_MLFLOW_MIGRATION_TIMEOUT) and was stopped", c.migrationTimeout)
		}
		return "", fmt.Errorf("setting up MLflow's auth tables and admin user failed (%w): see MLflow's output above; the auth app needs mlflow[auth] (Flask-WTF) in the image", err)
	}
	b, err := os.ReadFile(result)
	if err != nil {
		return "", fmt.Errorf("MLflow auth setup left no outcome: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// authSchemaVersion reads the auth app's alembic revision, "" before its first migration.
func authSchemaVersion(ctx context.Context, conn *pgx.Conn) (string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('alembic_version_auth') IS NOT NULL").Scan(&exists); err != nil {
		return "", fmt.Errorf("read the auth schema version: %w", err)
	}
	if !exists {
		return "", nil
	}
	var v string
	err := conn.QueryRow(ctx, "SELECT version_num FROM alembic_version_auth LIMIT 1").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the auth schema version: %w", err)
	}
	return v, nil
}

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
