package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestChildSeverity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line, stream string
		prev         slog.Leveler
		want         string
	}{
		{"2026/11/27 13:55:07 INFO:     Uvicorn running on http://127.0.0.1:5077", "stderr", nil, "INFO"},
		{"2026/11/27 13:54:54 INFO mlflow.store.db.utils: Creating initial MLflow database tables...", "stderr", nil, "INFO"},
		{"2026/11/27 13:54:54 WARNING mlflow.server: something", "stderr", nil, "WARNING"},
		{"2026/11/27 13:54:54 ERROR mlflow.server: Error initializing backend store", "stderr", nil, "ERROR"},
		{"[MLflow] WARNING: Security middleware is DISABLED.", "stderr", nil, "WARNING"},
		{"CRITICAL: boom", "stderr", nil, "CRITICAL"},
		{"Traceback (most recent call last):", "stderr", sevInfo, "ERROR"},
		{`  File "x.py", line 1, in <module>`, "stderr", sevError, "ERROR"},
		{"sqlalchemy.exc.OperationalError: could not connect", "stderr", sevError, "ERROR"},
		{"Registry store URI not provided. Using backend store URI.", "stdout", nil, "INFO"},
		{"[MLflow] Security middleware enabled.", "stderr", nil, "DEFAULT"},
		{"  from starlette.middleware.wsgi import WSGIResponder", "stderr", nil, "DEFAULT"},
	}
	for _, tt := range tests {
		if got := severityName(childSeverity(tt.line, tt.stream, tt.prev)); got != tt.want {
			t.Errorf("childSeverity(%q, %s, %q) = %s, want %s", tt.line, tt.stream, tt.prev, got, tt.want)
		}
	}
}

func TestRelayRedactsAndSplits(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor("db-password-1"))
	in := "2026/11/27 ERROR sqlalchemy: connect postgresql://u:db-password-1@h/d failed\n\nplain line\r\n" + strings.Repeat("x", 70<<10) + "\n"
	l.relay(strings.NewReader(in), "mlflow", "stderr")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 { // the long line is split in two; the empty line is dropped
		t.Fatalf("%d entries, want 4:\n%s", len(lines), out.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["severity"] != "ERROR" || first["source"] != "mlflow" || first["stream"] != "stderr" {
		t.Errorf("entry %v", first)
	}
	if strings.Contains(out.String(), "db-password-1") {
		t.Errorf("password relayed:\n%s", lines[0])
	}
}
