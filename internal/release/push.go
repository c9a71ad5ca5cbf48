package release

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Auth is basic auth with token as the password (ghcr.io takes a GITHUB_TOKEN so, any user name), or
// anonymous when token is empty (a local registry).
func Auth(user, token string) authn.Authenticator {
	if token == "" {
		return authn.Anonymous
	}
	if user == "" {
		user = "token"
	}
	return &authn.Basic{Username: user, Password: token}
}

// Push writes img to ref (a tag) and returns the digest reference, REPOSITORY@sha256:..., that action.yml names.
func Push(ctx context.Context, img v1.Image, ref string, auth authn.Authenticator) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w; give REGISTRY/REPOSITORY:TAG", ref, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx), remote.WithAuth(auth)); err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}
