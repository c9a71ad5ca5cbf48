package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRelativizeLocation(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:5000/api/2.0/mlflow/", "/api/2.0/mlflow/"},
		{"http://127.0.0.1:5000/x?a=b#c", "/x?a=b#c"},
		{"http://127.0.0.1:5000", "/"},
		{"/already/relative", "/already/relative"},
		{"https://accounts.google.com/o/oauth2", "https://accounts.google.com/o/oauth2"},
		{"http://127.0.0.1:5001/other-port", "http://127.0.0.1:5001/other-port"},
	}
	for _, tt := range tests {
		h := http.Header{"Location": {tt.in}}
		relativizeLocation(h, "127.0.0.1:5000")
		if got := h.Get("Location"); got != tt.want {
			t.Errorf("relativizeLocation(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestHandlerHeaders checks what reaches the upstream: MLflow's own acceptance of these requests is
// tested against the real MLflow in server_test.go.
func TestHandlerHeaders(t *testing.T) {
	t.Parallel()
	var got *http.Request
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		w.Header().Set("Location", "http://"+r.Host+"/next/")
		w.WriteHeader(http.StatusFound)
	}))
	defer upstream.Close()
	addr := strings.TrimPrefix(upstream.URL, "http://")
	var logs bytes.Buffer
	h := &handler{auth: newBasicAuth("alice", "s3cret")}
	h.mlflow.Store(newProxy(addr, true, newLogger(&logs, newRedactor())))

	req := httptest.NewRequest("POST", "/ajax-api/2.0/mlflow/experiments/create", strings.NewReader("{}"))
	req.Host = "mlflow-123.us-central1.run.app"
	req.RemoteAddr = "10.0.0.9:1234"
	req.Header.Set("Origin", "https://mlflow-123.us-central1.run.app")
	req.Header.Set("Authorization", basic("alice:s3cret"))
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/next/" {
		t.Fatalf("response %d, Location %q; logs: %s", rec.Code, rec.Header().Get("Location"), logs.String())
	}
	checks := map[string][2]string{
		"Host":              {got.Host, addr},
		"Origin":            {got.Header.Get("Origin"), ""},
		"Authorization":     {got.Header.Get("Authorization"), ""},
		"X-Forwarded-Host":  {got.Header.Get("X-Forwarded-Host"), "mlflow-123.us-central1.run.app"},
		"X-Forwarded-Proto": {got.Header.Get("X-Forwarded-Proto"), "https"},
		"X-Forwarded-For":   {got.Header.Get("X-Forwarded-For"), "203.0.113.9, 10.0.0.9"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("upstream got %s %q, want %q", name, c[0], c[1])
		}
	}
}

func TestHandlerGates(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "from mlflow")
	}))
	defer upstream.Close()
	h := &handler{auth: newBasicAuth("alice", "s3cret")}
	do := func(method, path, auth, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Host = "mlflow.example.com"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	good := basic("alice:s3cret")
	if c := do("GET", "/health", "", "").Code; c != 503 {
		t.Errorf("health before ready: %d, want 503", c)
	}
	if c := do("GET", "/", good, "").Code; c != 503 {
		t.Errorf("request before ready: %d, want 503", c)
	}
	h.mlflow.Store(newProxy(strings.TrimPrefix(upstream.URL, "http://"), true, newLogger(io.Discard, newRedactor())))
	tests := []struct {
		method, path, auth, origin string
		want                       int
	}{
		{"GET", "/health", "", "", 200},
		{"GET", "/", "", "", 401},
		{"GET", "/", basic("alice:wrong"), "", 401},
		{"GET", "/", "Basic %%%", "", 401},
		{"GET", "/", good, "", 200},
		{"POST", "/api/2.0/mlflow/runs/create", good, "https://evil.example", 403},
		{"POST", "/api/2.0/mlflow/runs/create", good, "https://mlflow.example.com", 200},
		{"POST", "/api/2.0/mlflow/runs/create", "", "https://evil.example", 401},
	}
	for _, tt := range tests {
		rec := do(tt.method, tt.path, tt.auth, tt.origin)
		if rec.Code != tt.want {
			t.Errorf("%s %s auth=%q origin=%q: %d, want %d (%s)", tt.method, tt.path, tt.auth, tt.origin, rec.Code, tt.want, rec.Body)
		}
		if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") != wwwAuthenticate {
			t.Errorf("401 without the challenge")
		}
	}
	// Two Origin headers: refused whatever the method, even when one matches.
	for _, method := range []string{"GET", "POST"} {
		req := httptest.NewRequest(method, "/api/2.0/mlflow/experiments/search", nil)
		req.Host = "mlflow.example.com"
		req.Header.Set("Authorization", good)
		req.Header["Origin"] = []string{"https://mlflow.example.com", "https://evil.example"}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), "Origin headers") {
			t.Errorf("%s with two Origin headers: %d %s, want 403", method, rec.Code, rec.Body)
		}
	}
}

// TestHealthRouting: only the health path exactly as written is answered without credentials, by the
// server itself, for any method; other spellings of it are ordinary requests, which need credentials.
func TestHealthRouting(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.WriteString(w, "from mlflow")
	}))
	defer upstream.Close()
	h := &handler{auth: newBasicAuth("alice", "s3cret-password")}
	h.mlflow.Store(newProxy(strings.TrimPrefix(upstream.URL, "http://"), true, newLogger(io.Discard, newRedactor())))
	tests := []struct {
		method, target string
		want           int
	}{
		{"GET", "/health", 200},
		{"HEAD", "/health", 200},
		{"POST", "/health", 200},
		{"GET", "/health?probe=1", 200},
		{"GET", "/health/", 401},
		{"GET", "//health", 401},
		{"GET", "/health/../api/2.0/mlflow/experiments/search", 401},
		{"GET", "/Health", 401},
		{"GET", "/HEALTH", 401},
		{"GET", "/%68ealth", 401},
		{"GET", "/health%2F", 401},
		{"GET", "/./health", 401},
		{"HEAD", "/health/", 401},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			before := reached.Load()
			// httptest.NewRequest parses the target as the server parses a request line.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
			if reached.Load() != before {
				t.Error("the request reached MLflow")
			}
			if tt.want == 200 && ((tt.method != "HEAD" && rec.Body.String() != "OK") || rec.Header().Get("Cache-Control") != "no-store") {
				t.Errorf("body %q, Cache-Control %q", rec.Body, rec.Header().Get("Cache-Control"))
			}
		})
	}
	// With credentials the other spellings are proxied like any path; the health path itself still never is.
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Authorization", basic("alice:s3cret-password"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "OK" || reached.Load() != 0 {
		t.Errorf("health with credentials: %d %q, MLflow reached %d times", rec.Code, rec.Body, reached.Load())
	}
}

// TestProxyMLflowGone: a request that reaches the proxy after MLflow has died gets a 502 at once, whose
// body points to the log, and the log says that MLflow did not answer and why; it does not hang.
func TestProxyMLflowGone(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "from mlflow")
	}))
	out := &lineWriter{}
	l := newLogger(out, newRedactor())
	h := &handler{}
	h.mlflow.Store(newProxy(strings.TrimPrefix(upstream.URL, "http://"), false, l))
	front := httptest.NewServer(l.requests(h))
	defer front.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() (int, string) {
		t.Helper()
		resp, err := client.Get(front.URL + "/api/2.0/mlflow/experiments/search")
		if err != nil {
			t.Fatalf("request through the proxy: %v (want an answer, not a hang); log:\n%s", err, out)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get(); status != http.StatusOK || body != "from mlflow" {
		t.Fatalf("with MLflow up: %d %q", status, body)
	}
	upstream.Close() // MLflow dies; its keep-alive connection goes with it

	status, body := get()
	if status != http.StatusBadGateway || !strings.Contains(body, "MLflow did not answer; see the server's log") {
		t.Errorf("after MLflow died: %d %q, want 502 pointing to the log", status, body)
	}
	var found bool
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, `"message":"MLflow did not answer"`) {
			found = strings.Contains(line, `"severity":"ERROR"`) && strings.Contains(line, "connection refused") &&
				strings.Contains(line, `"path":"/api/2.0/mlflow/experiments/search"`)
		}
	}
	if !found || !strings.Contains(out.String(), `"status":502`) {
		t.Errorf("want an ERROR line saying MLflow did not answer (connection refused, with the path) and a 502 request line; log:\n%s", out)
	}
}

// TestRewriteReferer checks that a Referer from the service's own host reaches MLflow naming the loopback
// host MLflow checks CSRF against (Flask-WTF: https://<Host>/ over HTTPS), and that any other is passed
// as it came.
func TestRewriteReferer(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.1:5000"
	for _, tc := range []struct {
		name, referer, inHost, proto, want string
	}{
		{"same host over https", "https://mlflow-abc.a.run.app/signup?x=1", "mlflow-abc.a.run.app", "https", "https://127.0.0.1:5000/signup?x=1"},
		{"same host and port, local http", "http://127.0.0.1:8080/#/admin", "127.0.0.1:8080", "http", "http://127.0.0.1:5000/"},
		{"user info dropped", "https://u:p@mlflow.example.com/signup", "mlflow.example.com", "https", "https://127.0.0.1:5000/signup"},
		{"another site", "https://evil.example/page", "mlflow-abc.a.run.app", "https", "https://evil.example/page"},
		{"same name, another port", "http://127.0.0.1:9999/", "127.0.0.1:8080", "http", "http://127.0.0.1:9999/"},
		{"not http", "ftp://mlflow-abc.a.run.app/", "mlflow-abc.a.run.app", "https", "ftp://mlflow-abc.a.run.app/"},
		{"none", "", "mlflow-abc.a.run.app", "https", ""},
	} {
		h := http.Header{}
		if tc.referer != "" {
			h.Set("Referer", tc.referer)
		}
		h.Set("X-Forwarded-Proto", tc.proto)
		rewriteReferer(h, tc.inHost, addr)
		if got := h.Get("Referer"); got != tc.want {
			t.Errorf("%s: Referer %q became %q, want %q", tc.name, tc.referer, got, tc.want)
		}
	}
}

// TestJSONRefusal: MLflow's auth app's plain-text 403 on an API path reaches the client as MLflow's JSON
// error, which its UI and Python client understand; every other answer passes as MLflow gave it.
func TestJSONRefusal(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, _ := strconv.Atoi(r.URL.Query().Get("status"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, r.URL.Query().Get("body"))
	}))
	defer upstream.Close()
	h := &handler{}
	h.mlflow.Store(newProxy(strings.TrimPrefix(upstream.URL, "http://"), false, newLogger(io.Discard, newRedactor())))
	const refusal = `{"error_code":"PERMISSION_DENIED","message":"Permission denied"}`
	for _, tc := range []struct {
		path, wantType, wantBody string
	}{
		{"/ajax-api/2.0/mlflow/experiments/get?status=403&body=Permission+denied", "application/json", refusal},
		{"/api/2.0/mlflow/runs/get?status=403&body=Permission+denied", "application/json", refusal},
		{"/api/2.0/mlflow/runs/get?status=403&body=Forbidden+for+another+reason", "text/html; charset=utf-8", "Forbidden for another reason"},
		{"/api/2.0/mlflow/runs/get?status=200&body=Permission+denied", "text/html; charset=utf-8", "Permission denied"},
		{"/signup?status=403&body=Permission+denied", "text/html; charset=utf-8", "Permission denied"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if got := rec.Body.String(); got != tc.wantBody || rec.Header().Get("Content-Type") != tc.wantType ||
			rec.Header().Get("Content-Length") != strconv.Itoa(len(tc.wantBody)) {
			t.Errorf("%s: %s %q (Content-Length %s), want %s %q", tc.path, rec.Header().Get("Content-Type"), got,
				rec.Header().Get("Content-Length"), tc.wantType, tc.wantBody)
		}
	}
}
