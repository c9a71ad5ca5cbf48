package gcp

import (
	"context"
	"path"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// retryUnary tries a unary gRPC call again, as p says, while RetryableGRPC accepts its error. It sits in
// the connection, so every client on it (Secret Manager, Cloud Run services, revisions and operations)
// gets the same policy without per-method settings.
func retryUnary(p Policy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		for n := 1; ; n++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || ctx.Err() != nil || !RetryableGRPC(method, err) {
				return err
			}
			if n >= p.Attempts {
				// Keep the code, so callers still tell kinds apart, and say which call gave up when.
				st := status.Convert(err)
				return status.Errorf(st.Code(), "%s failed %d times, giving up: %s", path.Base(method), n, st.Message())
			}
			if serr := p.sleep(ctx, n); serr != nil {
				return err
			}
		}
	}
}

// NoClientRetry turns off the retries a generated client adds on its own to some methods (Cloud Run's
// GetService retries UNAVAILABLE for 10 s, Secret Manager's AccessSecretVersion for 60 s): on top of
// retryUnary they would multiply the tries and stretch the time a dead API takes to fail. Append it to
// such a method's CallOptions.
var NoClientRetry gax.CallOption = gax.WithRetry(func() gax.Retryer { return nil })
