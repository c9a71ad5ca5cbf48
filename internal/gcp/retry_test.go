package gcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetryableGRPC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method string
		code   codes.Code
		want   bool
	}{
		{"/google.cloud.run.v2.Services/GetService", codes.Unavailable, true},
		{"/google.cloud.run.v2.Services/UpdateService", codes.Unavailable, true},
		{"/google.cloud.run.v2.Services/CreateService", codes.ResourceExhausted, true},
		{"/google.cloud.run.v2.Services/SetIamPolicy", codes.Unavailable, true},
		{"/google.cloud.run.v2.Services/GetService", codes.DeadlineExceeded, true},
		{"/google.longrunning.Operations/GetOperation", codes.DeadlineExceeded, true},
		{"/google.cloud.secretmanager.v1.SecretManagerService/GetIamPolicy", codes.DeadlineExceeded, true},
		{"/google.cloud.secretmanager.v1.SecretManagerService/GetSecretVersion", codes.DeadlineExceeded, true},
		{"/google.cloud.run.v2.Services/CreateService", codes.DeadlineExceeded, false},
		{"/google.cloud.run.v2.Services/UpdateService", codes.DeadlineExceeded, false},
		{"/google.cloud.run.v2.Services/SetIamPolicy", codes.DeadlineExceeded, false},
		{"/google.cloud.run.v2.Services/GetService", codes.PermissionDenied, false},
		{"/google.cloud.run.v2.Services/GetService", codes.NotFound, false},
		{"/google.cloud.run.v2.Services/UpdateService", codes.InvalidArgument, false},
		{"/google.cloud.run.v2.Services/UpdateService", codes.Aborted, false}, // Deploy reads again instead
		{"/google.cloud.run.v2.Services/GetService", codes.Unauthenticated, false},
		{"/google.cloud.run.v2.Services/GetService", codes.Internal, false},
		{"/google.cloud.run.v2.Services/GetService", codes.Canceled, false},
	} {
		if got := RetryableGRPC(tc.method, status.Error(tc.code, "x")); got != tc.want {
			t.Errorf("RetryableGRPC(%s, %s) = %v, want %v", tc.method, tc.code, got, tc.want)
		}
	}
}

func TestRetryableStatusAndDropped(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{200: false, 400: false, 401: false, 403: false, 404: false, 409: false,
		429: true, 500: true, 501: false, 502: true, 503: true, 504: true} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
	for err, want := range map[error]bool{
		io.EOF: true, io.ErrUnexpectedEOF: true, fmt.Errorf("write: %w", syscall.ECONNRESET): true,
		fmt.Errorf("write: %w", syscall.EPIPE): true, context.Canceled: false, context.DeadlineExceeded: false,
		errors.New("x509: certificate signed by unknown authority"): false, nil: false,
	} {
		if got := Dropped(err); got != want {
			t.Errorf("Dropped(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestPauseIsCappedAndJittered(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Attempts: 5}
	for n, full := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 4: 1600 * time.Millisecond, 10: 5 * time.Second} {
		for range 50 {
			if d := p.Pause(n); d < full/2 || d > full {
				t.Fatalf("Pause(%d) = %s, want %s to %s", n, d, full/2, full)
			}
		}
	}
}

// TestRetryTransport: a 503 and a 429 are asked again, with the body, up to Attempts; a 403 once.
func TestRetryTransport(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Multiplier: 2, Attempts: 3}
	for _, tc := range []struct {
		statuses []int // answered in turn, then 200
		want     int   // final status
		tries    int
	}{
		{[]int{503, 429}, 200, 3},
		{[]int{503, 503, 503, 503}, 503, 3},
		{[]int{403, 503}, 403, 1},
		{[]int{404}, 404, 1},
	} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := int(n.Add(1)) - 1
			if b, _ := io.ReadAll(r.Body); string(b) != "body" {
				t.Errorf("try %d got body %q", i+1, b)
			}
			if i < len(tc.statuses) {
				w.WriteHeader(tc.statuses[i])
				return
			}
		}))
		client := &http.Client{Transport: RetryTransport(nil, p)}
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("body"))
		resp, err := client.Do(req)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || int(n.Load()) != tc.tries {
			t.Errorf("answers %v: got %d after %d tries, want %d after %d", tc.statuses, resp.StatusCode, n.Load(), tc.want, tc.tries)
		}
	}
}
