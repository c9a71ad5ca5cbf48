package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// newDatabase creates an empty database named after the test.
func newDatabase(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := world.pg.CreateDatabase(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
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
		client = http.DefaultClient
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

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as Cloud Run does to a port named h2c.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
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

// peakRSS reads a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// mlflowProcesses lists MLflow's processes while the server runs, with their start times: every
// descendant of the server, and every member of a process group that a child of the server leads (the
// mlflow CLI leads MLflow's), so that a process that left the tree is listed too.
func mlflowProcesses(t *testing.T, serverPID int) map[int]uint64 {
	t.Helper()
	stats := map[int]procStat{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.state != 'Z' {
			stats[pid] = st
		}
	}
	out := map[int]uint64{}
	for pid, st := range stats {
		below := false
		for p, i := st.ppid, 0; p > 1 && i < 50; p, i = stats[p].ppid, i+1 {
			if p == serverPID {
				below = true
				break
			}
		}
		if leader, ok := stats[st.pgrp]; below || (ok && leader.ppid == serverPID && st.pgrp != serverPID) {
			out[pid] = st.start
		}
	}
	return out
}

// assertMLflowGone checks that every process of a mlflowProcesses snapshot has ended, once the server has
// exited. Those processes belong to PID 1 once the server is gone, so they are followed by PID (and start
// time), not by ancestry.
func assertMLflowGone(t *testing.T, snapshot map[int]uint64) {
	t.Helper()
	if len(snapshot) == 0 {
		t.Fatal("no MLflow process in the snapshot")
	}
	pids := slices.Collect(maps.Keys(snapshot))
	for _, pid := range waitGone(pids, snapshot, 3*time.Second) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("MLflow process %d (%s) outlived the server", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
}
