package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// schemaLockKey is the PostgreSQL advisory lock that every instance takes around `mlflow db upgrade`. Any
// constant works, as long as all instances agree; advisory locks are scoped to the database.
const schemaLockKey int64 = 0x6d6c666c6f77_01 // "mlflow", 1

// Events that upgradeSchema logs, in the "event" field, once per start.
const (
	eventSchemaMigrated = "schema-migrated"  // this instance changed the schema
	eventSchemaCurrent  = "schema-current"   // the schema was up to date already
	eventSchemaUpgraded = "schema-upgraded"  // not PostgreSQL: upgraded without a lock or versions
	eventSchemaLockWait = "schema-lock-wait" // another instance holds the lock; this one waits
	eventSchemaTimeout  = "schema-timeout"   // the schema step overran DEPLOY_MLFLOW_MIGRATION_TIMEOUT
)

// unlockTimeout bounds releasing the lock (and closing the connection): a connection that hangs there must
// not hold up the start, since closing it releases the lock anyway.
const unlockTimeout = 5 * time.Second

// upgradeSchema brings the backend store's schema up to date with `mlflow db upgrade`, which on an empty
// database also creates the tables. Instances that start together would run concurrent migrations, which
// race; on PostgreSQL they therefore take turns under an advisory lock, and each reads alembic's version
// before and after, so that only the first one migrates and the log says which one did. Other backends
// (SQLite for local runs) have one writer and get no lock.
//
// The whole step, connecting, waiting for the lock and the upgrade, has c.migrationTimeout, so that an
// instance that cannot finish inside the startup probe's budget says so and exits rather than being killed
// silently. SIGTERM ends the connecting and the waiting, not a running upgrade.
func upgradeSchema(ctx context.Context, log *logger, c config, env []string) error {
	deadline := time.Now().Add(c.migrationTimeout)
	waitCtx, cancelWait := context.WithDeadline(ctx, deadline)
	defer cancelWait()
	// timedOut reports whether the step failed because the deadline passed, and if so logs the event.
	timedOut := func(step string) bool {
		if ctx.Err() != nil || time.Now().Before(deadline) {
			return false
		}
		log.error("the schema step overran its time: "+step, "event", eventSchemaTimeout, "step", step, "timeout", c.migrationTimeout)
		return true
	}
	upgrade := func() error {
		// SIGTERM does not stop the upgrade: the work would be lost, and Cloud Run's SIGKILL 10 s later
		// ends it anyway if it is still running (PostgreSQL then rolls back the transaction that alembic
		// runs MLflow's migrations in). The deadline does stop it.
		uctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		err := runChild(uctx, log, c.mlflow, []string{"db", "upgrade", c.backendURI}, env)
		if err != nil && timedOut("mlflow db upgrade") {
			return fmt.Errorf("mlflow db upgrade did not finish within %v (%s) and was stopped: a migration this long cannot finish inside Cloud Run's 240 s start-up limit; run mlflow db upgrade against the database from a machine that can reach it, then deploy again",
				c.migrationTimeout, serverenv.MigrationTimeout)
		}
		if err != nil {
			return fmt.Errorf("mlflow db upgrade: %w", err)
		}
		return nil
	}
	connString, isPostgres, err := postgresConnString(c.backendURI)
	if err != nil {
		return err
	}
	if !isPostgres {
		start := time.Now()
		if err := upgrade(); err != nil {
			return err
		}
		log.info("database schema upgraded (not PostgreSQL: no lock)", "event", eventSchemaUpgraded, "duration", time.Since(start))
		return nil
	}

	conn, err := connectWithRetry(waitCtx, log, connString)
	if err != nil {
		if timedOut("connecting to the backend store") {
			return fmt.Errorf("could not connect to the backend store within %v (%s): check DEPLOY_MLFLOW_BACKEND_STORE_URI and that the database accepts this service's connections", c.migrationTimeout, serverenv.MigrationTimeout)
		}
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	// The marker is read without the lock: when it holds, no instance of this release has anything to
	// migrate, and the common start takes neither the lock nor a Python start.
	version := installedVersion(log, c.mlflow)
	if current(waitCtx, log, conn, version) {
		return nil
	}

	var locked bool
	if err := conn.QueryRow(waitCtx, "SELECT pg_try_advisory_lock($1)", schemaLockKey).Scan(&locked); err != nil {
		return fmt.Errorf("take the schema lock: %w", err)
	}
	if !locked {
		log.info("waiting for another instance to finish the schema upgrade", "event", eventSchemaLockWait)
		if _, err := conn.Exec(waitCtx, "SELECT pg_advisory_lock($1)", schemaLockKey); err != nil {
			if timedOut("waiting for the schema lock") {
				return fmt.Errorf("the schema lock was not free within %v (%s): another instance is still upgrading the schema, or a stale session holds PostgreSQL advisory lock %d (see pg_locks); stopping so that Cloud Run starts another instance",
					c.migrationTimeout, serverenv.MigrationTimeout, schemaLockKey)
			}
			return fmt.Errorf("wait for the schema lock: %w", err)
		}
	}
	defer func() {
		// Closing the connection releases the lock too; unlocking first frees it without waiting for
		// the server to notice.
		uctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		_, _ = conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", schemaLockKey)
	}()

	// Another instance may have upgraded while this one waited for the lock.
	if current(waitCtx, log, conn, version) {
		return nil
	}
	before, err := schemaVersion(waitCtx, conn)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := upgrade(); err != nil {
		return err
	}
	after, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if after == "" {
		return errors.New("mlflow db upgrade left no alembic_version in the database: check the database user's rights and MLflow's output above")
	}
	if err := writeMarker(ctx, conn, version, after); err != nil {
		// Only the next start's speed depends on it.
		log.warn("the next start will run mlflow db upgrade again: " + err.Error() + ": grant the database user CREATE on the schema to let starts skip it")
	}
	if before == after {
		log.info("database schema already current at "+after, "event", eventSchemaCurrent, "checkedBy", "mlflow db upgrade", "schemaVersion", after, "duration", time.Since(start))
	} else {
		from := before
		if from == "" {
			from = "empty database"
		}
		log.info("database schema migrated from "+from+" to "+after, "event", eventSchemaMigrated, "schemaFrom", before, "schemaVersion", after, "duration", time.Since(start))
	}
	return nil
}

// connectWithRetry connects to PostgreSQL, retrying for a while: at a cold start the Cloud SQL socket or
// the network path may not be ready yet.
func connectWithRetry(ctx context.Context, log *logger, connString string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("the backend store URL is not one PostgreSQL's client accepts (%v): check DEPLOY_MLFLOW_BACKEND_STORE_URI", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	deadline := time.Now().Add(90 * time.Second)
	wait := 500 * time.Millisecond
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A refused login or a missing database will not fix itself by waiting.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000") {
			return nil, fmt.Errorf("connect to the backend store: %w: check the user, password and database name in DEPLOY_MLFLOW_BACKEND_STORE_URI", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to the backend store: %w: check DEPLOY_MLFLOW_BACKEND_STORE_URI and that the database accepts this service's connections", err)
		}
		log.warn("cannot connect to the backend store yet; retrying", "error", err, "retryIn", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// schemaVersion reads alembic's revision, "" before the first migration.
func schemaVersion(ctx context.Context, conn *pgx.Conn) (string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('alembic_version') IS NOT NULL").Scan(&exists); err != nil {
		return "", fmt.Errorf("read the schema version: %w", err)
	}
	if !exists {
		return "", nil
	}
	rows, err := conn.Query(ctx, "SELECT version_num FROM alembic_version ORDER BY version_num")
	if err != nil {
		return "", fmt.Errorf("read the schema version: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("read the schema version: %w", err)
	}
	return strings.Join(versions, ","), nil
}

// installedVersion is the MLflow release behind the mlflow executable, "" when its files do not say; the
// marker is then neither read nor written, and every start runs `mlflow db upgrade`.
func installedVersion(log *logger, mlflow string) string {
	inst, err := inspectMLflow(mlflow)
	if err != nil {
		log.info("MLflow's release unknown, so every start runs mlflow db upgrade: " + err.Error())
		return ""
	}
	return inst.version
}

// current reports whether the schema marker for version holds, logging the schema-current event if so. An
// error reading it is only logged: the locked upgrade that follows is always safe.
func current(ctx context.Context, log *logger, conn *pgx.Conn, version string) bool {
	if version == "" {
		return false
	}
	rev, ok, err := markedCurrent(ctx, conn, version)
	if err != nil {
		log.warn("could not read the schema marker; running mlflow db upgrade: " + err.Error())
		return false
	}
	if ok {
		log.info("database schema current at "+rev+", as MLflow "+version+"'s upgrade left it; mlflow db upgrade skipped",
			"event", eventSchemaCurrent, "checkedBy", "marker", "schemaVersion", rev, "mlflowVersion", version)
	}
	return ok
}
