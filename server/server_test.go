package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// TestServer runs one server on a fresh database and checks it the way Cloud Run and MLflow's users meet
// it: health before and after MLflow is up, auth, origins under any host name, the article's Python
// client, a 100 MiB upload over h2c, what MLflow's processes receive, and the log.
func TestServer(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	in := startInstance(t, db)

	t.Run("health is 503 until MLflow is up", func(t *testing.T) {
		// The server listens at once; MLflow needs seconds (schema upgrade, then start).
		saw503 := false
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			resp, err := httpClient.Get(in.URL() + "/health")
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("health: %d, want 503 or 200", resp.StatusCode)
			}
			if !saw503 {
				saw503 = true
				// Requests other than health wait for MLflow too.
				req, _ := http.NewRequest("GET", in.URL()+"/api/2.0/mlflow/experiments/search?max_results=1", nil)
				if status, _ := in.do(t, nil, req); status != http.StatusServiceUnavailable {
					t.Errorf("API before MLflow is up: %d, want 503", status)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		in.waitHealthy(t)
		if !saw503 {
			t.Error("health never answered 503 before MLflow was up")
		}
		// The ready event comes only after MLflow answered its own /health.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := in.WaitForLine(ctx, "the ready event", func(l string) bool { return strings.Contains(l, `"event":"ready"`) }); err != nil {
			t.Error(err)
		}
	})
	in.waitHealthy(t)

	t.Run("auth", func(t *testing.T) {
		path := in.URL() + "/api/2.0/mlflow/experiments/search?max_results=1"
		tests := []struct {
			name, authorization string
			want                int
		}{
			{"no credentials", "", http.StatusUnauthorized},
			{"wrong password", "Basic " + base64.StdEncoding.EncodeToString([]byte(in.user+":wrong")), http.StatusUnauthorized},
			{"wrong user", "Basic " + base64.StdEncoding.EncodeToString([]byte("mallory:"+in.pass)), http.StatusUnauthorized},
			{"malformed base64", "Basic not*base64", http.StatusUnauthorized},
			{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte(in.user+in.pass)), http.StatusUnauthorized},
			{"other scheme", "Bearer " + in.pass, http.StatusUnauthorized},
			{"right credentials", "Basic " + base64.StdEncoding.EncodeToString([]byte(in.user+":"+in.pass)), http.StatusOK},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest("GET", path, nil)
				// Each case from its own address, so that the failures do not add up to a block.
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
				if tt.authorization != "" {
					req.Header.Set("Authorization", tt.authorization)
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
				}
				if tt.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") != `Basic realm="mlflow", charset="UTF-8"` {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
				}
			})
		}
		// A guesser is blocked after 5 failures, the right password included; others are not.
		guess := func(from, userpass string) *http.Response {
			req, _ := http.NewRequest("GET", path, nil)
			req.Header.Set("X-Forwarded-For", "10.9.9.9, "+from)
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(userpass)))
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		for i := range guessLimit {
			if resp := guess("198.51.100.77", fmt.Sprintf("%s:guess-%d", in.user, i)); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("guess %d: %d, want 401", i+1, resp.StatusCode)
			}
		}
		if resp := guess("198.51.100.77", in.user+":"+in.pass); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("right password from the guesser: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if resp := guess("198.51.100.78", in.user+":"+in.pass); resp.StatusCode != http.StatusOK {
			t.Errorf("right password from another address: %d, want 200", resp.StatusCode)
		}
		throttled := false
		for _, e := range in.entries(t) {
			throttled = throttled || (e["event"] == "login-throttled" && e["severity"] == "WARNING" && e["client"] == "198.51.100.77")
		}
		if !throttled {
			t.Error(`no WARNING with "event":"login-throttled" for 198.51.100.77 in the log`)
		}
		// The health path needs no credentials.
		resp, err := httpClient.Get(in.URL() + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("health without credentials: %d", resp.StatusCode)
		}
	})

	t.Run("same-origin writes under any host name, cross-origin refused", func(t *testing.T) {
		create := func(host, origin, name string) (int, string) {
			req, _ := http.NewRequest("POST", in.URL()+"/ajax-api/2.0/mlflow/experiments/create", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
			req.Host = host
			req.Header.Set("Content-Type", "application/json")
			if origin != "" {
				req.Header.Set("Origin", origin)
				req.Header.Set("Sec-Fetch-Site", "same-origin")
			}
			status, body := in.do(t, nil, req)
			return status, string(body)
		}
		for _, host := range []string{"mlflow-123.us-central1.run.app", "mlflow.example.com"} {
			if status, body := create(host, "https://"+host, "ui-"+host); status != http.StatusOK {
				t.Errorf("same-origin write on %s: %d %s", host, status, body)
			}
			// The UI itself loads under that name, too.
			req, _ := http.NewRequest("GET", in.URL()+"/", nil)
			req.Host = host
			if status, body := in.do(t, nil, req); status != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
				t.Errorf("UI on %s: %d %.200s", host, status, body)
			}
		}
		status, body := create("mlflow.example.com", "https://evil.example.com", "cross-origin")
		if status != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
			t.Errorf("cross-origin write: %d %s, want 403", status, body)
		}
		// Browsers send one Origin at most; two are refused, even when the first matches.
		req, _ := http.NewRequest("POST", in.URL()+"/ajax-api/2.0/mlflow/experiments/create", strings.NewReader(`{"name":"two-origins"}`))
		req.Host = "mlflow.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header["Origin"] = []string{"https://mlflow.example.com", "https://evil.example.com"}
		if status, body := in.do(t, nil, req); status != http.StatusForbidden || !strings.Contains(string(body), "Origin headers") {
			t.Errorf("write with two Origin headers: %d %s, want 403", status, body)
		}
		var found struct {
			Experiments []struct{ Name string } `json:"experiments"`
		}
		in.api(t, "POST", "/api/2.0/mlflow/experiments/search", map[string]any{"max_results": 100}, &found)
		var names []string
		for _, e := range found.Experiments {
			names = append(names, e.Name)
		}
		if !slices.Contains(names, "ui-mlflow.example.com") || !slices.Contains(names, "ui-mlflow-123.us-central1.run.app") || slices.Contains(names, "cross-origin") || slices.Contains(names, "two-origins") {
			t.Errorf("experiments = %q", names)
		}
	})

	t.Run("article client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, world.python, filepath.Join(testenv.ModuleRoot(), "testdata", "client.py"))
		cmd.Env = append(os.Environ(),
			"MLFLOW_TRACKING_URI="+in.URL(),
			"MLFLOW_TRACKING_USERNAME="+in.user,
			"MLFLOW_TRACKING_PASSWORD="+in.pass,
			"MLFLOW_DISABLE_TELEMETRY=true",
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client.py: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`RUN_ID=(\w+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("client.py printed no run ID:\n%s", out)
		}
		runID := string(m[1])

		conn, err := pgx.Connect(ctx, world.pg.URL(db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var status, artifactURI, fitIntercept string
		var metrics int
		err = conn.QueryRow(ctx, `SELECT r.status, r.artifact_uri, p.value,
			(SELECT count(DISTINCT key) FROM metrics WHERE run_uuid = r.run_uuid AND key IN ('mse', 'r2'))
			FROM runs r JOIN params p ON p.run_uuid = r.run_uuid AND p.key = 'fit_intercept'
			WHERE r.run_uuid = $1`, runID).Scan(&status, &artifactURI, &fitIntercept, &metrics)
		if err != nil {
			t.Fatalf("run %s in PostgreSQL: %v", runID, err)
		}
		if status != "FINISHED" || fitIntercept != "True" || metrics != 2 {
			t.Errorf("run in PostgreSQL: status %s, fit_intercept %s, %d of 2 metrics", status, fitIntercept, metrics)
		}
		// Clients get proxied artifact URIs, never the bucket.
		if !strings.HasPrefix(artifactURI, "mlflow-artifacts:/") {
			t.Errorf("artifact_uri = %q, want mlflow-artifacts:/...", artifactURI)
		}

		names, err := world.gcs.ObjectNames(bucket, db+"/")
		if err != nil {
			t.Fatal(err)
		}
		// MLflow 3 stores the model under the logged model, serialized with skops (pickle in older
		// releases).
		var mlmodel, weights bool
		for _, n := range names {
			mlmodel = mlmodel || strings.HasSuffix(n, "/artifacts/MLmodel")
			weights = weights || strings.HasSuffix(n, "/artifacts/model.skops") || strings.HasSuffix(n, "/artifacts/model.pkl")
		}
		if !mlmodel || !weights {
			t.Errorf("the model's MLmodel and serialized model are not in gs://%s/%s/; objects: %q", bucket, db, names)
		}
	})

	t.Run("100 MiB artifact over h2c, memory flat", func(t *testing.T) {
		const size = 100 << 20
		pid := in.PID()
		before := peakRSS(t, pid)
		gen := newGenerator(size, 7, 0)
		req, _ := http.NewRequest("PUT", in.URL()+"/api/2.0/mlflow-artifacts/artifacts/big/blob.bin", gen)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := func() (*http.Response, error) {
			req.SetBasicAuth(in.user, in.pass)
			return h2cClient().Do(req)
		}()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("upload: %s over %s: %s", resp.Status, resp.Proto, body)
		}
		after := peakRSS(t, pid)
		sum, n := gcsSHA256(t, db+"/big/blob.bin")
		if n != size || sum != gen.sum() {
			t.Errorf("object in fake GCS: %d bytes, sha256 %s; sent %d bytes, sha256 %s", n, sum, size, gen.sum())
		}
		growth := after - before
		t.Logf("server peak RSS: %.1f MiB before, %.1f MiB after a %d MiB upload (growth %.1f MiB)",
			float64(before)/(1<<20), float64(after)/(1<<20), size>>20, float64(growth)/(1<<20))
		// The README says about 1 MiB; a buffered body would show as 100 MiB.
		if growth > 16<<20 {
			t.Errorf("server peak RSS grew by %.1f MiB during a %d MiB upload; the body is being buffered", float64(growth)/(1<<20), size>>20)
		}
		// The request log says it went over HTTP/2 with the whole body.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		line, err := in.WaitForLine(ctx, "the upload's request log line", func(l string) bool {
			return strings.Contains(l, `"PUT /api/2.0/mlflow-artifacts/artifacts/big/blob.bin 200"`)
		})
		if err != nil || !strings.Contains(line, `"protocol":"HTTP/2.0"`) || !strings.Contains(line, fmt.Sprintf(`"requestSize":"%d"`, size)) {
			t.Errorf("request log line %q (%v)", line, err)
		}
	})

	t.Run("MLflow gets no basic-auth credentials", func(t *testing.T) {
		procs := mlflowProcesses(t, in.PID())
		if len(procs) < 3 { // mlflow CLI, uvicorn supervisor, workers
			t.Fatalf("found %d MLflow processes below the server, want at least 3", len(procs))
		}
		for _, p := range procs {
			pid := p.PID
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err != nil {
				continue // exited meanwhile
			}
			for _, kv := range strings.Split(string(environ), "\x00") {
				if strings.HasPrefix(kv, "DEPLOY_MLFLOW_") || strings.Contains(kv, in.pass) {
					k, _, _ := strings.Cut(kv, "=")
					t.Errorf("MLflow process %d has %s in its environment", pid, k)
				}
				if kv == "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true" {
					t.Errorf("job execution on in process %d", pid)
				}
			}
		}
	})

	t.Run("log lines are structured and hold no credential", func(t *testing.T) {
		entries := in.entries(t)
		var requests, relayed int
		for _, e := range entries {
			if e["severity"] == nil || e["message"] == nil || e["time"] == nil {
				t.Errorf("entry without severity, message or time: %v", e)
			}
			if hr, ok := e["httpRequest"].(map[string]any); ok {
				requests++
				for _, f := range []string{"requestMethod", "requestUrl", "status", "responseSize", "remoteIp", "latency"} {
					if _, ok := hr[f]; !ok {
						t.Errorf("httpRequest without %s: %v", f, hr)
					}
				}
				if !regexp.MustCompile(`^\d+(\.\d+)?s$`).MatchString(fmt.Sprint(hr["latency"])) {
					t.Errorf("latency %v", hr["latency"])
				}
			}
			if e["source"] == "mlflow" {
				relayed++
			}
		}
		if requests == 0 || relayed == 0 {
			t.Errorf("%d request entries, %d relayed MLflow entries; want both", requests, relayed)
		}
		basicHeader := base64.StdEncoding.EncodeToString([]byte(in.user + ":" + in.pass))
		for _, line := range in.Lines() {
			for _, secret := range []string{in.pass, in.dbPassword, basicHeader} {
				if strings.Contains(line, secret) {
					t.Errorf("credential in the log: %s", line)
				}
			}
		}
	})
}

// TestConcurrentStartOnEmptyDatabase starts three instances at once on an empty database, as a first
// deployment that scales out does. All must become healthy, and the schema must be created exactly once.
func TestConcurrentStartOnEmptyDatabase(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	var instances []*instance
	for range 3 {
		// One worker each: three MLflows start on two cores here.
		instances = append(instances, startInstance(t, db, "MLFLOW_WORKERS=1"))
	}
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Go(func() { in.waitHealthy(t) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Each instance reads alembic's version under the lock before and after its upgrade: only the first
	// can see an empty database. Without the lock all three would, and MLflow's "Creating initial MLflow
	// database tables" would appear more than once.
	var migrated, current, created, waited int
	for i, in := range instances {
		for _, e := range in.entries(t) {
			switch e["event"] {
			case eventSchemaMigrated:
				migrated++
				if e["schemaFrom"] != "" {
					t.Errorf("instance %d migrated from %v, want from an empty database", i, e["schemaFrom"])
				}
			case eventSchemaCurrent:
				current++
			case "schema-lock-wait":
				waited++
			}
			if msg, _ := e["message"].(string); strings.Contains(msg, "Creating initial MLflow database tables") {
				created++
			}
		}
	}
	t.Logf("schema migrated by %d instance(s), already current for %d, tables created %d time(s); %d instance(s) waited for the lock", migrated, current, created, waited)
	if migrated != 1 || current != 2 || created != 1 {
		t.Errorf("migrated %d, current %d, tables created %d times; want 1, 2, 1", migrated, current, created)
	}
	// The first to get the lock migrates an empty database for seconds; the others ask for the lock
	// meanwhile. Without the lock none would wait.
	if waited < 1 {
		t.Errorf("no instance waited for the schema lock")
	}

	conn, err := pgx.Connect(context.Background(), world.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions, defaults int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM alembic_version").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM experiments WHERE name = 'Default'").Scan(&defaults); err != nil {
		t.Fatal(err)
	}
	if versions != 1 || defaults != 1 {
		t.Errorf("%d alembic versions, %d Default experiments; want 1 and 1", versions, defaults)
	}
	// Every instance serves.
	for i, in := range instances {
		var out struct {
			ID string `json:"experiment_id"`
		}
		in.api(t, "POST", "/api/2.0/mlflow/experiments/create", map[string]any{"name": fmt.Sprintf("from-%d", i)}, &out)
	}

	t.Run("server exits non-zero when MLflow dies", func(t *testing.T) {
		in := instances[0]
		// Only MLflow's top process dies (the mlflow CLI, or uvicorn started directly): the server must
		// notice, and kill whatever runs below it, which would stay up on its own.
		procs := mlflowProcesses(t, in.PID())
		var cli []int
		for _, p := range procs {
			if p.PPID == in.PID() {
				cli = append(cli, p.PID)
			}
		}
		if len(cli) != 1 {
			t.Fatalf("MLflow processes %v, children of the server %v; want one top process", procs, cli)
		}
		_ = syscall.Kill(cli[0], syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code, err := in.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if code == 0 {
			t.Error("server exited 0 after MLflow died; Cloud Run would not replace the instance")
		}
		if !slices.ContainsFunc(in.Lines(), func(l string) bool { return strings.Contains(l, "MLflow exited on its own") }) {
			t.Error("no log line says MLflow exited")
		}
		assertGone(t, procs)
	})
}

// TestRestartKeepsRuns stops a server and starts another on the same database: every run is still there,
// and the second start finds the schema current.
func TestRestartKeepsRuns(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	first := startInstance(t, db)
	first.waitHealthy(t)

	var exp struct {
		ID string `json:"experiment_id"`
	}
	first.api(t, "POST", "/api/2.0/mlflow/experiments/create", map[string]any{"name": "restart"}, &exp)
	want := map[string]float64{}
	for i := range 3 {
		var run struct {
			Run struct {
				Info struct {
					RunID string `json:"run_id"`
				} `json:"info"`
			} `json:"run"`
		}
		first.api(t, "POST", "/api/2.0/mlflow/runs/create", map[string]any{"experiment_id": exp.ID, "start_time": time.Now().UnixMilli()}, &run)
		id := run.Run.Info.RunID
		first.api(t, "POST", "/api/2.0/mlflow/runs/log-metric", map[string]any{"run_id": id, "key": "loss", "value": float64(i) + 0.5, "timestamp": time.Now().UnixMilli()}, nil)
		first.api(t, "POST", "/api/2.0/mlflow/runs/update", map[string]any{"run_id": id, "status": "FINISHED"}, nil)
		want[id] = float64(i) + 0.5
	}
	stop(t, first)

	second := startInstance(t, db)
	second.waitHealthy(t)
	var found struct {
		Runs []struct {
			Info struct {
				RunID  string `json:"run_id"`
				Status string `json:"status"`
			} `json:"info"`
			Data struct {
				Metrics []struct {
					Key   string  `json:"key"`
					Value float64 `json:"value"`
				} `json:"metrics"`
			} `json:"data"`
		} `json:"runs"`
	}
	second.api(t, "POST", "/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{exp.ID}}, &found)
	got := map[string]float64{}
	for _, r := range found.Runs {
		for _, m := range r.Data.Metrics {
			if m.Key == "loss" && r.Info.Status == "FINISHED" {
				got[r.Info.RunID] = m.Value
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after restart: runs %v, want %v", got, want)
	}
	if !slices.ContainsFunc(second.Lines(), func(l string) bool { return strings.Contains(l, `"event":"`+eventSchemaCurrent+`"`) }) {
		t.Error("the second start did not find the schema current")
	}
}

// TestSIGTERMDuringUpload sends SIGTERM while two slow uploads (h2c and HTTP/1.1) stream through: the
// server stops accepting, both uploads complete with 200 and arrive whole, and the server exits 0.
func TestSIGTERMDuringUpload(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	in := startInstance(t, db)
	in.waitHealthy(t)

	// About 3 s each, well inside the default grace period of 7 s.
	const size, rate = 4 << 20, 1400 << 10
	type result struct {
		name   string
		status int
		err    error
		gen    *generator
	}
	results := make(chan result, 2)
	gens := map[string]*generator{
		"h2c":      newGenerator(size, 1, rate),
		"http/1.1": newGenerator(size, 2, rate),
	}
	for name, gen := range gens {
		client := httpClient
		if name == "h2c" {
			client = h2cClient()
		}
		go func() {
			req, _ := http.NewRequest("PUT", in.URL()+"/api/2.0/mlflow-artifacts/artifacts/slow/"+strings.ReplaceAll(name, "/", "")+".bin", gen)
			req.SetBasicAuth(in.user, in.pass)
			resp, err := client.Do(req)
			r := result{name: name, err: err, gen: gen}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.status = resp.StatusCode
			}
			results <- r
		}()
	}
	// SIGTERM once both are under way but far from done.
	for deadline := time.Now().Add(time.Minute); gens["h2c"].read.Load() < size/4 || gens["http/1.1"].read.Load() < size/4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("uploads not a quarter done within a minute: h2c %d, http/1.1 %d of %d bytes", gens["h2c"].read.Load(), gens["http/1.1"].read.Load(), size)
		}
	}
	mlflow := mlflowProcesses(t, in.PID())
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The server writes this line once its listener is closed.
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelDrain()
	if _, err := in.WaitForLine(drainCtx, "the draining line after SIGTERM", func(l string) bool { return strings.Contains(l, "draining in-flight requests") }); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", in.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the server still accepts connections after SIGTERM")
	}
	uploadsDone := time.After(time.Minute)
	for range 2 {
		var r result
		select {
		case r = <-results:
		case <-uploadsDone:
			t.Fatal("the uploads under way at SIGTERM did not finish within a minute")
		}
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("%s upload during shutdown: status %d, error %v", r.name, r.status, r.err)
			continue
		}
		if r.gen.read.Load() != size {
			t.Errorf("%s: only %d of %d bytes sent", r.name, r.gen.read.Load(), size)
		}
		sum, n := gcsSHA256(t, db+"/slow/"+strings.ReplaceAll(r.name, "/", "")+".bin")
		if n != size || sum != r.gen.sum() {
			t.Errorf("%s: object has %d bytes, sha256 %s; sent %s", r.name, n, sum, r.gen.sum())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := in.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	assertGone(t, mlflow)
}

// TestLocalRunWithSQLite runs the server as README.md describes for a local run: SQLite and a local
// artifacts directory, no lock, the schema still upgraded.
func TestLocalRunWithSQLite(t *testing.T) {
	needWorld(t)
	dir := t.TempDir()
	s := testenv.NewServer(t, world.bin,
		"DEPLOY_MLFLOW_BACKEND_STORE_URI=sqlite:///"+filepath.Join(dir, "mlflow.db"),
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION="+filepath.Join(dir, "artifacts"),
		"DEPLOY_MLFLOW_AUTH=iam",
		"DEPLOY_MLFLOW_MLFLOW_COMMAND="+world.mlflow,
		"MLFLOW_DISABLE_TELEMETRY=true",
		"MLFLOW_WORKERS=1",
	)
	in := &instance{Server: s}
	in.waitHealthy(t)
	req, _ := http.NewRequest("PUT", in.URL()+"/api/2.0/mlflow-artifacts/artifacts/0/hello.txt", strings.NewReader("hello"))
	// auth: iam passes requests through; Cloud Run has checked the caller.
	req.Header.Set("Authorization", "Bearer id-token-checked-by-cloud-run")
	if status, body := in.do(t, nil, req); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "artifacts", "0", "hello.txt")); err != nil || string(b) != "hello" {
		t.Errorf("artifact on disk: %q, %v", b, err)
	}
	if !slices.ContainsFunc(in.Lines(), func(l string) bool { return strings.Contains(l, `"event":"`+eventSchemaUpgraded+`"`) }) {
		t.Error("no schema-upgraded event")
	}
}

// TestRefusesToStart runs the binary with configurations that must not serve: it exits non-zero at once
// and names the variable to fix. Auth never fails open.
func TestRefusesToStart(t *testing.T) {
	needWorld(t)
	base := []string{
		"DEPLOY_MLFLOW_BACKEND_STORE_URI=sqlite:///" + filepath.Join(t.TempDir(), "never.db"),
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION=" + t.TempDir(),
		"DEPLOY_MLFLOW_MLFLOW_COMMAND=" + world.mlflow,
	}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"basic auth without credentials", nil, "DEPLOY_MLFLOW_USERNAME and DEPLOY_MLFLOW_PASSWORD are not both set"},
		{"basic auth with a user only", []string{"DEPLOY_MLFLOW_USERNAME=alice"}, "DEPLOY_MLFLOW_PASSWORD"},
		{"short password", []string{"DEPLOY_MLFLOW_USERNAME=alice", "DEPLOY_MLFLOW_PASSWORD=elevenchars"}, "DEPLOY_MLFLOW_PASSWORD is shorter than 12 characters"},
		{"unknown auth mode", []string{"DEPLOY_MLFLOW_AUTH=open"}, `DEPLOY_MLFLOW_AUTH=\"open\" is not an auth mode`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testenv.NewServer(t, world.bin, append(slices.Clone(base), tt.env...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, err := s.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out := strings.Join(s.Lines(), "\n")
			if code == 0 || !strings.Contains(out, tt.want) || !strings.Contains(out, `"severity":"CRITICAL"`) {
				t.Errorf("exit %d, output:\n%s\nwant non-zero and %q", code, out, tt.want)
			}
		})
	}
}

// TestWrongDatabasePassword: a refused login stops the start at once, with the variable to fix, and the
// password appears nowhere in the output.
func TestWrongDatabasePassword(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	wrong := "not-the-" + world.pg.Password()
	in := startInstance(t, db, "DEPLOY_MLFLOW_BACKEND_STORE_URI="+strings.Replace(backendURI(db), world.pg.Password(), wrong, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := in.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Join(in.Lines(), "\n")
	if code == 0 || !strings.Contains(out, "DEPLOY_MLFLOW_BACKEND_STORE_URI") || !strings.Contains(out, `"severity":"CRITICAL"`) {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, in.pass) {
		t.Errorf("a password in the output:\n%s", out)
	}
}

// TestSchemaLockWaitTimeout: an instance that cannot get the schema lock within
// DEPLOY_MLFLOW_MIGRATION_TIMEOUT (here a session that never lets go holds it) logs the timeout and exits
// non-zero, rather than waiting until Cloud Run's startup probe gives up.
func TestSchemaLockWaitTimeout(t *testing.T) {
	needWorld(t)
	db := newDatabase(t)
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, world.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", schemaLockKey); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	in := startInstance(t, db, "DEPLOY_MLFLOW_MIGRATION_TIMEOUT=3s")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	code, err := in.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out := strings.Join(in.Lines(), "\n")
	if code == 0 || took < 3*time.Second {
		t.Errorf("exit %d after %v, want non-zero after the 3s timeout", code, took)
	}
	for _, want := range []string{`"event":"schema-lock-wait"`, `"event":"schema-timeout"`, "DEPLOY_MLFLOW_MIGRATION_TIMEOUT", `"severity":"CRITICAL"`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in the output:\n%s", want, out)
		}
	}
	if strings.Contains(out, "started MLflow") {
		t.Errorf("MLflow started without the schema step:\n%s", out)
	}
}

// stop sends SIGTERM and expects a clean exit, with none of MLflow's processes left.
func stop(t *testing.T, in *instance) {
	t.Helper()
	mlflow := mlflowProcesses(t, in.PID())
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, err := in.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	assertGone(t, mlflow)
}
