package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// werkzeug's hash of testAuthPassword with few iterations, so that the tests stay fast (see TestCheckPasswordHash).
const (
	testAuthPassword = "pw-a-0123456789"
	testAuthHash     = "pbkdf2:sha256:1000$0o1ZfX980URy43c7$00b001c79d0e0a0bb142cb03cdf93721e195b43f1f5679c986d540c5a6598457"
	// testLegacyHash is werkzeug's pbkdf2:sha256:1000 hash of legacyAdminPassword.
	testLegacyHash = "pbkdf2:sha256:1000$BFAOi4eLPmFbaboM$5f701f7cfb6e04f07a1fec514a3ebcb50617f6a0af776d5b9420050b4579550e"
)

func TestAuthStepNeeded(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	hash, other, odd := testAuthHash, strings.Replace(testAuthHash, ":1000$", ":1001$", 1), "argon2$x$y"
	good := func() authState {
		return authState{marked: "rev2", live: "rev2", admin: &authUser{hash: &hash, isAdmin: &yes}}
	}
	tests := []struct {
		name   string
		change func(*authState)
		want   string // "" for nothing to do, else part of the reason
	}{
		{name: "as configured", change: func(*authState) {}},
		{name: "no marker", change: func(s *authState) { s.marked = "" }, want: "no auth marker"},
		{name: "tables at another revision", change: func(s *authState) { s.live = "rev3" }, want: `at "rev3"`},
		{name: "no auth tables", change: func(s *authState) { s.live = "" }, want: `at ""`},
		{name: "no admin", change: func(s *authState) { s.admin = nil }, want: "does not exist"},
		{name: "admin flag off", change: func(s *authState) { s.admin.isAdmin = &no }, want: "not an admin"},
		{name: "admin flag NULL", change: func(s *authState) { s.admin.isAdmin = nil }, want: "not an admin"},
		{name: "no hash", change: func(s *authState) { s.admin.hash = nil }, want: "no password hash"},
		{name: "another password", change: func(s *authState) { s.admin.hash = &other }, want: "not the configured one"},
		{name: "unknown hash format", change: func(s *authState) { s.admin.hash = &odd }, want: "password hash"},
		{name: "legacy account with another password", change: func(s *authState) { s.legacy = &authUser{hash: &hash} }},
		{name: "legacy account with the legacy password", change: func(s *authState) { l := testLegacyHash; s.legacy = &authUser{hash: &l} }, want: "default password"},
		{name: "legacy account, unknown hash format", change: func(s *authState) { s.legacy = &authUser{hash: &odd} }, want: "default password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := good()
			tt.change(&st)
			got := authStepNeeded(st, testAuthPassword)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("authStepNeeded = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAuthCurrent reads hand-made auth tables and marker rows from PostgreSQL: the auth step is skipped only
// when the marker for this release names the live auth revision and the admin is as configured.
func TestAuthCurrent(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, world.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec := func(t *testing.T, sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	const release = "3.17.2"
	// setup builds the state that the auth step of release leaves: the auth revision, the admin and the
	// marker row that the tracking upgrade wrote and the auth step completed.
	setup := func(t *testing.T) {
		exec(t, "DROP TABLE IF EXISTS users, alembic_version_auth, "+markerTable)
		exec(t, "CREATE TABLE alembic_version_auth (version_num varchar(32) PRIMARY KEY)")
		exec(t, "INSERT INTO alembic_version_auth VALUES ('f1a2b3c4d5e6')")
		exec(t, "CREATE TABLE users (id serial PRIMARY KEY, username varchar(255) UNIQUE, password_hash varchar(255), is_admin boolean)")
		exec(t, "INSERT INTO users (username, password_hash, is_admin) VALUES ('alice', $1, true), ('bob', $1, false)", testAuthHash)
		if err := writeMarker(ctx, conn, release, "tracking-rev"); err != nil {
			t.Fatal(err)
		}
		if err := writeAuthMarker(ctx, conn, release, "f1a2b3c4d5e6"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		change  string // SQL run after setup
		version string // default release
		unknown bool   // the release is unknown
		user    string // default alice
		rewrite bool   // the auth step succeeds again after change, and writes the auth marker
		want    bool
	}{
		{name: "as the auth step left it", want: true},
		{name: "marker names another auth revision", change: "UPDATE " + markerTable + " SET auth_alembic_version = 'c3d4e5f6a7b8'"},
		{name: "auth tables downgraded", change: "UPDATE alembic_version_auth SET version_num = 'c3d4e5f6a7b8'"},
		{name: "auth version table gone", change: "DROP TABLE alembic_version_auth"},
		{name: "auth marker never written", change: "UPDATE " + markerTable + " SET auth_alembic_version = NULL"},
		{name: "marker table of an older server", change: "ALTER TABLE " + markerTable + " DROP COLUMN auth_alembic_version"},
		{name: "marker table of an older server, auth step run", change: "ALTER TABLE " + markerTable + " DROP COLUMN auth_alembic_version", rewrite: true, want: true},
		{name: "marker table gone", change: "DROP TABLE " + markerTable},
		{name: "marker table gone, auth step run: no tracking row", change: "DROP TABLE " + markerTable, rewrite: true},
		{name: "another release", version: "3.17.3"},
		{name: "unknown release", unknown: true},
		{name: "admin missing", change: "DELETE FROM users WHERE username = 'alice'"},
		{name: "admin flag off", change: "UPDATE users SET is_admin = false WHERE username = 'alice'"},
		{name: "another admin name", user: "carol"},
		{name: "a user that is no admin", user: "bob"},
		{name: "password hash changed", change: "UPDATE users SET password_hash = replace(password_hash, ':1000$', ':1001$') WHERE username = 'alice'"},
		{name: "legacy admin with the legacy password", change: "INSERT INTO users (username, password_hash, is_admin) VALUES ('admin', '" + testLegacyHash + "', true)"},
	}
	for _, tt := range tests {
		// One database, one case at a time.
		t.Run(tt.name, func(t *testing.T) {
			setup(t)
			if tt.change != "" {
				exec(t, tt.change)
			}
			if tt.rewrite {
				if err := writeAuthMarker(ctx, conn, release, "f1a2b3c4d5e6"); err != nil {
					t.Fatal(err)
				}
			}
			version, user := release, "alice"
			if tt.version != "" {
				version = tt.version
			}
			if tt.unknown {
				version = ""
			}
			if tt.user != "" {
				user = tt.user
			}
			var out bytes.Buffer
			c := config{username: user, password: testAuthPassword}
			got := authCurrent(ctx, newLogger(&out, newRedactor()), conn, c, version)
			if got != tt.want {
				t.Errorf("authCurrent = %v, want %v; log: %s", got, tt.want, out.String())
			}
			if skipped := strings.Contains(out.String(), eventAuthStepSkipped); skipped != tt.want {
				t.Errorf("skip event logged: %v, want %v; log: %s", skipped, tt.want, out.String())
			}
		})
	}
}
