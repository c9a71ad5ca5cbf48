package image

import (
	"context"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// An Option changes how Base and Push reach registries. Pass the same options to both.
type Option func(*options)

type options struct {
	authRegistry string
	auth         authn.Authenticator
	transport    http.RoundTripper
	progress     func(v1.Update)
}

// WithAuth sends auth to registry and to no other: the pushed image's registry gets the caller's
// credentials, and a base image elsewhere (ghcr.io) is pulled anonymously. For Artifact Registry, auth is
// basic auth with user "_token" and a Google OAuth access token as password.
func WithAuth(registry name.Registry, auth authn.Authenticator) Option {
	return func(o *options) {
		o.authRegistry = registry.RegistryStr()
		o.auth = auth
	}
}

// WithTransport sets the HTTP transport under go-containerregistry's own (retries, auth). The default is
// remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) { o.transport = t }
}

// WithProgress calls f as Push moves bytes, with the bytes done so far and the total. Blobs the registry
// already has count as done without being sent; PushStats tells the two apart once Push returns.
func WithProgress(f func(v1.Update)) Option {
	return func(o *options) { o.progress = f }
}

func makeOptions(opts []Option) options {
	o := options{transport: remote.DefaultTransport}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// remote returns go-containerregistry's options for talking to registry: the credentials only when it is
// the one WithAuth named, and tr (which must end in o.transport) under the HTTPS-only rule.
func (o options) remote(ctx context.Context, registry name.Registry, tr http.RoundTripper) []remote.Option {
	auth := authn.Anonymous
	if o.auth != nil && registry.RegistryStr() == o.authRegistry {
		auth = o.auth
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(httpsOnly{inner: tr}),
		remote.WithUserAgent("deploy-mlflow"),
	}
}
