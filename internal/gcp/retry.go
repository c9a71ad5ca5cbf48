package gcp

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"path"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Policy is how a failed Google call is tried again: after Initial, then twice as long each time up to
// Max, each pause jittered (between half and all of it) so that many clients do not retry in step, and
// at most Attempts tries in all. A call's context bounds it too.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Attempts   int
}

// Retry is the policy of every client built after it is set: the gRPC clients of ClientOptions, the REST
// clients of RESTClientOptions, the token endpoint (WithRetryingHTTP) and the registries (image.Push).
// Five tries take 0.2+0.4+0.8+1.6 s at most between them. Tests shorten it before building clients.
var Retry = Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Attempts: 5}

// Pause is how long to wait after the n-th failed try (n >= 1).
func (p Policy) Pause(n int) time.Duration {
	d := float64(p.Initial)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(p.Max))
	return time.Duration(d/2 + rand.Float64()*d/2)
}

// sleep waits the pause after the n-th try, or returns ctx's error if it ends first.
func (p Policy) sleep(ctx context.Context, n int) error {
	t := time.NewTimer(p.Pause(n))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsRead tells whether a gRPC method (full name /package.Service/Method, or just Method) only reads:
// trying it again cannot change anything, even if the first try was done by the server.
func IsRead(method string) bool {
	name := path.Base(method)
	for _, prefix := range []string{"Get", "List", "Access", "TestIamPermissions"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// RetryableGRPC tells whether a failed gRPC call may be tried again. UNAVAILABLE and RESOURCE_EXHAUSTED
// mean the server did not do the call (AIP-194), so any method may be tried again; the writes the action
// makes carry the etag they read (UpdateService, SetIamPolicy) or a fixed ID (CreateService), so a
// resend of one that did happen is refused as a conflict, which Deploy answers by reading again.
// DEADLINE_EXCEEDED leaves a write's fate unknown, so only reads are tried again after it. Nothing else
// (PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND, ...) changes by asking again.
func RetryableGRPC(method string, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	case codes.DeadlineExceeded:
		return IsRead(method)
	}
	return false
}

// RetryableStatus tells whether an HTTP status is worth asking again: 429 (rate limited) and the 5xx
// that mean "not now" (500, 502, 503, 504). Other 4xx (401, 403, 404, ...) and 501 are answers.
func RetryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// RetryStatusCodes are the HTTP statuses RetryableStatus accepts, for go-containerregistry.
var RetryStatusCodes = []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
	http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// Dropped tells whether err is a connection that broke before the answer came (reset, closed, cut short):
// the request may be sent again when it only reads or, like a blob upload, is whole or nothing.
func Dropped(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}
