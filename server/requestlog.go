package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// statusClientClosed is logged for a request whose connection closed before any response was sent.
const statusClientClosed = 499

// httpRequest is Cloud Logging's HttpRequest; int64 fields are strings, as in proto3's JSON form.
type httpRequest struct {
	RequestMethod string `json:"requestMethod"`
	RequestURL    string `json:"requestUrl"`
	RequestSize   string `json:"requestSize"`
	Status        int    `json:"status"`
	ResponseSize  string `json:"responseSize"`
	UserAgent     string `json:"userAgent,omitempty"`
	RemoteIP      string `json:"remoteIp,omitempty"`
	Referer       string `json:"referer,omitempty"`
	Latency       string `json:"latency"`
	Protocol      string `json:"protocol"`
}

// requests wraps h so that each request is logged once it is done, also when it ends in a panic (the
// reverse proxy aborts a response that way when a side goes away mid-stream).
func (l *logger) requests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := l.now()
		rec := &recorder{ResponseWriter: w}
		body := &countingReader{ReadCloser: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = body
		}
		defer func() {
			p := recover()
			status := rec.status
			if status == 0 {
				status = http.StatusOK
				if p != nil || r.Context().Err() != nil {
					// Nothing was sent and the connection is gone (the client left, or the grace
					// period ran out): 499, as nginx logs a request closed before its response.
					status = statusClientClosed
				}
			}
			l.request(r, status, rec.size, body.n.Load(), l.now().Sub(start))
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

func (l *logger) request(r *http.Request, status int, respSize, reqSize int64, latency time.Duration) {
	scheme := "http"
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	hr := httpRequest{
		RequestMethod: r.Method,
		RequestURL:    l.redact.redact(scheme + "://" + r.Host + r.URL.RequestURI()),
		RequestSize:   strconv.FormatInt(reqSize, 10),
		Status:        status,
		ResponseSize:  strconv.FormatInt(respSize, 10),
		UserAgent:     l.redact.redact(r.UserAgent()),
		RemoteIP:      remoteIP(r),
		Referer:       l.redact.redact(r.Referer()),
		Latency:       strconv.FormatFloat(latency.Seconds(), 'f', -1, 64) + "s",
		Protocol:      r.Proto,
	}
	severity := sevInfo
	switch {
	case isHealth(r) || isGRPCHealth(r):
		// Startup probes poll these; their 503s before MLflow is up are expected.
		severity = sevDebug
	case status >= 500:
		severity = sevError
	case status >= 400:
		severity = sevWarning
	}
	l.log(severity, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, status), "httpRequest", hr)
}

// remoteIP is the client's address. Behind Cloud Run's front end the TCP peer is the front end itself, which
// appends the address it saw to X-Forwarded-For; anything before that entry came from the client and may
// be forged, so the last entry is the one to trust.
func remoteIP(r *http.Request) string {
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		parts := strings.Split(xff[len(xff)-1], ",")
		if ip := strings.TrimSpace(parts[len(parts)-1]); net.ParseIP(ip) != nil {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// recorder notes the status and size of a response. It unwraps, so that http.ResponseController (which the
// reverse proxy uses to flush and to hijack upgraded connections) reaches the connection's writer.
type recorder struct {
	http.ResponseWriter
	status int
	size   int64
}

func (r *recorder) WriteHeader(code int) {
	// 1xx responses (100 Continue, 103 Early Hints) precede the final status.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush is there for handlers that assert http.Flusher rather than use http.ResponseController: gRPC's
// ServeHTTP, which answers the health checks, refuses to serve without it.
func (r *recorder) Flush() { _ = r.FlushError() }

func (r *recorder) FlushError() error {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// countingReader counts the request body's bytes; the proxy's transport may still be reading when the
// handler returns, hence the atomic.
type countingReader struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
