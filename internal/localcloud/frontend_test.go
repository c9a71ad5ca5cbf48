package localcloud

import (
	"html"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestFrontEndRequestLimit checks Cloud Run's documented limit: HTTP/1 requests to a container are
// capped at 32 MiB, while a container that speaks h2c (port named h2c) takes any size.
func TestFrontEndRequestLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		h2c     bool
		size    int64
		chunked bool
		want    int
	}{
		{"http1 small", false, 1 << 20, false, http.StatusOK},
		{"http1 at the limit", false, HTTP1RequestLimit, false, http.StatusOK},
		{"http1 over the limit", false, HTTP1RequestLimit + 1, false, http.StatusRequestEntityTooLarge},
		{"http1 chunked over the limit", false, HTTP1RequestLimit + 1, true, http.StatusRequestEntityTooLarge},
		{"h2c over the limit", true, 40 << 20, false, http.StatusOK},
		{"h2c chunked over the limit", true, 40 << 20, true, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var received int64
			port, protocol := startBackend(t, tc.h2c, &received)
			p := &revisionProc{name: "svc-00001-abc", port: port, h2c: tc.h2c}
			p.proxy = p.reverseProxy()
			fe, err := newFrontEnd()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fe.srv.Close() })
			fe.current = p
			fe.public = func() bool { return true }

			body := io.Reader(io.LimitReader(zeros{}, tc.size))
			req, _ := http.NewRequest(http.MethodPut, fe.url+"/upload", body)
			if !tc.chunked {
				req.ContentLength = tc.size
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK {
				if received != tc.size {
					t.Errorf("the container received %d bytes, want %d", received, tc.size)
				}
				if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[tc.h2c]; *protocol != want {
					t.Errorf("the container was reached over %s, want %s", *protocol, want)
				}
			}
		})
	}
}

// TestFrontEndInvokerCheck checks Cloud Run's invoker IAM check in front of a service: a request without
// an identity token reaches the container only while the service is public (invoker_iam_disabled or an
// allUsers binding); otherwise Cloud Run answers 403 with its Forbidden page, before any revision is
// involved (even one that is not ready). A Basic Authorization header is not an identity token.
func TestFrontEndInvokerCheck(t *testing.T) {
	t.Parallel()
	var received int64
	port, _ := startBackend(t, false, &received)
	p := &revisionProc{name: "svc-00001-abc", port: port}
	p.proxy = p.reverseProxy()
	r := &Runtime{}
	r.SetInvokerCheck("svc", nil) // a front end with no check yet: private
	url, err := r.route("svc", p)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	fe := r.services["svc"]
	r.mu.Unlock()
	t.Cleanup(func() { fe.srv.Close() })
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		req.SetBasicAuth("mlflow", "password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	forbidden := func(when, path string) {
		t.Helper()
		code, body := get(path)
		want := "<h2>Your client does not have permission to get URL <code>" + html.EscapeString(path) + "</code> from this server.</h2>"
		if code != http.StatusForbidden || !strings.Contains(body, "<h1>Error: Forbidden</h1>") || !strings.Contains(body, want) {
			t.Errorf("%s: GET %s = %d %q, want 403 with Cloud Run's Forbidden page", when, path, code, body)
		}
	}
	forbidden("no check", "/")

	var public atomic.Bool
	r.SetInvokerCheck("svc", public.Load)
	forbidden("private", "/api/2.0/mlflow/experiments/search")
	forbidden("private", "/<script>")
	public.Store(true)
	if code, body := get("/health"); code != http.StatusOK {
		t.Errorf("public: GET /health = %d %q, want the container's 200", code, body)
	}
	public.Store(false)
	forbidden("private again", "/health")

	// The check comes before the routing: a private service with no ready revision is still a 403.
	fe.mu.Lock()
	fe.current = nil
	fe.mu.Unlock()
	forbidden("no revision", "/")
}

// startBackend is a container: it counts the bytes it is sent and notes the protocol it was reached by.
func startBackend(t *testing.T, h2c bool, received *int64) (int, *string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protocol := new(string)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(!h2c)
	protocols.SetUnencryptedHTTP2(h2c)
	srv := &http.Server{Protocols: protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*protocol = r.Proto
		*received, _ = io.Copy(io.Discard, r.Body)
		if !strings.HasPrefix(r.Header.Get("X-Forwarded-For"), "127.0.0.1") {
			http.Error(w, "no X-Forwarded-For", http.StatusBadRequest)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, protocol
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
