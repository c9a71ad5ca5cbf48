package image

import (
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/deploy-mlflow/deploy-mlflow/internal/loopback"
)

// Reference parses an image reference. Registries on loopback addresses are reached over plain HTTP, as a
// local test registry serves; every other registry over HTTPS only (Push and Base refuse plain HTTP to
// them, even for private addresses that go-containerregistry would otherwise try over HTTP).
func Reference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	if loopback.HostPort(ref.Context().RegistryStr()) {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// secureTag gives tag the scheme Reference would have given it, whichever way the caller made it.
func secureTag(tag name.Tag) (name.Tag, error) {
	if !loopback.HostPort(tag.RegistryStr()) {
		return tag, nil
	}
	return name.NewTag(tag.Name(), name.Insecure)
}

// httpsOnly refuses plain HTTP to any host but loopback ones. go-containerregistry falls back to HTTP for
// private (RFC 1918) addresses; a token sent that way could be read on the network.
type httpsOnly struct {
	inner http.RoundTripper
}

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !loopback.HostPort(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing plain %s to %s: only loopback registries (127.0.0.0/8, ::1) are reached without TLS", req.URL.Scheme, req.URL.Host)
	}
	return t.inner.RoundTrip(req)
}
