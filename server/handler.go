package main

import (
	"context"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// handler is what the server answers on $PORT: the health path itself, everything else after the auth and
// origin checks through the proxy to MLflow.
type handler struct {
	// auth is nil with auth iam, where Cloud Run has checked the caller already, and with auth mlflow,
	// where MLflow checks the credentials it is passed.
	auth *basicAuth
	// mlflow is the proxy to MLflow once MLflow has answered its own /health; nil before that and after
	// MLflow exits.
	mlflow atomic.Pointer[httputil.ReverseProxy]
	// probe answers gRPC health checks; nil in tests that need none.
	probe *grpcHealth
	// guesses throttles clients that keep failing basic auth: the server's own check, or with auth mlflow
	// MLflow's (see proxyCounted); nil for none.
	guesses *throttle
	// gate bounds the requests that use MLflow's tracking store at once (see storeGate); nil for no bound.
	// It is set before the first setMLflow, whose atomic store publishes it.
	gate storeGate
}

func newHandler(auth *basicAuth) *handler {
	return &handler{auth: auth, probe: newGRPCHealth()}
}

// setMLflow makes proxy the way to MLflow, or with nil says MLflow is gone; both health answers follow.
func (h *handler) setMLflow(proxy *httputil.ReverseProxy) {
	h.mlflow.Store(proxy)
	if h.probe != nil {
		h.probe.serving(proxy != nil)
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The gRPC probe carries no credentials either.
	if h.probe != nil && isGRPCHealth(r) {
		h.probe.srv.ServeHTTP(w, r)
		return
	}
	if isHealth(r) {
		h.health(w)
		return
	}
	if h.auth != nil && !h.authorized(w, r) {
		return
	}
	if reason := crossOriginWrite(r.Method, r.Host, r.Header.Values("Origin"), r.Header.Get("Sec-Fetch-Site")); reason != "" {
		http.Error(w, "Forbidden: cross-origin request refused: "+reason+". Use the MLflow UI at the address you are writing to, or a client that sends no Origin.", http.StatusForbidden)
		return
	}
	proxy := h.mlflow.Load()
	if proxy == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "MLflow is starting; retry shortly.", http.StatusServiceUnavailable)
		return
	}
	if h.gate != nil && usesStore(r) {
		if !h.gate.enter(r.Context()) {
			return // the client went away while it waited
		}
		defer h.gate.leave()
	}
	if h.auth == nil && h.guesses != nil && r.Header.Get("Authorization") != "" {
		h.proxyCounted(proxy, w, r)
		return
	}
	proxy.ServeHTTP(w, r)
}

// authorized checks the basic credentials and, when they are not accepted, answers. A request without
// an Authorization header is not a guess (browsers send one only after the challenge) and is not counted;
// one with credentials from a client that has failed too often gets 429, whatever it carries.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	header := r.Header.Get("Authorization")
	if header == "" {
		unauthorized(w)
		return false
	}
	ok := h.auth.allowed(header)
	if h.guesses != nil {
		if wait := h.guesses.attempt(clientKey(r), ok); wait > 0 {
			tooManyGuesses(w, wait)
			return false
		}
	}
	if !ok {
		unauthorized(w)
	}
	return ok
}

// isHealth reports whether r is for the health path, exactly as written: any other spelling (a trailing
// slash, a doubled slash, dot segments, another case, percent-encoding) is an ordinary request and needs
// credentials. Every method is answered there; the probe uses GET.
func isHealth(r *http.Request) bool {
	return r.URL.Path == serverenv.HealthPath && r.URL.RawPath == ""
}

// health answers 200 once MLflow has answered its own /health, 503 before, so that Cloud Run's startup
// probe holds traffic until then; it reflects the start only, since the server exits when MLflow does. It
// needs no credentials: the probe has none.
func (h *handler) health(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	if h.mlflow.Load() == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("OK"))
}

// pollHealth asks MLflow's own /health at addr until it answers 200 OK or ctx ends.
func pollHealth(ctx context.Context, addr string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/health", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
