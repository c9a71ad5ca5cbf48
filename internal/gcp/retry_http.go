package gcp

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// RetryTransport sends a request again, as p says, when it is answered by a status RetryableStatus
// accepts or its connection drops. A request whose body cannot be read again (no GetBody) is sent once.
// It is for requests that may be repeated: token requests and REST reads (getIamPolicy is a POST that
// only reads).
func RetryTransport(base http.RoundTripper, p Policy) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &retryTransport{base: base, p: p}
}

type retryTransport struct {
	base http.RoundTripper
	p    Policy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for n := 1; ; n++ {
		try := req
		if n > 1 {
			try = req.Clone(req.Context())
			if req.Body != nil && req.Body != http.NoBody {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				try.Body = body
			}
		}
		resp, err := t.base.RoundTrip(try)
		again := (err != nil && Dropped(err)) || (err == nil && RetryableStatus(resp.StatusCode))
		replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
		if !again || !replayable || n >= t.p.Attempts || req.Context().Err() != nil {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if serr := t.p.sleep(req.Context(), n); serr != nil {
			return nil, serr
		}
	}
}

// WithRetryingHTTP gives ctx an HTTP client that retries as RetryTransport does, for golang.org/x/oauth2:
// token sources made with ctx (Credentials) then ask the token endpoint (and STS, for Workload Identity
// Federation) again after a 429, a 5xx or a dropped connection.
func WithRetryingHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: RetryTransport(http.DefaultTransport, Retry)})
}
