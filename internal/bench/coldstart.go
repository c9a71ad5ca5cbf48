package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

const (
	coldRuns   = 3
	benchUser  = "bench"
	benchPass  = "bench-password-0123456789"
	searchPath = "/api/2.0/mlflow/experiments/search?max_results=1"
)

// coldStart times process start to the first authenticated API call answering 200, for the server
// program and for stock `mlflow server` on the same virtualenv, database and artifacts directory: on a
// current schema, and on a fresh database that each start must migrate.
func coldStart(ctx context.Context, w *world, r *report) error {
	s := r.section("1. Cold start", "go run ./internal/bench -groups coldstart", coldRuns)
	s.add("\nFrom starting the process to the first `GET %s` with basic auth answering 200, polled every 10 ms. "+
		"Ours: the server program (testenv.BuildServer) with the env the action sets (%s=basic, %s, %s, %s, %s). "+
		"Stock: `%s server` with MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_SERVE_ARTIFACTS=true, "+
		"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, MLFLOW_HOST, MLFLOW_PORT, and its default workers; it checks no "+
		"credentials (the basic auth header is ignored). Runs alternate ours/stock.",
		searchPath, serverenv.Auth, serverenv.Username, serverenv.Password, serverenv.BackendStoreURI,
		serverenv.ArtifactsDestination, w.mlflow())
	if err := w.pg.CreateDatabase(ctx, "cold"); err != nil {
		return err
	}
	up := exec.CommandContext(ctx, w.mlflow(), "db", "upgrade", w.backendURI("cold"))
	if out, err := up.CombinedOutput(); err != nil {
		return fmt.Errorf("mlflow db upgrade: %w\n%s", err, out)
	}
	s.table("schema", "ours (median)", "stock (median)", "ours/stock", "target", "result", "ours, each run", "stock, each run")
	var profiles []string
	for _, mode := range []string{"current", "migrate"} {
		var ours, stock []float64
		var profile string
		for i := range coldRuns {
			db := "cold"
			if mode == "migrate" {
				db = fmt.Sprintf("fresh_%d", i)
				for _, d := range []string{db + "_ours", db + "_stock"} {
					if err := w.pg.CreateDatabase(ctx, d); err != nil {
						return err
					}
				}
			}
			oursDB, stockDB := db, db
			if mode == "migrate" {
				oursDB, stockDB = db+"_ours", db+"_stock"
			}
			d, p, err := coldOurs(ctx, w, oursDB)
			if err != nil {
				return err
			}
			ours, profile = append(ours, d), p
			if d, err = coldStock(ctx, w, stockDB); err != nil {
				return err
			}
			stock = append(stock, d)
		}
		target, result := "-", "-"
		if mode == "current" {
			target, result = "≤ 0.5x", verdict(median(ours) <= 0.5*median(stock))
		}
		s.row(mode, fmtSecs(median(ours)), fmtSecs(median(stock)), ratio(median(ours), median(stock)), target, result, list(ours), list(stock))
		profiles = append(profiles, fmt.Sprintf("\nPhase profile of our server's last %s-schema start (its JSON log; seconds from process start):\n\n```\n%s```", mode, profile))
	}
	for _, p := range profiles {
		s.add("%s", p)
	}
	return nil
}

func list(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

// coldOurs starts the server program on database db and returns its cold start in seconds and the
// phase profile from its log.
func coldOurs(ctx context.Context, w *world, db string) (float64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	artifacts := filepath.Join(w.dir, "artifacts")
	env := []string{
		"PATH=" + filepath.Join(w.venv, "bin") + ":" + os.Getenv("PATH"),
		serverenv.Auth + "=" + serverenv.AuthBasic,
		serverenv.Username + "=" + benchUser,
		serverenv.Password + "=" + benchPass,
		serverenv.BackendStoreURI + "=" + w.backendURI(db),
		serverenv.ArtifactsDestination + "=" + artifacts,
		serverenv.MLflowCommand + "=" + w.mlflow(),
		"MLFLOW_DISABLE_TELEMETRY=true",
	}
	start := time.Now()
	srv, err := testenv.StartServer(w.server, env)
	if err != nil {
		return 0, "", err
	}
	defer srv.Stop()
	end, err := waitOK(ctx, srv.URL()+searchPath, benchUser, benchPass, srv.Exited())
	if err != nil {
		return 0, "", fmt.Errorf("our server on database %s: %w; its output:\n%s", db, err, strings.Join(srv.Lines(), "\n"))
	}
	return secs(end.Sub(start)), phases(srv.Lines(), start, end), nil
}

// phases lists the server's own log lines with their time since start.
func phases(lines []string, start, end time.Time) string {
	var b strings.Builder
	for _, l := range lines {
		var e struct {
			Time        time.Time       `json:"time"`
			Message     string          `json:"message"`
			Source      string          `json:"source"`
			HTTPRequest json.RawMessage `json:"httpRequest"`
		}
		// MLflow's relayed output carries a source, the request log an httpRequest: neither is a phase.
		if json.Unmarshal([]byte(l), &e) != nil || e.Source != "" || e.HTTPRequest != nil || e.Time.IsZero() {
			continue
		}
		if e.Time.After(end.Add(time.Second)) {
			break
		}
		msg := e.Message
		if len(msg) > 90 {
			msg = msg[:90] + "..."
		}
		fmt.Fprintf(&b, "%7.3f  %s\n", e.Time.Sub(start).Seconds(), msg)
	}
	fmt.Fprintf(&b, "%7.3f  (first authenticated API call answered 200)\n", end.Sub(start).Seconds())
	return b.String()
}

// coldStock starts stock `mlflow server` on database db and returns its cold start in seconds.
func coldStock(ctx context.Context, w *world, db string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	port, err := testenv.FreePort()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(w.mlflow(), "server")
	cmd.Env = append(os.Environ(),
		"MLFLOW_BACKEND_STORE_URI="+w.backendURI(db),
		"MLFLOW_ARTIFACTS_DESTINATION="+filepath.Join(w.dir, "artifacts"),
		"MLFLOW_SERVE_ARTIFACTS=true",
		"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
		"MLFLOW_HOST=127.0.0.1",
		"MLFLOW_PORT="+strconv.Itoa(port),
		"MLFLOW_DISABLE_TELEMETRY=true",
	)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	c, err := startChild(cmd)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	end, err := waitOK(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", port, searchPath), benchUser, benchPass, c.done)
	if err != nil {
		c.stop() // out is written until the process has exited
		return 0, fmt.Errorf("stock mlflow server on database %s: %w; its output:\n%s", db, err, out.String())
	}
	return secs(end.Sub(start)), nil
}
