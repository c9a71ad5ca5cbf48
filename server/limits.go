package main

import (
	"log"
	"net/http"
	"time"
)

// httpLimits bound what one client can make the server hold: its connections, headers and streams.
type httpLimits struct {
	// readHeaderTimeout is how long a connection may take to send a request's headers; a client that
	// trickles them (slowloris) is cut off then.
	readHeaderTimeout time.Duration
	// maxHeaderBytes bounds a request's headers; beyond it HTTP/1 gets 431, and HTTP/2 announces it as
	// SETTINGS_MAX_HEADER_LIST_SIZE and refuses larger header blocks with 431 too.
	maxHeaderBytes int
	// maxConcurrentStreams bounds the HTTP/2 streams one connection may have open, and so the handlers
	// one connection may have running: net/http queues handlers for streams beyond it and closes a
	// connection that keeps opening and resetting streams faster than its handlers end (the "rapid
	// reset" attack, CVE-2023-44487).
	maxConcurrentStreams int
}

// defaultHTTPLimits: Cloud Run's front end sends a request's headers at once, so 10 s is generous; MLflow's
// requests carry a few hundred bytes of headers, and 64 KiB leaves room for a browser's cookies; 1000
// streams is the most requests Cloud Run sends one instance at a time (its concurrency setting's maximum),
// so the limit never queues a request that Cloud Run has admitted.
var defaultHTTPLimits = httpLimits{
	readHeaderTimeout:    10 * time.Second,
	maxHeaderBytes:       64 << 10,
	maxConcurrentStreams: 1000,
}

// newHTTPServer is the server on $PORT: HTTP/1.1 and HTTP/2 without TLS (h2c with prior knowledge), which
// Cloud Run speaks to the container when the port is named h2c; that lifts its 32 MiB limit on HTTP/1
// request bodies.
func newHTTPServer(h http.Handler, l httpLimits, errorLog *log.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: l.readHeaderTimeout,
		MaxHeaderBytes:    l.maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: l.maxConcurrentStreams},
		ErrorLog:          errorLog,
	}
}
