package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// schemaLockKey is the PostgreSQL advisory lock that every instance takes around `mlflow db upgrade`. Any
// constant works, as long as all instances agree; advisory locks are scoped to the database.
const schemaLockKey int64 = 0x6d6c666c6f77_01 // "mlflow", 1

// Events that upgradeSchema logs, in the "event" field, once per start.
const (
	eventSchemaMigrated = "schema-migrated" // this instance changed the schema
	eventSchemaCurrent  = "schema-current"  // the schema was up to date already
	eventSchemaUpgraded = "schema-upgraded" // not PostgreSQL: upgraded without a lock or versions
)

// upgradeSchema brings the backend store's schema up to date with `mlflow db upgrade`, which on an empty
// database also creates the tables. Instances that start together would run concurrent migrations, which
// race; on PostgreSQL they therefore take turns under an advisory lock, and each reads alembic's version
// before and after, so that only the first one migrates and the log says which one did. Other backends
// (SQLite for local runs) have one writer and get no lock.
func upgradeSchema(ctx context.Context, log *logger, c config, env []string) error {
	upgrade := func() error {
		// A migration cut short can leave the schema between versions, so SIGTERM does not interrupt it.
		if err := runChild(context.WithoutCancel(ctx), log, c.mlflow, []string{"db", "upgrade", c.backendURI}, env); err != nil {
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

	conn, err := connectWithRetry(ctx, log, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", schemaLockKey).Scan(&locked); err != nil {
		return fmt.Errorf("take the schema lock: %w", err)
	}
	if !locked {
		log.info("waiting for another instance to finish the schema upgrade", "event", "schema-lock-wait")
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", schemaLockKey); err != nil {
			return fmt.Errorf("wait for the schema lock: %w", err)
		}
	}
	defer func() {
		// Closing the connection releases the lock too; unlocking first frees it without waiting for
		// the server to notice.
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", schemaLockKey)
	}()

	before, err := schemaVersion(ctx, conn)
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
	if before == after {
		log.info("database schema already current at "+after, "event", eventSchemaCurrent, "schemaVersion", after, "duration", time.Since(start))
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
