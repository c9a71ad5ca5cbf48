package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// startMLflowAuth runs the server binary in auth mode mlflow, with pass as the admin's password.
func startMLflowAuth(t *testing.T, db, pass string, extra ...string) *instance {
	t.Helper()
	env := append([]string{"DEPLOY_MLFLOW_AUTH=mlflow", "DEPLOY_MLFLOW_PASSWORD=" + pass, "MLFLOW_WORKERS=1"}, extra...)
	in := startInstance(t, db, env...)
	in.pass = pass
	return in
}

// as sends a request as user:pass ("" for no credentials) and returns the status and body.
func (in *instance) as(t *testing.T, user, pass, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, in.URL()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, readAll(resp))
	return resp.StatusCode, b.String()
}

func readAll(resp *http.Response) string {
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

func countEvents(t *testing.T, ins []*instance, event string) int {
	t.Helper()
	n := 0
	for _, in := range ins {
		for _, e := range in.entries(t) {
			if e["event"] == event {
				n++
			}
		}
	}
	return n
}

// TestMLflowAuth runs MLflow's own auth app behind the server against PostgreSQL, in as few starts as
// the checks allow: two instances together on an empty database (auth tables migrated once; users,
// permissions, the origin rule, a gateway key stored), a restart with the same password (auth step
// skipped), a restart with a new admin password and another default permission (rotation), and a start
// with another KEK passphrase (refused).
func TestMLflowAuth(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	passA := "pw-a-" + hex.EncodeToString(randomBytes(8))
	passB := "pw-b-" + hex.EncodeToString(randomBytes(8))
	kek := "kek-" + hex.EncodeToString(randomBytes(12))
	const bob, bobPass = "bob", "bob-password-123"

	first := []*instance{
		startMLflowAuth(t, db, passA, "DEPLOY_MLFLOW_DEFAULT_PERMISSION=NO_PERMISSIONS", "MLFLOW_CRYPTO_KEK_PASSPHRASE="+kek),
		startMLflowAuth(t, db, passA, "DEPLOY_MLFLOW_DEFAULT_PERMISSION=NO_PERMISSIONS", "MLFLOW_CRYPTO_KEK_PASSPHRASE="+kek),
	}
	var wg sync.WaitGroup
	for _, in := range first {
		wg.Go(func() { in.waitHealthy(t) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	in := first[0]
	var expID string

	t.Run("auth tables migrated once, admin created once", func(t *testing.T) {
		// The instance that waited for the lock finds the marker that the first one wrote.
		migrated, skipped := countEvents(t, first, eventAuthSchemaMigrated), countEvents(t, first, eventAuthStepSkipped)
		if migrated != 1 || skipped != 1 {
			t.Errorf("auth tables migrated by %d instance(s), auth step skipped by %d; want 1 and 1", migrated, skipped)
		}
		var outcomes []string
		for _, x := range first {
			for _, e := range x.entries(t) {
				if e["event"] == eventAuthAdmin {
					outcomes = append(outcomes, fmt.Sprint(e["outcome"]))
				}
			}
		}
		if strings.Join(outcomes, " ") != "created" {
			t.Errorf("admin outcomes %q, want one created", outcomes)
		}
	})

	t.Run("uvicorn started directly", func(t *testing.T) {
		for i, x := range first {
			launch := ""
			for _, e := range x.entries(t) {
				if l, ok := e["launch"]; ok {
					launch = fmt.Sprint(l)
				}
			}
			if launch != "uvicorn" {
				t.Errorf("instance %d started MLflow with launch=%q, want uvicorn", i, launch)
			}
		}
	})

	t.Run("users and permissions", func(t *testing.T) {
		if status, body := in.as(t, in.user, in.pass, "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 200 || !strings.Contains(body, `"`+in.user+`"`) || !strings.Contains(body, `"is_admin": true`) && !strings.Contains(body, `"is_admin":true`) {
			t.Errorf("current user as admin: %d %s", status, body)
		}
		if status, body := in.as(t, in.user, "wrong-password-123", "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 401 {
			t.Errorf("wrong password: %d %s, want 401", status, body)
		}
		if status, body := in.as(t, "", "", "GET", "/api/2.0/mlflow/experiments/search?max_results=1", ""); status != 401 {
			t.Errorf("no credentials: %d %s, want 401", status, body)
		}
		if status, body := in.as(t, in.user, in.pass, "POST", "/api/2.0/mlflow/users/create", fmt.Sprintf(`{"username":%q,"password":%q}`, bob, bobPass)); status != 200 {
			t.Fatalf("admin creates a user: %d %s", status, body)
		}
		var out struct {
			ID string `json:"experiment_id"`
		}
		in.api(t, "POST", "/api/2.0/mlflow/experiments/create", map[string]any{"name": "admins"}, &out)
		expID = out.ID
		if status, body := in.as(t, bob, bobPass, "GET", "/api/2.0/mlflow/experiments/get?experiment_id="+expID, ""); status != 403 {
			t.Errorf("bob reads the admin's experiment with NO_PERMISSIONS: %d %s, want 403", status, body)
		}
		if status, body := in.as(t, bob, bobPass, "POST", "/api/2.0/mlflow/users/create", `{"username":"carol","password":"carol-password-1"}`); status != 403 {
			t.Errorf("a user who is no admin creates a user: %d %s, want 403", status, body)
		}
	})

	t.Run("signup form over HTTPS, as Cloud Run forwards it", func(t *testing.T) {
		// A browser on https://<service host>/signup: the form, its CSRF cookie and token, then the post
		// with the Origin and Referer a browser sends. Flask-WTF checks the Referer against the Host MLflow
		// is given over HTTPS, and the token against the session cookie.
		const host = "mlflow-abc-uc.a.run.app"
		send := func(method, path string, body string, header http.Header) (*http.Response, string) {
			req, _ := http.NewRequest(method, in.URL()+path, strings.NewReader(body))
			req.Host = host
			req.Header = header.Clone()
			req.Header.Set("X-Forwarded-Proto", "https")
			req.SetBasicAuth(in.user, in.pass)
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			defer resp.Body.Close()
			return resp, readAll(resp)
		}
		resp, page := send("GET", "/signup", "", http.Header{})
		token := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(page)
		action := regexp.MustCompile(`<form action="([^"]+)" method="post">`).FindStringSubmatch(page)
		if resp.StatusCode != 200 || token == nil || action == nil {
			t.Fatalf("GET /signup: %d, no form with a CSRF token:\n%.500s", resp.StatusCode, page)
		}
		var cookies []string
		for _, c := range resp.Cookies() {
			cookies = append(cookies, c.Name+"="+c.Value)
		}
		post := func(form url.Values) (int, string) {
			resp, body := send("POST", action[1], form.Encode(), http.Header{
				"Content-Type": {"application/x-www-form-urlencoded"},
				"Cookie":       {strings.Join(cookies, "; ")},
				"Origin":       {"https://" + host},
				"Referer":      {"https://" + host + "/signup"},
			})
			return resp.StatusCode, body
		}
		if status, body := post(url.Values{"username": {"mallory"}, "password": {"mallory-password-1"}}); status != 400 {
			t.Errorf("signup without the CSRF token: %d %.300s, want 400", status, body)
		}
		status, body := post(url.Values{"csrf_token": {token[1]}, "username": {"carol"}, "password": {"carol-password-1"}})
		if status != 200 || !strings.Contains(body, "Successfully signed up user: carol") {
			t.Fatalf("signup: %d %.500s", status, body)
		}
		if status, body := in.as(t, "carol", "carol-password-1", "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 200 || !strings.Contains(body, `"carol"`) {
			t.Errorf("carol after signing up: %d %s", status, body)
		}
		if status, _ := in.as(t, "mallory", "mallory-password-1", "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 401 {
			t.Errorf("mallory, whose signup had no CSRF token, can log in: %d", status)
		}
	})

	t.Run("cross-origin write refused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", in.URL()+"/ajax-api/2.0/mlflow/experiments/create", strings.NewReader(`{"name":"cross-origin"}`))
		req.Host = "mlflow.example.com"
		req.Header.Set("Origin", "https://evil.example.com")
		req.Header.Set("Content-Type", "application/json")
		if status, body := in.do(t, nil, req); status != 403 || !strings.Contains(string(body), "cross-origin") {
			t.Errorf("cross-origin write: %d %s, want our 403", status, body)
		}
	})

	t.Run("store a gateway key", func(t *testing.T) {
		status, body := in.as(t, in.user, in.pass, "POST", "/api/3.0/mlflow/gateway/secrets/create", `{"secret_name":"openai-key","secret_value":{"api_key":"sk-test-0123456789abcdef"},"provider":"openai"}`)
		if status != 200 {
			t.Fatalf("create gateway secret: %d %s", status, body)
		}
	})

	for _, x := range first {
		stop(t, x)
	}
	if t.Failed() {
		return
	}

	t.Run("restart with the same password skips the auth step", func(t *testing.T) {
		in := startMLflowAuth(t, db, passA, "DEPLOY_MLFLOW_DEFAULT_PERMISSION=NO_PERMISSIONS", "MLFLOW_CRYPTO_KEK_PASSPHRASE="+kek)
		in.waitHealthy(t)
		defer stop(t, in)
		ins := []*instance{in}
		if skipped, admin := countEvents(t, ins, eventAuthStepSkipped), countEvents(t, ins, eventAuthAdmin); skipped != 1 || admin != 0 {
			t.Errorf("auth step skipped %d times and run %d times, want skipped once", skipped, admin)
		}
		if status, body := in.as(t, in.user, passA, "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 200 {
			t.Errorf("admin: %d %s", status, body)
		}
		if status, body := in.as(t, bob, bobPass, "GET", "/api/2.0/mlflow/experiments/get?experiment_id="+expID, ""); status != 403 {
			t.Errorf("bob reads the admin's experiment with NO_PERMISSIONS: %d %s, want 403", status, body)
		}
	})

	t.Run("restart rotates the admin password; default permission READ", func(t *testing.T) {
		in := startMLflowAuth(t, db, passB, "DEPLOY_MLFLOW_DEFAULT_PERMISSION=READ", "MLFLOW_CRYPTO_KEK_PASSPHRASE="+kek)
		in.waitHealthy(t)
		defer stop(t, in)
		if n := countEvents(t, []*instance{in}, "kek-checked"); n != 1 {
			t.Errorf("KEK checked %d times, want 1", n)
		}
		var outcomes []string
		for _, e := range in.entries(t) {
			if e["event"] == eventAuthAdmin {
				outcomes = append(outcomes, fmt.Sprint(e["outcome"]))
			}
		}
		if strings.Join(outcomes, " ") != "rotated" || countEvents(t, []*instance{in}, eventAuthStepSkipped) != 0 {
			t.Errorf("admin outcomes %q with a new password, want the auth step run once: rotated", outcomes)
		}
		if status, body := in.as(t, in.user, passB, "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 200 {
			t.Errorf("admin with the new password: %d %s", status, body)
		}
		if status, body := in.as(t, in.user, passA, "GET", "/ajax-api/2.0/mlflow/users/current", ""); status != 401 {
			t.Errorf("admin with the old password: %d %s, want 401", status, body)
		}
		if status, body := in.as(t, bob, bobPass, "GET", "/api/2.0/mlflow/experiments/get?experiment_id="+expID, ""); status != 200 {
			t.Errorf("bob reads the admin's experiment with READ: %d %s, want 200", status, body)
		}
	})

	t.Run("another KEK passphrase is refused", func(t *testing.T) {
		in := startMLflowAuth(t, db, passB, "MLFLOW_CRYPTO_KEK_PASSPHRASE=another-"+kek)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		code, err := in.Wait(ctx)
		if err != nil || code == 0 {
			t.Fatalf("exit %d, %v; want a refusal", code, err)
		}
		out := strings.Join(in.Lines(), "\n")
		if !strings.Contains(out, "mlflow crypto rotate-kek") || !strings.Contains(out, "openai-key") {
			t.Errorf("the refusal does not say how to rotate: %s", out)
		}
		if strings.Contains(out, "another-"+kek) || strings.Contains(out, kek) {
			t.Errorf("the log holds the passphrase")
		}
	})
}
