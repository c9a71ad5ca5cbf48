package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// The shutdown after SIGTERM must end before Cloud Run's SIGKILL, 10 s later: the grace period for in-flight
// requests, then up to mlflowStopTimeout for MLflow to exit after SIGTERM, then up to relayDrainTimeout
// for its last lines to reach the log, and a margin.
const (
	cloudRunStopBudget = 10 * time.Second
	mlflowStopTimeout  = 1500 * time.Millisecond
	relayDrainTimeout  = time.Second
	shutdownMargin     = 500 * time.Millisecond
	// maxShutdownGrace is 7 s.
	maxShutdownGrace = cloudRunStopBudget - mlflowStopTimeout - relayDrainTimeout - shutdownMargin
)

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
	for _, w := range cfg.warnings {
		log.warn(w)
	}
	fail := func(err error) error {
		log.log(sevCritical, err.Error())
		return err
	}

	var auth *basicAuth
	if cfg.auth == serverenv.AuthBasic {
		auth = newBasicAuth(cfg.username, cfg.password)
	}
	h := newHandler(auth)
	// With auth mlflow, MLflow checks the credentials and the throttle counts its 401s (see handler).
	if auth != nil || cfg.auth == serverenv.AuthMLflow {
		h.guesses = newThrottle(guessLimit, guessWindow, guessClients)
		h.guesses.onBlock = func(client string, failures int, until time.Time) {
			log.warn("too many failed logins from "+client+": refusing its logins with 429 until the window has passed",
				"event", "login-throttled", "client", client, "failures", failures, "until", until.UTC().Format(time.RFC3339))
		}
	}
	srv := newHTTPServer(log.requests(h), defaultHTTPLimits, log.stdLogger())
	// Listen before the slow steps, so the startup probe gets a clear 503 rather than a refused connection.
	tcp, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		return fail(fmt.Errorf("listen on %s=%s: %w", serverenv.Port, cfg.port, err))
	}
	ln := &closeNotifier{Listener: tcp, closed: make(chan struct{})}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.info("listening on port "+cfg.port, "auth", cfg.auth)

	// shutdown stops accepting connections and gives in-flight requests up to grace to finish. When
	// draining is set, it is logged once the listener is closed, so that whoever reads it can rely on
	// new connections being refused.
	shutdown := func(grace time.Duration, draining string) {
		h.probe.shutdown()
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(sctx) }()
		// Shutdown closes the listener before it waits for the connections.
		<-ln.closed
		if draining != "" {
			log.info(draining, "grace", grace)
		}
		if err := <-done; err != nil {
			log.warn("grace period over; closing the connections still open", "grace", grace)
			_ = srv.Close()
		}
	}

	mlAuth, err := newMLflowAuth(cfg)
	if err != nil {
		shutdown(0, "")
		return fail(err)
	}
	defer mlAuth.close()
	schemaDeadline := time.Now().Add(cfg.migrationTimeout)
	err = upgradeSchema(ctx, log, cfg, mlflowEnv(e.environ, cfg, 0))
	var storeEnv []string
	if err == nil && ctx.Err() == nil {
		storeEnv, err = prepareStore(ctx, log, cfg, mlAuth, mlAuth.environ(mlflowEnv(e.environ, cfg, 0)), schemaDeadline)
	}
	if ctx.Err() != nil {
		// SIGTERM came during the schema step: whatever its outcome, MLflow would only be stopped again.
		log.info("stopped during the schema upgrade; MLflow not started")
		shutdown(cfg.shutdownGrace, "")
		return nil
	}
	if err != nil {
		shutdown(0, "")
		return fail(fmt.Errorf("cannot bring the database schema up to date: %w", err))
	}

	// The port is picked just before MLflow starts, so that nothing else takes it in between.
	port, err := freeLoopbackPort()
	if err != nil {
		shutdown(0, "")
		return fail(err)
	}
	mlflowAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// Here prepareStore has succeeded: in auth mode mlflow the auth tables are at head and the admin is set up.
	env := append(mlAuth.environ(mlflowEnv(e.environ, cfg, port)), storeEnv...)
	h.gate = newStoreGate(env)
	mlflow, err := startMLflowServer(log, cfg.mlflow, mlAuth.serverArgs(), env, mlAuth != nil)
	if err != nil {
		shutdown(0, "")
		return fail(err)
	}
	log.info("started MLflow", "pid", mlflow.cmd.Process.Pid, "mlflow", mlflowAddr)
	proxy := newProxy(mlflowAddr, cfg.auth == serverenv.AuthBasic, log)
	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go func() {
		start := time.Now()
		if pollHealth(healthCtx, mlflowAddr) == nil && warmUp(healthCtx, log, mlflowAddr) == nil {
			h.setMLflow(proxy)
			log.info("MLflow is ready", "event", "ready", "startup", time.Since(start))
		}
	}()

	select {
	case <-ctx.Done():
		shutdown(cfg.shutdownGrace, "SIGTERM: stopped accepting connections; draining in-flight requests")
		stopHealth()
		mlflow.stop(mlflowStopTimeout)
		log.info("stopped")
		return nil
	case <-mlflow.done:
		h.setMLflow(nil)
		stopHealth()
		mlflow.waitRelayed(relayDrainTimeout)
		err := fmt.Errorf("MLflow exited on its own (%v); stopping so that Cloud Run replaces this instance", mlflow.exitError())
		// In-flight requests cannot complete without MLflow.
		shutdown(0, "")
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

// closeNotifier is a listener that closes its channel once it is closed.
type closeNotifier struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeNotifier) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}
