package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// The real parts that the end-to-end tests share: one PostgreSQL and one fake GCS per test binary (each
// test gets its own database and bucket prefix), the MLflow virtualenv, and the server binary built once.
// They start on first use, so the unit tests run without them.
var world struct {
	once   sync.Once
	err    error
	dir    string
	pg     *testenv.Postgres
	gcs    *testenv.FakeGCS
	bin    string
	mlflow string
	python string
}

const bucket = "mlflow-artifacts"

func TestMain(m *testing.M) {
	code := m.Run()
	if world.pg != nil {
		_ = world.pg.Stop()
	}
	if world.gcs != nil {
		world.gcs.Stop()
	}
	if world.dir != "" {
		_ = os.RemoveAll(world.dir)
	}
	os.Exit(code)
}

func setupWorld() error {
	var err error
	if world.mlflow, err = testenv.MLflowCommand(); err != nil {
		return err
	}
	if world.python, err = testenv.Python(); err != nil {
		return err
	}
	if world.dir, err = os.MkdirTemp("", "server-test-"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if world.bin, err = testenv.BuildServer(ctx, world.dir); err != nil {
		return err
	}
	if world.pg, err = testenv.StartPostgres(ctx, filepath.Join(world.dir, "pg")); err != nil {
		return err
	}
	world.gcs, err = testenv.StartFakeGCS(ctx, bucket)
	return err
}

// needWorld returns once the shared parts run, or fails the test (with the message to run internal/testenv/setup.sh
// when the virtualenv is missing).
func needWorld(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL, MLflow and fake GCS; skipped with -short")
	}
	world.once.Do(func() { world.err = setupWorld() })
	if world.err != nil {
		t.Fatal(world.err)
	}
}

// instance is one server under test with what a client needs to talk to it.
type instance struct {
	*testenv.Server
	user, pass string
	db         string // database name, also the artifacts' prefix in the bucket
	dbPassword string
}

// newDatabase creates an empty database for the test, dropped when it ends. The name is the test's, made
// unique (the tests share one PostgreSQL across -count runs) and kept within PostgreSQL's 63 bytes.
func newDatabase(t *testing.T) string {
	t.Helper()
	name := databaseName(t.Name(), hex.EncodeToString(randomBytes(4)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := world.pg.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Registered before the test starts its servers, so this runs after they have stopped; FORCE
		// closes any session that a killed one left.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := world.pg.DropDatabase(ctx, name); err != nil {
			t.Error(err)
		}
	})
	return name
}

// maxIdentifier is PostgreSQL's limit on a name, in bytes (NAMEDATALEN - 1); longer ones are truncated,
// which could make two names one.
const maxIdentifier = 63

// databaseName is a lower-case database name from a test name and a unique suffix.
func databaseName(test, suffix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()[:min(b.Len(), maxIdentifier-len(suffix)-1)] + "_" + suffix
}

// backendURI is the database's URL in the form the action puts in the service spec (SQLAlchemy, with
// the driver named).
func backendURI(db string) string {
	return strings.Replace(world.pg.URL(db), "postgresql://", "postgresql+psycopg2://", 1)
}

// startInstance runs the server binary against database db with basic auth; extra env (KEY=value)
// overrides the defaults.
func startInstance(t *testing.T, db string, extra ...string) *instance {
	t.Helper()
	in := &instance{user: "alice", pass: "pw-" + hex.EncodeToString(randomBytes(10)), db: db, dbPassword: world.pg.Password()}
	env := []string{
		"DEPLOY_MLFLOW_BACKEND_STORE_URI=" + backendURI(db),
		"DEPLOY_MLFLOW_ARTIFACTS_DESTINATION=gs://" + bucket + "/" + db,
		"DEPLOY_MLFLOW_USERNAME=" + in.user,
		"DEPLOY_MLFLOW_PASSWORD=" + in.pass,
		"DEPLOY_MLFLOW_MLFLOW_COMMAND=" + world.mlflow,
		"STORAGE_EMULATOR_HOST=" + world.gcs.URL(),
		"GOOGLE_CLOUD_PROJECT=test-project",
		// This machine has no internet; MLflow's usage telemetry would only time out.
		"MLFLOW_DISABLE_TELEMETRY=true",
	}
	in.Server = testenv.NewServer(t, world.bin, append(env, extra...)...)
	return in
}

func (in *instance) waitHealthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := in.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}

// do sends a request with the instance's credentials (unless the caller set Authorization) and returns
// the status and body.
func (in *instance) do(t *testing.T, client *http.Client, req *http.Request) (int, []byte) {
	t.Helper()
	if req.Header.Get("Authorization") == "" {
		req.SetBasicAuth(in.user, in.pass)
	}
	if client == nil {
		client = httpClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// api calls MLflow's REST API through the server with a JSON body and decodes the JSON answer into out.
func (in *instance) api(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, in.URL()+path, r)
	req.Header.Set("Content-Type", "application/json")
	status, b := in.do(t, nil, req)
	if status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// entries parses the server's output, failing on any line that is not a JSON object.
func (in *instance) entries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range in.Lines() {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		out = append(out, e)
	}
	return out
}

// requestTimeout bounds every request of the end-to-end tests, the 100 MiB upload included: a server that
// accepts a request and never answers fails the test rather than hanging it.
const requestTimeout = 2 * time.Minute

// httpClient is the tests' HTTP/1.1 client.
var httpClient = &http.Client{Timeout: requestTimeout}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as Cloud Run does to a port named h2c.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: requestTimeout}
}

// generator produces n deterministic pseudo-random bytes without holding them, hashing what it hands out.
type generator struct {
	src  io.Reader
	left int64
	hash hash.Hash
	read atomic.Int64
	rate int64 // bytes per second for slow uploads; 0 for full speed
}

func newGenerator(n int64, seed uint64, rate int64) *generator {
	var s [32]byte
	s[0] = byte(seed)
	return &generator{src: rand.NewChaCha8(s), left: n, hash: sha256.New(), rate: rate}
}

func (g *generator) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, _ := g.src.Read(p)
	g.hash.Write(p[:n])
	g.left -= int64(n)
	g.read.Add(int64(n))
	if g.rate > 0 {
		time.Sleep(time.Duration(int64(n) * int64(time.Second) / g.rate))
	}
	return n, nil
}

func (g *generator) sum() string { return hex.EncodeToString(g.hash.Sum(nil)) }

// gcsSHA256 hashes an object in the fake GCS as a stream.
func gcsSHA256(t *testing.T, name string) (string, int64) {
	t.Helper()
	r, err := world.gcs.Open(bucket, name)
	if err != nil {
		names, _ := world.gcs.ObjectNames(bucket, "")
		t.Fatalf("%v; objects: %q", err, names)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// peakRSS reads a process's peak resident set size in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := testenv.PeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// mlflowProcesses lists MLflow's processes while the server runs: every descendant of the server, and
// every member of a process group that a child of the server leads (the mlflow CLI leads MLflow's), so
// that a process that left the tree is listed too.
func mlflowProcesses(t *testing.T, serverPID int) []testenv.Proc {
	t.Helper()
	procs, err := testenv.Procs()
	if err != nil {
		t.Fatal(err)
	}
	var out []testenv.Proc
	for pid, p := range procs {
		if !p.Alive() {
			continue
		}
		leader, ok := procs[p.PGRP]
		if testenv.Below(procs, pid, serverPID) || (ok && leader.PPID == serverPID && p.PGRP != serverPID) {
			out = append(out, p)
		}
	}
	return out
}

// assertGone checks that every process in procs ends within 3 s, once the server has exited. Those
// processes belong to PID 1 once the server is gone, so they are followed by PID and start time, not by
// ancestry.
func assertGone(t *testing.T, procs []testenv.Proc) {
	t.Helper()
	if len(procs) == 0 {
		t.Fatal("no MLflow process to follow")
	}
	for _, p := range testenv.WaitGone(procs, 3*time.Second) {
		t.Errorf("MLflow process %d (%s) outlived the server", p.PID, testenv.Cmdline(p.PID))
	}
}

// TestDatabaseName: names fit PostgreSQL's limit whole, so the suffix that makes them unique survives.
func TestDatabaseName(t *testing.T) {
	t.Parallel()
	tests := []struct{ test, want string }{
		{"TestServer", "testserver_0a1b2c3d"},
		{"TestServer/auth/no colon", "testserver_auth_no_colon_0a1b2c3d"},
		{"Test" + strings.Repeat("X", 80), "test" + strings.Repeat("x", 50) + "_0a1b2c3d"},
	}
	for _, tt := range tests {
		got := databaseName(tt.test, "0a1b2c3d")
		if got != tt.want || len(got) > maxIdentifier {
			t.Errorf("databaseName(%q) = %q (%d bytes), want %q", tt.test, got, len(got), tt.want)
		}
	}
}
