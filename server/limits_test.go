package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// These tests play hostile clients against the server as run builds it (newHTTPServer), with limits
// shortened where waiting out the real ones would slow the test. They are not parallel: they count
// goroutines.

func serveLimited(t *testing.T, h http.Handler, l httpLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(io.Discard, newRedactor())
	srv := newHTTPServer(log.requests(h), l, log.stdLogger())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// settleGoroutines waits until no more than limit goroutines run, and fails saying how many are left.
func settleGoroutines(t *testing.T, limit int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > limit {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines 10s after %s, want at most %d:\n%s", runtime.NumGoroutine(), what, limit, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// authedServer is the handler with basic auth and throttling in front of a stub MLflow.
func authedServer(t *testing.T, upstream http.Handler) *handler {
	t.Helper()
	mlflow := httptest.NewServer(upstream)
	t.Cleanup(mlflow.Close)
	h := newHandler(newBasicAuth("alice", "correct-horse-battery"))
	h.guesses = newThrottle(guessLimit, guessWindow, guessClients)
	h.setMLflow(newProxy(strings.TrimPrefix(mlflow.URL, "http://"), true, newLogger(io.Discard, newRedactor())))
	return h
}

func get(t *testing.T, client *http.Client, url string, auth bool) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth {
		req.Header.Set("Authorization", basic("alice:correct-horse-battery"))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func quickClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

func TestDefaultHTTPLimits(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), defaultHTTPLimits, nil)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.MaxHeaderBytes != 64<<10 || srv.HTTP2 == nil || srv.HTTP2.MaxConcurrentStreams != 1000 {
		t.Errorf("limits %v, %d, %+v; want 10s, 64 KiB, 1000 streams as the README says", srv.ReadHeaderTimeout, srv.MaxHeaderBytes, srv.HTTP2)
	}
	if !srv.Protocols.UnencryptedHTTP2() || !srv.Protocols.HTTP1() {
		t.Errorf("protocols %v, want HTTP/1 and h2c", srv.Protocols)
	}
}

// TestSlowHeaders: a client that sends half its headers and stalls is cut off at the read-header
// timeout, while others are served.
func TestSlowHeaders(t *testing.T) {
	h := authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	l := defaultHTTPLimits
	l.readHeaderTimeout = 300 * time.Millisecond
	addr := serveLimited(t, h, l)
	var slow []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	if code := get(t, quickClient(), "http://"+addr+"/x", true); code != http.StatusOK {
		t.Errorf("a normal client among slow ones got %d, want 200", code)
	}
	for i, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("slow connection %d still open 5s later; the server should close it after %v", i, l.readHeaderTimeout)
		}
	}
}

// TestOversizedHeaders: headers beyond the limit get 431, and the next client is served.
func TestOversizedHeaders(t *testing.T) {
	h := authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := serveLimited(t, h, defaultHTTPLimits)
	req, _ := http.NewRequest("GET", "http://"+addr+"/x", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 128<<10))
	resp, err := quickClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB of headers: %d, want 431", resp.StatusCode)
	}
	if code := get(t, quickClient(), "http://"+addr+"/x", true); code != http.StatusOK {
		t.Errorf("the next client got %d, want 200", code)
	}
}

// TestThousandUnauthenticated: a thousand requests at once without credentials, from one address, all
// get 401 quickly (none is counted as a guess, so none gets 429), then a client with credentials is
// served, and the goroutines go back to where they were.
func TestThousandUnauthenticated(t *testing.T) {
	h := authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := serveLimited(t, h, defaultHTTPLimits)
	baseline := runtime.NumGoroutine()
	const n = 1000
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: -1, DisableKeepAlives: true}}
	codes := make(chan string, n)
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := client.Get("http://" + addr + "/api/2.0/mlflow/experiments/search")
			if err != nil {
				codes <- err.Error()
				return
			}
			resp.Body.Close()
			codes <- resp.Status
		})
	}
	wg.Wait()
	close(codes)
	took := time.Since(start)
	count := map[string]int{}
	for c := range codes {
		count[c]++
	}
	if count["401 Unauthorized"] != n {
		t.Errorf("answers to %d unauthenticated requests: %v, want all 401", n, count)
	}
	t.Logf("%d unauthenticated requests answered in %v", n, took)
	if took > 20*time.Second {
		t.Errorf("%d unauthenticated requests took %v, want well under 20s", n, took)
	}
	if code := get(t, quickClient(), "http://"+addr+"/x", true); code != http.StatusOK {
		t.Errorf("an authenticated request after them got %d, want 200", code)
	}
	client.CloseIdleConnections()
	settleGoroutines(t, baseline+10, fmt.Sprintf("%d unauthenticated requests", n))
}

// TestClientVanishesMidUpload: a client that goes away in the middle of an upload, over HTTP/1 or h2c,
// ends the upload to MLflow too, and leaves no goroutine behind.
func TestClientVanishesMidUpload(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			started := make(chan struct{}, 1)
			ended := make(chan error, 1)
			h := authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 64<<10)
				_, err := io.ReadFull(r.Body, buf)
				started <- struct{}{}
				if err == nil {
					_, err = io.Copy(io.Discard, r.Body)
				}
				ended <- err
			}))
			addr := serveLimited(t, h, defaultHTTPLimits)
			baseline := runtime.NumGoroutine()

			var tr http.Transport
			tr.Proxy = nil
			if proto == "h2c" {
				tr.Protocols = new(http.Protocols)
				tr.Protocols.SetUnencryptedHTTP2(true)
			}
			ctx, cancel := context.WithCancel(context.Background())
			body, feed := io.Pipe()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/api/2.0/mlflow-artifacts/artifacts/big.bin", body)
			req.ContentLength = 1 << 30
			req.Header.Set("Authorization", basic("alice:correct-horse-battery"))
			done := make(chan error, 1)
			go func() {
				resp, err := (&http.Client{Transport: &tr}).Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			go func() { _, _ = feed.Write(make([]byte, 256<<10)) }()
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("MLflow never saw the upload start")
			}
			// The client vanishes: its request is cancelled and its connections closed.
			cancel()
			tr.CloseIdleConnections()
			_ = feed.CloseWithError(errors.New("client gone"))
			select {
			case err := <-ended:
				if err == nil {
					t.Error("MLflow read the upload to its end, want it cut short")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the upload to MLflow still runs 10s after the client went away")
			}
			<-done
			settleGoroutines(t, baseline+5, "the client went away")
		})
	}
}

// h2Conn is a raw HTTP/2 client connection, for what well-behaved clients never do.
type h2Conn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &h2Conn{Conn: c}
	h.fr = http2.NewFramer(c, bufio.NewReader(c))
	h.enc = hpack.NewEncoder(&h.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *h2Conn) headers(t *testing.T, id uint32, path string) {
	t.Helper()
	h.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatalf("HEADERS on stream %d: %v", id, err)
	}
}

// blocker is a handler that holds every request until released, counting how many it holds at most.
type blocker struct {
	release     chan struct{}
	now, most   atomic.Int32
	served      atomic.Int32
	passThrough http.Handler
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/block" {
		b.passThrough.ServeHTTP(w, r)
		return
	}
	n := b.now.Add(1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	<-b.release // ignores the client's cancellation, as a slow handler would
	b.now.Add(-1)
	b.served.Add(1)
}

// TestHTTP2StreamLimit: streams beyond the limit on one connection are refused with RST_STREAM, the
// handlers running stay at the limit, and other clients are served meanwhile.
func TestHTTP2StreamLimit(t *testing.T) {
	b := &blocker{release: make(chan struct{}), passThrough: authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))}
	l := defaultHTTPLimits
	l.maxConcurrentStreams = 8
	addr := serveLimited(t, b, l)
	c := dialH2(t, addr)
	const streams = 20
	for i := range streams {
		c.headers(t, uint32(2*i+1), "/block")
	}
	refused := 0
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for refused < streams-l.maxConcurrentStreams {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames, %d streams refused so far of the %d over the limit: %v", refused, streams-l.maxConcurrentStreams, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			refused++
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
		}
	}
	if got := b.most.Load(); got > int32(l.maxConcurrentStreams) {
		t.Errorf("%d handlers ran at once on one connection, want at most %d", got, l.maxConcurrentStreams)
	}
	if code := get(t, h2cQuickClient(), "http://"+addr+"/health", false); code != http.StatusOK && code != http.StatusServiceUnavailable {
		t.Errorf("another client's health check got %d", code)
	}
	if code := get(t, quickClient(), "http://"+addr+"/x", true); code != http.StatusOK {
		t.Errorf("another client's request got %d, want 200", code)
	}
	close(b.release)
}

func h2cQuickClient() *http.Client {
	tr := &http.Transport{Proxy: nil, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// TestHTTP2RapidReset plays CVE-2023-44487: a client opens streams and resets them at once, thousands of
// times. The handlers running stay at the stream limit, the server ends the connection, other clients
// are served, and once the handlers end no goroutine is left.
func TestHTTP2RapidReset(t *testing.T) {
	b := &blocker{release: make(chan struct{}), passThrough: authedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))}
	l := defaultHTTPLimits
	l.maxConcurrentStreams = 8
	addr := serveLimited(t, b, l)
	baseline := runtime.NumGoroutine()
	c := dialH2(t, addr)
	const attempts = 5000
	sent := 0
	for i := range attempts {
		id := uint32(2*i + 1)
		c.hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/block"}} {
			_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server has closed the connection
		}
		sent++
	}
	// The connection must end: a GOAWAY, or closed.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var goaway http2.ErrCode = 0xffff
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection is still open 10s after %d rapid resets", sent)
			}
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goaway = g.ErrCode
			break
		}
	}
	t.Logf("%d streams opened and reset before the server ended the connection (GOAWAY %v); at most %d handlers at once", sent, goaway, b.most.Load())
	if got := b.most.Load(); got > int32(l.maxConcurrentStreams) {
		t.Errorf("%d handlers ran at once on one connection, want at most %d", got, l.maxConcurrentStreams)
	}
	if code := get(t, quickClient(), "http://"+addr+"/x", true); code != http.StatusOK {
		t.Errorf("another client's request during the attack got %d, want 200", code)
	}
	close(b.release)
	c.Close()
	settleGoroutines(t, baseline+5, "the rapid resets, once the handlers were released")
}
