package localcloud

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTP1RequestLimit is Cloud Run's cap on a request to a container that speaks HTTP/1; a container
// whose port is named h2c has none.
const HTTP1RequestLimit = 32 << 20

const http1LimitMessage = "413 Request Entity Too Large: HTTP/1 requests to Cloud Run are limited to 32 MiB; serve HTTP/2 end to end (a port named h2c)"

// frontEnd is a service's stable address; it proxies to the revision that serves.
type frontEnd struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	current *revisionProc
}

// route points the service's front end at p. The revision it replaces keeps running until the Run
// stand-in stops it, as Cloud Run drains an old revision.
func (r *Runtime) route(service string, p *revisionProc) (string, error) {
	fe, err := r.frontEnd(service)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.procs[p.name] = p
	r.mu.Unlock()
	fe.mu.Lock()
	fe.current = p
	fe.mu.Unlock()
	return fe.url, nil
}

// URL is the service's address on this machine, fixed from the first time it is asked for; give it to
// the Run stand-in with gcptest.WithServiceURL so that the service's uri is where it really serves.
func (r *Runtime) URL(service string) string {
	fe, err := r.frontEnd(service)
	if err != nil {
		return ""
	}
	return fe.url
}

func (r *Runtime) frontEnd(service string) (*frontEnd, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.services == nil {
		r.services, r.procs = map[string]*frontEnd{}, map[string]*revisionProc{}
	}
	if fe := r.services[service]; fe != nil {
		return fe, nil
	}
	fe, err := newFrontEnd()
	if err != nil {
		return nil, err
	}
	r.services[service] = fe
	return fe, nil
}

func newFrontEnd() (*frontEnd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fe := &frontEnd{url: "http://" + ln.Addr().String()}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	fe.srv = &http.Server{Handler: fe, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = fe.srv.Serve(ln) }()
	return fe, nil
}

func (fe *frontEnd) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fe.mu.Lock()
	p := fe.current
	fe.mu.Unlock()
	if p == nil {
		http.Error(w, "Service Unavailable: no revision is ready", http.StatusServiceUnavailable)
		return
	}
	if !p.h2c {
		if req.ContentLength > HTTP1RequestLimit {
			http.Error(w, http1LimitMessage, http.StatusRequestEntityTooLarge)
			return
		}
		req.Body = http.MaxBytesReader(w, req.Body, HTTP1RequestLimit)
	}
	p.proxy.ServeHTTP(w, req)
}
