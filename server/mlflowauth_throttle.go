package main

import (
	"net/http"
	"net/http/httputil"
)

// proxyCounted passes a request with credentials to MLflow's auth app and counts a 401 from it as a failed
// login, so that the throttle bounds guessing at MLflow's users' passwords as it does at the basic-auth
// password: MLflow's auth app has no limit of its own. A client already blocked gets 429 without MLflow
// seeing its request. The check comes before MLflow answers and the count after, so a client that sends
// many guesses at once gets as many judged as it has requests in flight when it crosses the limit; each
// costs MLflow a password hash (scrypt), which bounds that too.
func (h *handler) proxyCounted(proxy *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	client := clientKey(r)
	if wait := h.guesses.attempt(client, true); wait > 0 {
		tooManyGuesses(w, wait)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	proxy.ServeHTTP(sw, r)
	if sw.status == http.StatusUnauthorized {
		h.guesses.attempt(client, false)
	}
}

// statusWriter remembers the status of the response written through it. Unwrap lets the proxy's
// http.ResponseController reach the connection's Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
