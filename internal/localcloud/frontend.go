package localcloud

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTP1RequestLimit is Cloud Run's cap on a request to a container that speaks HTTP/1; a container
// whose port is named h2c has none.
const HTTP1RequestLimit = 32 << 20

const http1LimitMessage = "413 Request Entity Too Large: HTTP/1 requests to Cloud Run are limited to 32 MiB; serve HTTP/2 end to end (a port named h2c)"

// forbiddenPage is what Cloud Run's front end answers, with 403, to a request that its invoker IAM check
// refuses, such as one without an identity token to a private service; %s is the request's path.
const forbiddenPage = `<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>403 Forbidden</title>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Forbidden</h1>
<h2>Your client does not have permission to get URL <code>%s</code> from this server.</h2>
<h2></h2>
</body></html>
`

// An InvokerCheck tells whether Cloud Run lets a request without an identity token through to a service:
// when the service has invoker_iam_disabled or allUsers may invoke it (gcptest.Run.AllowsUnauthenticated).
type InvokerCheck func() bool

// frontEnd is a service's stable address; it proxies to the revision that serves.
type frontEnd struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	current *revisionProc
	public  InvokerCheck // nil: private
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

// SetInvokerCheck puts Cloud Run's invoker IAM check in front of the service: a request passes only
// while public says the service is public, and is refused otherwise as Cloud Run refuses it. Without a
// check the front end refuses every request, as for a private service: a request with an identity token
// is not modelled, so a private service cannot be reached here.
func (r *Runtime) SetInvokerCheck(service string, public InvokerCheck) {
	fe, err := r.frontEnd(service)
	if err != nil {
		return
	}
	fe.mu.Lock()
	fe.public = public
	fe.mu.Unlock()
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
	p, public := fe.current, fe.public
	fe.mu.Unlock()
	// Cloud Run checks the caller before it routes the request to a revision.
	if public == nil || !public() {
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, forbiddenPage, html.EscapeString(req.URL.Path))
		return
	}
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
