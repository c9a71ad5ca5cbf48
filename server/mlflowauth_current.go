package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The auth step (authStepScript) is a Python start of several seconds. It has nothing to do when the auth
// tables are at the head of this release's auth migrations and the admin exists, is an admin, and has the
// configured password; the server decides that from Go, under the same rules of trust as the schema marker
// (see marker.go): the head is what this release's own auth step left, recorded in the marker row after it
// succeeded, and compared with the live revision in one snapshot. Anything the server cannot judge (an
// unknown release, a hash format it does not verify, a table missing) runs the step.

// legacyAdminUsername is the account that older MLflow releases bootstrapped with legacyAdminPassword.
// MLflow warns at every start while it still has that password; the auth step lets MLflow do so.
const legacyAdminUsername = "admin"

// authState is what the server reads from the database to decide whether the auth step can be skipped.
type authState struct {
	marked, live string // the marker's auth revision for this release, and alembic_version_auth's
	admin        *authUser
	legacy       *authUser // the legacyAdminUsername account, when that is not the admin's name
}

// authUser is a row of the auth app's users table; nil pointers stand for NULL.
type authUser struct {
	hash    *string
	isAdmin *bool
}

// readAuthState reads the marker's auth revision for mlflowVersion, the live auth revision and the users
// named username and legacyAdminUsername, in one snapshot.
func readAuthState(ctx context.Context, conn *pgx.Conn, mlflowVersion, username string) (authState, error) {
	var st authState
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return st, fmt.Errorf("read the auth marker: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var hasColumn bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attname = 'auth_alembic_version' AND NOT attisdropped)`, markerTable).Scan(&hasColumn)
	if err != nil {
		return st, fmt.Errorf("read the auth marker: %w", err)
	}
	if !hasColumn {
		return st, nil
	}
	var marked *string
	err = tx.QueryRow(ctx, "SELECT auth_alembic_version FROM "+markerTable+" WHERE mlflow_version = $1", mlflowVersion).Scan(&marked)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && marked == nil) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read the auth marker: %w", err)
	}
	st.marked = *marked
	if st.live, err = authSchemaVersion(ctx, tx.Conn()); err != nil || st.live == "" {
		return st, err
	}
	readUser := func(name string) (*authUser, error) {
		var u authUser
		err := tx.QueryRow(ctx, "SELECT password_hash, is_admin FROM users WHERE username = $1", name).Scan(&u.hash, &u.isAdmin)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the auth app's user %q: %w", name, err)
		}
		return &u, nil
	}
	if st.admin, err = readUser(username); err != nil {
		return st, err
	}
	if username != legacyAdminUsername {
		st.legacy, err = readUser(legacyAdminUsername)
	}
	return st, err
}

// authStepNeeded says why the auth step has to run for the admin username with password, given st; "" when
// it has nothing to do.
func authStepNeeded(st authState, password string) string {
	switch {
	case st.marked == "":
		return "no auth marker for this MLflow release"
	case st.live != st.marked:
		return fmt.Sprintf("the auth tables are at %q, the marker says %q", st.live, st.marked)
	case st.admin == nil:
		return "the admin user does not exist"
	case st.admin.isAdmin == nil || !*st.admin.isAdmin:
		return "the admin user is not an admin"
	case st.admin.hash == nil:
		return "the admin user has no password hash"
	}
	ok, err := checkPasswordHash(*st.admin.hash, password)
	switch {
	case err != nil:
		return "the admin's password hash: " + err.Error()
	case !ok:
		return "the admin's password is not the configured one"
	}
	if st.legacy != nil && st.legacy.hash != nil {
		// The admin's password, checked above, cannot be the legacy one (loadMLflowAuth refuses it).
		if ok, err := checkPasswordHash(*st.legacy.hash, legacyAdminPassword); ok || err != nil {
			return "the account " + legacyAdminUsername + " may still have the default password of older MLflow releases"
		}
	}
	return ""
}
