package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// world is what every group shares: a scratch directory, the MLflow virtualenv, the server program and
// one PostgreSQL.
type world struct {
	dir    string
	cache  string // kept between runs: generated layers, the crane binary
	venv   string
	server string
	pg     *testenv.Postgres
}

type group struct {
	name string
	run  func(ctx context.Context, w *world, r *report) error
}

var groups = []group{
	{"coldstart", coldStart},
	{"registry", registryTraffic},
	{"action", actionOverhead},
	{"requestpath", requestPath},
	{"actionimage", actionImage},
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == rusageFlag {
		rusageMain(os.Args[2:])
		return
	}
	out := flag.String("out", "BENCHMARKS.md", "where to write the report")
	only := flag.String("groups", "", "comma-separated groups to run (default all): coldstart,registry,action,requestpath,actionimage")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, out, only string) error {
	start := time.Now()
	r := &report{started: start, command: "make bench"}
	if only != "" {
		r.command = "go run ./internal/bench -groups " + only
	}
	w, cleanup, err := newWorld(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	for _, g := range groups {
		if only != "" && !strings.Contains(","+only+",", ","+g.name+",") {
			continue
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s...\n", g.name)
		if err := g.run(ctx, w, r); err != nil {
			// One group's failure leaves the others' figures standing, and says so in the report.
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", g.name, err)
			r.section(g.name+": FAILED", "go run ./internal/bench -groups "+g.name, 0).add("\n```\n%v\n```", err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", g.name, time.Since(t).Round(time.Second))
	}
	if err := os.WriteFile(out, []byte(r.markdown(time.Since(start))), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s in %s\n", out, time.Since(start).Round(time.Second))
	return nil
}

func newWorld(ctx context.Context) (*world, func(), error) {
	dir, err := os.MkdirTemp("", "deploy-mlflow-bench-")
	if err != nil {
		return nil, nil, err
	}
	w := &world{dir: dir}
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		os.RemoveAll(dir)
	}
	fail := func(err error) (*world, func(), error) { cleanup(); return nil, nil, err }
	cache, err := os.UserCacheDir()
	if err != nil {
		return fail(err)
	}
	w.cache = filepath.Join(cache, "deploy-mlflow", "bench")
	if err := os.MkdirAll(w.cache, 0o755); err != nil {
		return fail(err)
	}
	if w.venv, err = testenv.Venv(); err != nil {
		return fail(err)
	}
	if w.server, err = testenv.BuildServer(ctx, dir); err != nil {
		return fail(err)
	}
	if w.pg, err = testenv.StartPostgres(ctx, filepath.Join(dir, "postgres")); err != nil {
		return fail(err)
	}
	stops = append(stops, func() { _ = w.pg.Stop() })
	return w, cleanup, nil
}

func moduleRoot() string { return testenv.ModuleRoot() }

// mlflow is the virtualenv's mlflow executable.
func (w *world) mlflow() string { return filepath.Join(w.venv, "bin", "mlflow") }

// backendURI is the SQLAlchemy URL of database db, as the action's secret holds it.
func (w *world) backendURI(db string) string {
	return strings.Replace(w.pg.URL(db), "postgresql://", "postgresql+psycopg2://", 1)
}

// subdir makes a directory under the scratch directory.
func (w *world) subdir(name string) (string, error) {
	d := filepath.Join(w.dir, name)
	return d, os.MkdirAll(d, 0o755)
}
