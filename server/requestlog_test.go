package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRequestLog(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor("hunter2-secret"))
	tick := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.now = func() time.Time { tick = tick.Add(12 * time.Millisecond); return tick }
	h := l.requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("hello"))
	}))
	req := httptest.NewRequest("POST", "/api/2.0/mlflow/runs/create?token=hunter2-secret", strings.NewReader("0123456789"))
	req.Host = "mlflow.example.com"
	req.Header.Set("Authorization", basic("alice:hunter2-secret"))
	req.Header.Set("User-Agent", "mlflow-python-client/3.17.2")
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 198.51.100.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	h.ServeHTTP(httptest.NewRecorder(), req)

	var e struct {
		Severity    string      `json:"severity"`
		Message     string      `json:"message"`
		Time        string      `json:"time"`
		HTTPRequest httpRequest `json:"httpRequest"`
	}
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := httpRequest{
		RequestMethod: "POST",
		RequestURL:    "https://mlflow.example.com/api/2.0/mlflow/runs/create?token=REDACTED",
		RequestSize:   "10",
		Status:        201,
		ResponseSize:  "5",
		UserAgent:     "mlflow-python-client/3.17.2",
		RemoteIP:      "198.51.100.7",
		Latency:       "0.012s",
		Protocol:      "HTTP/1.1",
	}
	if e.HTTPRequest != want {
		t.Errorf("httpRequest = %+v\nwant %+v", e.HTTPRequest, want)
	}
	if e.Severity != "INFO" || e.Message != "POST /api/2.0/mlflow/runs/create 201" || e.Time != "2026-01-02T03:04:05.036Z" {
		t.Errorf("entry = %+v", e)
	}
	if strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), "Basic") {
		t.Errorf("credential in the log: %s", out.String())
	}
}

func TestRequestSeverity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/", 200, "INFO"},
		{"/api/x", 401, "WARNING"},
		{"/api/x", 502, "ERROR"},
		{"/health", 503, "DEBUG"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		l := newLogger(&out, newRedactor())
		l.request(httptest.NewRequest("GET", tt.path, nil), tt.status, 0, 0, time.Millisecond)
		var e map[string]any
		_ = json.Unmarshal(out.Bytes(), &e)
		if e["severity"] != tt.want {
			t.Errorf("%s %d: severity %v, want %s", tt.path, tt.status, e["severity"], tt.want)
		}
	}
}

func TestRemoteIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"10.0.0.1:5555", nil, "10.0.0.1"},
		{"10.0.0.1:5555", []string{"203.0.113.9"}, "203.0.113.9"},
		{"10.0.0.1:5555", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"10.0.0.1:5555", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"10.0.0.1:5555", []string{"not-an-ip"}, "10.0.0.1"},
		{"[2001:db8::1]:443", nil, "2001:db8::1"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := remoteIP(r); got != tt.want {
			t.Errorf("remoteIP(%s, %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestRequestLogClientGone(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor())
	ctx, cancel := context.WithCancel(context.Background())
	h := l.requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel() // the connection closes before the handler answers, and it gives up
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PUT", "/upload", nil).WithContext(ctx))
	if !strings.Contains(out.String(), `"status":499`) {
		t.Errorf("log %s, want status 499", out.String())
	}
}

// TestRequestLogFlush: a flush reaches the connection through the request log's recorder (the proxy
// flushes each chunk of a streamed response that way), and a response whose headers went out in a flush
// is logged with its status, not as one that the client left before any answer.
func TestRequestLogFlush(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := newLogger(&out, newRedactor())
	ctx, cancel := context.WithCancel(context.Background())
	var flushErr error
	h := l.requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flushErr = http.NewResponseController(w).Flush()
		cancel() // the client leaves after the headers
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/stream", nil).WithContext(ctx))
	if flushErr != nil || !rec.Flushed {
		t.Errorf("flush through the recorder: error %v, flushed %v", flushErr, rec.Flushed)
	}
	if !strings.Contains(out.String(), `"status":200`) {
		t.Errorf("log %s, want status 200", out.String())
	}
}
