package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

// entry parses the one line the logger wrote.
func entry(t *testing.T, out *bytes.Buffer) map[string]any {
	t.Helper()
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d lines, want 1: %s", n, out)
	}
	var e map[string]any
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return e
}

// TestSeverities: every level the server uses reaches the log under Cloud Logging's name, DEFAULT and
// DEBUG included (below slog's default minimum).
func TestSeverities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level slog.Level
		want  string
	}{
		{sevDefault, "DEFAULT"},
		{sevDebug, "DEBUG"},
		{sevInfo, "INFO"},
		{sevWarning, "WARNING"},
		{sevError, "ERROR"},
		{sevCritical, "CRITICAL"},
		{sevWarning + 1, "WARNING"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		newLogger(&out, newRedactor()).log(tt.level, "m")
		if e := entry(t, &out); e["severity"] != tt.want {
			t.Errorf("level %v: severity %v, want %s", tt.level, e["severity"], tt.want)
		}
	}
}

// TestEntryFields: Cloud Logging's field names and nothing of slog's own, the time in UTC from the
// logger's clock, durations as Go writes them, Stringers redacted like strings.
func TestEntryFields(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor("hunter2-secret"))
	l.now = func() time.Time { return time.Date(2026, 1, 2, 4, 4, 5, 7e6, time.FixedZone("CET", 3600)) }
	u := &url.URL{Scheme: "postgresql", User: url.UserPassword("u", "pw"), Host: "h", Path: "/d"}
	l.warn("login with hunter2-secret refused", "grace", 1500*time.Millisecond, "url", u, "pid", 42)
	e := entry(t, &out)
	want := map[string]any{
		"severity": "WARNING",
		"message":  "login with REDACTED refused",
		"time":     "2026-01-02T03:04:05.007Z",
		"grace":    "1.5s",
		"url":      "postgresql://u:REDACTED@h/d",
		"pid":      float64(42),
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %v, want %v", k, e[k], v)
		}
	}
	if len(e) != len(want) {
		t.Errorf("fields %v, want only %v", e, want)
	}
}

// TestStdLogger: net/http's error lines become one WARNING entry each, without the trailing newline,
// redacted.
func TestStdLogger(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor())
	l.stdLogger().Printf("httputil: ReverseProxy read error during body copy: dial postgresql://u:pw@h/d\n")
	e := entry(t, &out)
	if e["severity"] != "WARNING" || e["message"] != "httputil: ReverseProxy read error during body copy: dial postgresql://u:REDACTED@h/d" {
		t.Errorf("entry = %v", e)
	}
}

func TestEventLogRedacts(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor("hunter2-secret"))
	l.error("cannot connect", "error", io.ErrUnexpectedEOF, "url", "postgresql://u:hunter2-secret@h/d")
	var e map[string]any
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e["url"] != "postgresql://u:REDACTED@h/d" || e["error"] != "unexpected EOF" || e["severity"] != "ERROR" {
		t.Errorf("entry = %v", e)
	}
}
