package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// mlflowStopTimeout is how long MLflow gets to exit after SIGTERM once the server has drained; the server's
// grace period and this together fit in Cloud Run's 10 s between SIGTERM and SIGKILL.
const mlflowStopTimeout = 1500 * time.Millisecond

// run serves until ctx ends (SIGTERM) or MLflow dies. It returns nil after an orderly shutdown, and an
// error, already logged, when the server cannot start or MLflow exits on its own, so that Cloud Run
// replaces the instance.
func run(ctx context.Context, e env, stdout io.Writer) error {
	cfg, cfgErr := loadConfig(e)
	log := newLogger(stdout, newRedactor(cfg.secrets()...))
	if cfgErr != nil {
		log.log(sevCritical, "refusing to start: "+cfgErr.Error())
		return cfgErr
	}
	fail := func(err error) error {
		log.log(sevCritical, err.Error())
		return err
	}

	port, err := freeLoopbackPort()
	if err != nil {
		return fail(err)
	}
	mlflowAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	childEnv := mlflowEnv(e.environ, cfg, port)

	var ready atomic.Bool
	h := &handler{ready: &ready, proxy: newProxy(mlflowAddr, cfg.auth == serverenv.AuthBasic, log)}
	if cfg.auth == serverenv.AuthBasic {
		h.auth = newBasicAuth(cfg.username, cfg.password)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	// Cloud Run speaks HTTP/2 to the container without TLS (h2c, prior knowledge) when the port is named
	// h2c; that lifts its 32 MiB limit on HTTP/1 request bodies.
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           log.requests(h),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.stdLogger(sevWarning),
	}
	// Listen before the slow steps, so the startup probe gets a clear 503 rather than a refused connection.
	ln, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		return fail(fmt.Errorf("listen on %s=%s: %w", serverenv.Port, cfg.port, err))
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.info("listening on port "+cfg.port, "auth", cfg.auth, "mlflow", mlflowAddr)

	shutdown := func(grace time.Duration) {
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.warn("grace period over; closing the connections still open", "grace", grace)
			_ = srv.Close()
		}
	}

	if err := upgradeSchema(ctx, log, cfg, childEnv); err != nil {
		if ctx.Err() != nil {
			log.info("stopped during the schema upgrade")
			shutdown(cfg.shutdownGrace)
			return nil
		}
		shutdown(0)
		return fail(fmt.Errorf("cannot bring the database schema up to date: %w", err))
	}

	mlflow, err := startChild(log, cfg.mlflow, []string{"server"}, childEnv)
	if err != nil {
		shutdown(0)
		return fail(err)
	}
	log.info("started MLflow", "pid", mlflow.cmd.Process.Pid, "mlflow", mlflowAddr)
	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go func() {
		start := time.Now()
		if pollHealth(healthCtx, mlflowAddr) == nil {
			ready.Store(true)
			log.info("MLflow is ready", "event", "ready", "startup", time.Since(start))
		}
	}()

	select {
	case <-ctx.Done():
		log.info("SIGTERM: draining in-flight requests", "grace", cfg.shutdownGrace)
		shutdown(cfg.shutdownGrace)
		stopHealth()
		mlflow.stop(mlflowStopTimeout)
		log.info("stopped")
		return nil
	case <-mlflow.done:
		ready.Store(false)
		stopHealth()
		mlflow.waitRelayed(time.Second)
		err := fmt.Errorf("MLflow exited on its own (%v); stopping so that Cloud Run replaces this instance", mlflow.exitError())
		// In-flight requests cannot complete without MLflow.
		shutdown(0)
		mlflow.stop(0)
		return fail(err)
	case err := <-serveErr:
		mlflow.stop(mlflowStopTimeout)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fail(fmt.Errorf("serving port %s: %w", cfg.port, err))
	}
}
