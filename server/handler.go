package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// handler is what the server answers on $PORT: the health path itself, everything else after the auth and
// origin checks through the proxy to MLflow.
type handler struct {
	auth  *basicAuth // nil with auth: iam, where Cloud Run has checked the caller already
	ready *atomic.Bool
	proxy http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == serverenv.HealthPath {
		h.health(w)
		return
	}
	if h.auth != nil && !h.auth.allowed(r.Header.Get("Authorization")) {
		unauthorized(w)
		return
	}
	if reason := crossOriginWrite(r.Method, r.Host, r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site")); reason != "" {
		http.Error(w, "Forbidden: cross-origin write refused: "+reason+". Use the MLflow UI at the address you are writing to, or a client that sends no Origin.", http.StatusForbidden)
		return
	}
	if !h.ready.Load() {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "MLflow is starting; retry shortly.", http.StatusServiceUnavailable)
		return
	}
	h.proxy.ServeHTTP(w, r)
}

// health answers 200 only once MLflow has answered its own /health, so that Cloud Run's startup probe
// holds traffic until then. It needs no credentials: the probe has none.
func (h *handler) health(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	if !h.ready.Load() {
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
