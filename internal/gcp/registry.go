package gcp

import (
	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/oauth2"
)

// RegistryAuth is Artifact Registry's basic auth: user _token and a current OAuth access token as the
// password, fetched afresh (and refreshed when it expires) for every authorization.
func RegistryAuth(ts oauth2.TokenSource) authn.Authenticator { return registryAuth{ts} }

type registryAuth struct{ ts oauth2.TokenSource }

func (a registryAuth) Authorization() (*authn.AuthConfig, error) {
	tok, err := a.ts.Token()
	if err != nil {
		return nil, err
	}
	return &authn.AuthConfig{Username: "_token", Password: tok.AccessToken}, nil
}
