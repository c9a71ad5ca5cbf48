package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// countingProxy sits in front of a registry and counts requests and body bytes by method and path
// class (GET /v2/, HEAD blobs/<digest>, PATCH blobs/uploads/<id>, PUT manifests/<ref>, ...).
type countingProxy struct {
	Host string // host:port to give clients
	srv  *http.Server

	mu     sync.Mutex
	counts map[string]*traffic
}

type traffic struct{ requests, sent, received int64 } // sent: request bodies; received: response bodies

func startProxy(backend string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("counting proxy for %s: %w", backend, err)
	}
	p := &countingProxy{Host: ln.Addr().String(), counts: map[string]*traffic{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: backend})
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &countReader{r: r.Body}
		if r.Body != nil {
			r.Body = body
		}
		cw := &countWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		p.mu.Lock()
		t := p.counts[class(r.Method, r.URL.Path)]
		if t == nil {
			t = &traffic{}
			p.counts[class(r.Method, r.URL.Path)] = t
		}
		t.requests++
		t.sent += body.n
		t.received += cw.n
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *countingProxy) Close() { _ = p.srv.Close() }

// take returns the counts since the last take and starts again from zero.
func (p *countingProxy) take() map[string]traffic {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]traffic{}
	for k, v := range p.counts {
		out[k] = *v
	}
	p.counts = map[string]*traffic{}
	return out
}

// class names a registry request by method and the kind of path, without repository or digest.
func class(method, path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return method + " /v2/"
	case strings.HasSuffix(path, "/blobs/uploads/"):
		return method + " blobs/uploads/"
	case strings.Contains(path, "/blobs/uploads/"):
		return method + " blobs/uploads/<id>"
	case strings.Contains(path, "/blobs/"):
		return method + " blobs/<digest>"
	case strings.Contains(path, "/manifests/"):
		return method + " manifests/<ref>"
	}
	return method + " other"
}

type countReader struct {
	r io.ReadCloser
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
func (c *countReader) Close() error { return c.r.Close() }

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// Flush keeps ReverseProxy's streaming working through the wrapper.
func (c *countWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// sum adds up the counts over every class, or over those for which keep is true.
func sum(m map[string]traffic, keep func(class string) bool) traffic {
	var t traffic
	for k, v := range m {
		if keep == nil || keep(k) {
			t.requests += v.requests
			t.sent += v.sent
			t.received += v.received
		}
	}
	return t
}

// writes are the requests that change the registry: blob uploads and manifest PUTs.
func writes(class string) bool {
	return strings.HasPrefix(class, "POST ") || strings.HasPrefix(class, "PATCH ") || strings.HasPrefix(class, "PUT ")
}

// breakdown is "3 HEAD blobs/<digest>, 1 PUT manifests/<ref>, ..." in a stable order.
func breakdown(m map[string]traffic) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d× %s", m[k].requests, k))
	}
	return strings.Join(parts, ", ")
}
