package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The schema marker lets an instance skip `mlflow db upgrade` (a whole Python start, seconds at every cold
// start) when the database is already at the schema its MLflow release expects.
//
// After `mlflow db upgrade` succeeds under the schema lock, the instance records, keyed by the installed
// MLflow release, the alembic revision that upgrade left. At the next start an instance of the same release
// reads the marker and alembic's live revision in one snapshot: if they agree, the database is where that
// very release's upgrade put it, and there is nothing to do. If they differ (the schema was downgraded, a
// backup restored, another release migrated it since), or the release is unknown, the instance takes the
// full locked path as before. The marker never stands in for the lock when a migration is needed.
//
// The alternative, reading MLflow's migration scripts in site-packages to find alembic's head (the revision
// no other names as down_revision), would avoid the table but means parsing Python source, whose form
// (tuples for merges, branch labels, revision ids built in code) Go can only guess at; and `mlflow db
// upgrade` is what MLflow defines as "current", so recording its outcome trusts nothing but MLflow itself.
// The price is one full upgrade per database on the first start of each release.
//
// The table's name starts with "alembic_" because MLflow ignores such tables when it decides whether a
// database is empty (mlflow.store.db.utils._is_empty_database): a database whose MLflow tables were
// dropped but whose marker stayed is still created afresh rather than taken for a broken one.
const markerTable = "alembic_deploy_mlflow_marker"

// releaseVersion matches the versions the marker is kept for: plain releases. A development build's
// version string does not pin its migrations.
var releaseVersion = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

// markedCurrent reports whether the marker for mlflowVersion names the database's live alembic revision,
// and returns that revision. A database without the marker table, or without alembic's, is not current.
func markedCurrent(ctx context.Context, conn *pgx.Conn, mlflowVersion string) (string, bool, error) {
	if !releaseVersion.MatchString(mlflowVersion) {
		return "", false, nil
	}
	// One snapshot for both reads, so that a migration committing in between cannot pair an old marker
	// with a new revision or the reverse.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return "", false, fmt.Errorf("read the schema marker: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", markerTable).Scan(&exists); err != nil {
		return "", false, fmt.Errorf("read the schema marker: %w", err)
	}
	if !exists {
		return "", false, nil
	}
	var marked string
	err = tx.QueryRow(ctx, "SELECT alembic_version FROM "+markerTable+" WHERE mlflow_version = $1", mlflowVersion).Scan(&marked)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the schema marker: %w", err)
	}
	live, err := schemaVersion(ctx, tx.Conn())
	if err != nil {
		return "", false, err
	}
	return live, live != "" && live == marked, nil
}

// writeMarker records that mlflowVersion's `mlflow db upgrade` left the database at revision. Only call it
// under the schema lock, right after that upgrade succeeded.
func writeMarker(ctx context.Context, conn *pgx.Conn, mlflowVersion, revision string) error {
	if !releaseVersion.MatchString(mlflowVersion) || revision == "" {
		return nil
	}
	_, err := conn.Exec(ctx, markerDDL)
	if err == nil {
		_, err = conn.Exec(ctx, "INSERT INTO "+markerTable+` (mlflow_version, alembic_version) VALUES ($1, $2)
			ON CONFLICT (mlflow_version) DO UPDATE SET alembic_version = EXCLUDED.alembic_version, written_at = now()`,
			mlflowVersion, revision)
	}
	if err != nil {
		return fmt.Errorf("write the schema marker (table %s): %w", markerTable, err)
	}
	return nil
}

// markerDDL creates the marker table. auth_alembic_version is the auth app's revision (its own alembic
// table, alembic_version_auth) that the same release's auth step left; NULL until one has succeeded.
const markerDDL = "CREATE TABLE IF NOT EXISTS " + markerTable + ` (
		mlflow_version text PRIMARY KEY,
		alembic_version text NOT NULL,
		written_at timestamptz NOT NULL DEFAULT now(),
		auth_alembic_version text)`

// writeAuthMarker records in mlflowVersion's marker row that its auth step (migrations and admin, see
// authStepScript) left the auth tables at revision. Only call it under the schema lock, right after that step
// succeeded. The row is the tracking marker's: without it (the tracking upgrade could not write it) nothing
// is recorded, and the next start runs the auth step again.
func writeAuthMarker(ctx context.Context, conn *pgx.Conn, mlflowVersion, revision string) error {
	if !releaseVersion.MatchString(mlflowVersion) || revision == "" {
		return nil
	}
	_, err := conn.Exec(ctx, markerDDL)
	if err == nil {
		// A table that an earlier version of this server created lacks the column.
		_, err = conn.Exec(ctx, "ALTER TABLE "+markerTable+" ADD COLUMN IF NOT EXISTS auth_alembic_version text")
	}
	if err == nil {
		_, err = conn.Exec(ctx, "UPDATE "+markerTable+" SET auth_alembic_version = $2 WHERE mlflow_version = $1", mlflowVersion, revision)
	}
	if err != nil {
		return fmt.Errorf("write the auth marker (table %s): %w", markerTable, err)
	}
	return nil
}

// mlflowInstall is what the server learns about the MLflow installation from its files, without starting
// Python.
type mlflowInstall struct {
	python       string // the interpreter the mlflow script runs under, from its #! line
	sitePackages string // the directory that holds the mlflow package
	version      string // mlflow.version.VERSION
}

var versionLine = regexp.MustCompile(`(?m)^VERSION\s*=\s*["']([^"']+)["']\s*$`)

// inspectMLflow reads the installation behind the mlflow executable: pip's console script names its
// interpreter on the #! line, a virtualenv's or the system's site-packages sits at
// PREFIX/lib/pythonX.Y/site-packages beside PREFIX/bin/python, and mlflow/version.py holds the version
// that `mlflow --version` prints. Any other layout (a wrapper script, /usr/bin/env, a distribution's
// dist-packages) is an error: the caller then falls back to what works everywhere.
func inspectMLflow(mlflow string) (mlflowInstall, error) {
	head := make([]byte, 4096)
	f, err := os.Open(mlflow)
	if err != nil {
		return mlflowInstall{}, fmt.Errorf("read %s: %w", mlflow, err)
	}
	n, _ := f.Read(head)
	f.Close()
	script := string(head[:n])
	first, _, _ := strings.Cut(script, "\n")
	interp, ok := strings.CutPrefix(first, "#!")
	fields := strings.Fields(interp)
	if !ok || len(fields) != 1 || !filepath.IsAbs(fields[0]) || !strings.HasPrefix(filepath.Base(fields[0]), "python") {
		return mlflowInstall{}, fmt.Errorf("%s does not start with #!/path/to/python: not pip's mlflow script", mlflow)
	}
	if !strings.Contains(script, "mlflow.cli") {
		return mlflowInstall{}, fmt.Errorf("%s does not run mlflow.cli: not pip's mlflow script", mlflow)
	}
	python := fields[0]
	// The interpreter's own path, not the file a symlink points to: a virtualenv's bin/python links to
	// the system's, and Python finds the virtualenv's site-packages from the unresolved path.
	prefix := filepath.Dir(filepath.Dir(python))
	found, _ := filepath.Glob(filepath.Join(prefix, "lib", "python3*", "site-packages", "mlflow", "version.py"))
	if len(found) != 1 {
		return mlflowInstall{}, fmt.Errorf("found %d mlflow packages under %s/lib/python3*/site-packages, want 1", len(found), prefix)
	}
	src, err := os.ReadFile(found[0])
	if err != nil {
		return mlflowInstall{}, fmt.Errorf("read MLflow's version: %w", err)
	}
	m := versionLine.FindStringSubmatch(string(src))
	if m == nil {
		return mlflowInstall{}, fmt.Errorf("no VERSION = \"...\" line in %s", found[0])
	}
	return mlflowInstall{python: python, sitePackages: filepath.Dir(filepath.Dir(found[0])), version: m[1]}, nil
}
