package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// newProxy returns the reverse proxy to MLflow at addr (a loopback host:port). It streams both ways:
// FlushInterval -1 sends each chunk of a response on as it arrives, and request bodies are copied to
// MLflow as they come in, so neither side is held in memory whole.
//
// MLflow's security middleware accepts only Host headers of loopback and private addresses and only
// loopback Origins for writes. The server has already enforced the origin rule against the name the
// request came in on (see crossOriginWrite), so it hands MLflow what MLflow accepts: the Host it listens
// on, no Origin, and the original host in X-Forwarded-Host. MLflow also uses the Host as its own base URL
// for calls to itself, which then stay on loopback.
func newProxy(addr string, dropAuthorization bool, log *logger) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: addr}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy: nil, // loopback: never through an HTTP proxy from the environment
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, address)
			if tc, ok := c.(*net.TCPConn); ok {
				return quickAckConn{tc}, nil
			}
			return c, err
		},
		// uvicorn closes idle keep-alive connections after 5 s; closing ours sooner avoids sending a
		// request on a connection that uvicorn is closing, which fails non-idempotent requests.
		IdleConnTimeout:     3 * time.Second,
		MaxIdleConnsPerHost: 32,
		// Pass the client's Accept-Encoding through and the response as MLflow encoded it.
		DisableCompression: true,
		WriteBufferSize:    64 << 10,
		ReadBufferSize:     64 << 10,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the chain that Cloud Run's front end started, and the scheme it received.
			if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 {
				pr.Out.Header["X-Forwarded-For"] = append([]string(nil), xff...)
			}
			pr.SetXForwarded()
			if proto := pr.In.Header.Get("X-Forwarded-Proto"); proto == "https" || proto == "http" {
				pr.Out.Header.Set("X-Forwarded-Proto", proto)
			}
			pr.Out.Header.Del("Origin")
			rewriteReferer(pr.Out.Header, pr.In.Host, addr)
			if dropAuthorization {
				// The basic credentials are the server's business; MLflow needs none.
				pr.Out.Header.Del("Authorization")
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			relativizeLocation(resp.Header, addr)
			return jsonRefusal(resp)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				// The client went away; there is no one to answer.
				return
			}
			log.error("MLflow did not answer", "error", err, "method", r.Method, "path", r.URL.Path)
			http.Error(w, "MLflow did not answer; see the server's log", http.StatusBadGateway)
		},
		ErrorLog: log.stdLogger(),
	}
}

// quickAckConn is a connection to MLflow that takes itself out of Linux's delayed-ACK ("pingpong")
// mode after each write. A kept-alive connection that sends its next request soon after the last answer
// enters that mode, and then acknowledges the first segment of the next answer only after up to 40 ms.
// uvicorn sends a response's head and its body in two writes; where its socket has Nagle on (asyncio sets
// TCP_NODELAY only on connections accepted from a listener created with IPPROTO_TCP, which uvicorn's
// multi-worker listener was not in some releases: Kludex/uvicorn#3149), the body waits for that
// acknowledgement, and log-batch's 2-byte {} arrived 40 ms after its head. With TCP_QUICKACK set after
// the request is sent, reading the head acknowledges it at once, whatever MLflow's socket options.
type quickAckConn struct{ *net.TCPConn }

func (c quickAckConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.quickAck()
	return n, err
}

// ReadFrom keeps net.TCPConn's splice for request bodies, which would otherwise bypass Write.
func (c quickAckConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := c.TCPConn.ReadFrom(r)
	c.quickAck()
	return n, err
}

// quickAck sets TCP_QUICKACK, which the kernel clears again on its own; errors leave the connection as it was.
func (c quickAckConn) quickAck() {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// rewriteReferer points a Referer from the page's own host at the loopback host MLflow is given, with the
// scheme the request is forwarded as. MLflow's auth app checks CSRF with Flask-WTF, which over HTTPS also
// demands a Referer of the request's own host (https://<Host>/): a form such as /signup, posted from the
// service's URL, would otherwise fail with "The referrer does not match the host". Only a same-host
// Referer is rewritten: one from another site is passed as it came, and MLflow refuses it as before.
func rewriteReferer(h http.Header, inHost, addr string) {
	ref := h.Get("Referer")
	if ref == "" {
		return
	}
	u, err := url.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !sameHost(u, inHost) {
		return
	}
	u.Host = addr
	if proto := h.Get("X-Forwarded-Proto"); proto == "https" || proto == "http" {
		u.Scheme = proto
	}
	u.User, u.Fragment, u.RawFragment = nil, "", ""
	h.Set("Referer", u.String())
}

// relativizeLocation rewrites a redirect that MLflow built from the loopback Host it was given into a
// path, which the browser resolves against the name it actually used.
func relativizeLocation(h http.Header, addr string) {
	loc := h.Get("Location")
	if loc == "" {
		return
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host != addr {
		return
	}
	rel := &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery, Fragment: u.Fragment}
	if rel.Path == "" {
		rel.Path = "/"
	}
	h.Set("Location", rel.String())
}

// mlflowRefusal is the body of the 403 that MLflow's auth app answers a permission check with
// (make_forbidden_response), as text/html.
const mlflowRefusal = "Permission denied"

// jsonRefusal gives MLflow's auth app's plain-text 403 on an API path the shape of MLflow's other REST
// errors, {"error_code": "PERMISSION_DENIED", "message": ...}. MLflow's UI reads the error_code and shows a
// refusal; from plain text it shows INTERNAL_ERROR, and MLflow's Python client a bare status line.
func jsonRefusal(resp *http.Response) error {
	p := resp.Request.URL.Path
	if resp.StatusCode != http.StatusForbidden || resp.ContentLength < 0 || resp.ContentLength > 64 ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/") ||
		(!strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/ajax-api/")) {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != mlflowRefusal {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	b, _ := json.Marshal(map[string]string{"error_code": "PERMISSION_DENIED", "message": mlflowRefusal})
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp.Header.Set("Content-Type", "application/json")
	return nil
}
