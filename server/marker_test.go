package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// TestInspectMLflowVenv reads the real virtualenv: its interpreter, site-packages and release.
func TestInspectMLflowVenv(t *testing.T) {
	t.Parallel()
	mlflow, err := testenv.MLflowCommand()
	if err != nil {
		t.Skip(err)
	}
	inst, err := inspectMLflow(mlflow)
	if err != nil {
		t.Fatal(err)
	}
	venv := filepath.Dir(filepath.Dir(mlflow))
	if inst.version != "3.17.2" || !strings.HasPrefix(inst.python, venv+"/bin/python") ||
		inst.sitePackages != filepath.Join(venv, "lib", "python3.11", "site-packages") {
		t.Errorf("inspectMLflow(%s) = %+v", mlflow, inst)
	}
}

// TestInspectMLflow: only pip's script for an interpreter with exactly one mlflow package whose version
// can be read gives a version; every other layout is an error, so that the caller never guesses.
func TestInspectMLflow(t *testing.T) {
	t.Parallel()
	const pipScript = "#!%PREFIX%/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom mlflow.cli import cli\nif __name__ == \"__main__\":\n    sys.exit(cli())\n"
	const versionPy = "# Copyright 2018 Databricks, Inc.\nimport re\n\nVERSION = \"3.17.2\"\n"
	tests := []struct {
		name    string
		script  string
		files   map[string]string // relative to the prefix
		want    string            // version; "" for an error
		wantErr string
	}{
		{name: "pip's script", script: pipScript, files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": versionPy}, want: "3.17.2"},
		{name: "single quotes", script: pipScript, files: map[string]string{"lib/python3.12/site-packages/mlflow/version.py": "VERSION = '3.18.0.dev0'\n"}, want: "3.18.0.dev0"},
		{name: "env python", script: strings.Replace(pipScript, "%PREFIX%/bin/python3", "/usr/bin/env python3", 1), files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": versionPy}, wantErr: "does not start with #!/path/to/python"},
		{name: "a shell wrapper", script: "#!/bin/sh\nexec %PREFIX%/bin/python3 -m mlflow \"$@\"\n", files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": versionPy}, wantErr: "does not start with #!/path/to/python"},
		{name: "not mlflow's", script: strings.Replace(pipScript, "mlflow.cli", "other.cli", 1), files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": versionPy}, wantErr: "does not run mlflow.cli"},
		{name: "no package", script: pipScript, wantErr: "found 0 mlflow packages"},
		{name: "two pythons", script: pipScript, files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": versionPy, "lib/python3.12/site-packages/mlflow/version.py": versionPy}, wantErr: "found 2 mlflow packages"},
		{name: "no version line", script: pipScript, files: map[string]string{"lib/python3.11/site-packages/mlflow/version.py": "VERSION = get_version()\n"}, wantErr: "no VERSION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(prefix, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			mlflow := filepath.Join(prefix, "bin", "mlflow")
			if err := os.MkdirAll(filepath.Dir(mlflow), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(mlflow, []byte(strings.ReplaceAll(tt.script, "%PREFIX%", prefix)), 0o755); err != nil {
				t.Fatal(err)
			}
			inst, err := inspectMLflow(mlflow)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("inspectMLflow = %+v, %v; want an error with %q", inst, err, tt.wantErr)
				}
				return
			}
			if err != nil || inst.version != tt.want || inst.python != prefix+"/bin/python3" || !strings.HasPrefix(inst.sitePackages, prefix+"/lib/python3.1") {
				t.Errorf("inspectMLflow = %+v, %v; want version %s", inst, err, tt.want)
			}
		})
	}
	if _, err := inspectMLflow(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("inspectMLflow of a missing file: no error")
	}
}

// TestMarker: the marker holds only for the release that wrote it and only while alembic's revision is
// the one it recorded; a development build neither writes nor trusts one.
func TestMarker(t *testing.T) {
	needWorld(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, world.pg.URL(newDatabase(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, version string, want bool) {
		t.Helper()
		if _, got, err := markedCurrent(ctx, conn, version); err != nil || got != want {
			t.Errorf("%s: markedCurrent(%s) = %v, %v; want %v", step, version, got, err, want)
		}
	}
	check("no marker table, no alembic table", "3.17.2", false)
	exec("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
	exec("INSERT INTO alembic_version VALUES ('dc11669786a5')")
	check("no marker table", "3.17.2", false)
	for _, v := range []string{"3.17.2", "3.18.0.dev0"} {
		if err := writeMarker(ctx, conn, v, "dc11669786a5"); err != nil {
			t.Fatal(err)
		}
	}
	check("marker written", "3.17.2", true)
	check("another release's marker", "3.16.0", false)
	check("a development build", "3.18.0.dev0", false)
	var devMarkers int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+markerTable+" WHERE mlflow_version = '3.18.0.dev0'").Scan(&devMarkers); err != nil || devMarkers != 0 {
		t.Errorf("%d markers for a development build, %v; want none", devMarkers, err)
	}

	// A downgrade or a restored backup: the marker lies.
	exec("UPDATE alembic_version SET version_num = '75868b020152'")
	check("revision changed under the marker", "3.17.2", false)
	exec("UPDATE alembic_version SET version_num = 'dc11669786a5'")
	exec("INSERT INTO alembic_version VALUES ('1b5f0d9ad7c1')")
	check("a second head", "3.17.2", false)
	if err := writeMarker(ctx, conn, "3.17.2", "1b5f0d9ad7c1,dc11669786a5"); err != nil {
		t.Fatal(err)
	}
	check("marker rewritten", "3.17.2", true)
	exec("DROP TABLE alembic_version")
	check("alembic's table dropped", "3.17.2", false)

	conn.Close(ctx)
	if _, _, err := markedCurrent(ctx, conn, "3.17.2"); err == nil || !strings.Contains(err.Error(), "schema marker") {
		t.Errorf("markedCurrent on a closed connection: %v", err)
	}
	if err := writeMarker(ctx, conn, "3.17.2", "x"); err == nil || !strings.Contains(err.Error(), markerTable) {
		t.Errorf("writeMarker on a closed connection: %v", err)
	}
}
