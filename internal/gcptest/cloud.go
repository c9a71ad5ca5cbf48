package gcptest

import (
	"errors"
	"io"
	"log"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Cloud is every stand-in, wired to one another as Google's services are: they all accept the tokens of
// one token server, Cloud Run checks revisions' secret references against the Secret Manager, and the
// Artifact Registry front serves on its own loopback port.
type Cloud struct {
	Tokens        *TokenServer
	SecretManager *SecretManager
	Projects      *ResourceManager // project IAM policies, which Cloud Run's secret access check counts
	Run           *Run
	Registry      *ArtifactRegistry
	RegistryHost  string // host:port of the Artifact Registry front

	registry *httpServer
}

// NewCloud starts every stand-in; opts go to each of them. Close stops them.
func NewCloud(opts ...Option) (c *Cloud, err error) {
	c = &Cloud{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Tokens, err = NewTokenServer(opts...); err != nil {
		return nil, err
	}
	if c.SecretManager, err = NewSecretManager(c.Tokens, opts...); err != nil {
		return nil, err
	}
	if c.Projects, err = NewResourceManager(c.Tokens, opts...); err != nil {
		return nil, err
	}
	if c.Run, err = NewRun(c.Tokens, append([]Option{WithSecretManager(c.SecretManager), WithResourceManager(c.Projects)}, opts...)...); err != nil {
		return nil, err
	}
	backend := newSettings(opts).registry
	if backend == nil {
		backend = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	}
	c.Registry = NewArtifactRegistry(c.Tokens, backend)
	if c.registry, err = serveHTTP(c.Registry); err != nil {
		return nil, errors.Join(errors.New("serve the Artifact Registry front"), err)
	}
	c.RegistryHost = strings.TrimPrefix(c.registry.url, "http://")
	return c, nil
}

// Start starts every stand-in until the test ends.
func Start(t testing.TB, opts ...Option) *Cloud {
	t.Helper()
	c, err := NewCloud(opts...)
	return started(t, c, err)
}

// Close stops every stand-in that was started.
func (c *Cloud) Close() {
	if c.registry != nil {
		c.registry.close()
	}
	if c.Run != nil {
		c.Run.Close()
	}
	if c.SecretManager != nil {
		c.SecretManager.Close()
	}
	if c.Projects != nil {
		c.Projects.Close()
	}
	if c.Tokens != nil {
		c.Tokens.Close()
	}
}
