package gcptest

import (
	"errors"
	"io"
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// ArtifactRegistry is an http.Handler that puts Artifact Registry's Docker front on a registry: it wants
// HTTP basic auth with user _token or oauth2accesstoken and an access token its Authenticator accepts as
// password, and serves only images PROJECT/REPOSITORY/IMAGE of repositories made with CreateRepository,
// with Artifact Registry's errors. The registry behind it does the rest: go-containerregistry's
// pkg/registry in tests, or a reverse proxy to a real registry.
//
// go-containerregistry's remote.Write with authn.Basic{Username: "_token", Password: token} works against
// it over plain HTTP on 127.0.0.1 (name.Insecure).
type ArtifactRegistry struct {
	auth Authenticator
	next http.Handler

	mu      sync.Mutex
	repos   map[string]bool // PROJECT/REPOSITORY
	counts  RegistryCounts
	uploads map[string]int // blob digest -> completed uploads
}

// RegistryCounts is what an ArtifactRegistry has seen since it was made or its counts were reset.
type RegistryCounts struct {
	Requests     int // every request, answered or refused
	Refused      int // refused for credentials (401, 403) or for the repository name (400, 404)
	Writes       int // accepted POST, PUT, PATCH and DELETE requests
	BlobUploads  int // blob uploads completed (the request that names the digest, answered 201)
	ManifestPuts int // manifests written
}

// Users Artifact Registry accepts with an OAuth access token as password: google.NewTokenSourceAuthenticator
// sends _token; docker login documentation uses oauth2accesstoken.
var tokenUsers = []string{"_token", "oauth2accesstoken"}

// NewArtifactRegistry puts the Artifact Registry front on registry; auth decides which access tokens are
// accepted.
func NewArtifactRegistry(auth Authenticator, registry http.Handler) *ArtifactRegistry {
	return &ArtifactRegistry{auth: auth, next: registry, repos: map[string]bool{}, uploads: map[string]int{}}
}

// StartArtifactRegistry serves an Artifact Registry front on go-containerregistry's in-memory registry on
// a loopback port until the test ends, and returns it with its host:port.
func StartArtifactRegistry(t testing.TB, auth Authenticator) (*ArtifactRegistry, string) {
	t.Helper()
	ar := NewArtifactRegistry(auth, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv, err := serveHTTP(ar)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.close)
	return ar, strings.TrimPrefix(srv.url, "http://")
}

// CreateRepository makes the Docker repository REPOSITORY of project, so that images
// HOST/PROJECT/REPOSITORY/IMAGE can be pushed and pulled.
func (a *ArtifactRegistry) CreateRepository(project, repository string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.repos[project+"/"+repository] = true
}

// Counts returns what the front has seen since it was made or last reset.
func (a *ArtifactRegistry) Counts() RegistryCounts {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts
}

// Uploads returns how many times the blob with digest (sha256:...) was uploaded.
func (a *ArtifactRegistry) Uploads(digest string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.uploads[digest]
}

// ResetCounts sets the counts to zero.
func (a *ArtifactRegistry) ResetCounts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts = RegistryCounts{}
	a.uploads = map[string]int{}
}

func (a *ArtifactRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.count(func(c *RegistryCounts) { c.Requests++ })
	name, op := splitRegistryPath(r.URL.Path)
	if refused := a.check(r, name); refused != nil {
		a.count(func(c *RegistryCounts) { c.Refused++ })
		if refused.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="Artifact Registry"`)
		}
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		refused.write(w)
		return
	}
	write := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodDelete
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	a.next.ServeHTTP(rec, r)
	if !write {
		return
	}
	digest := r.URL.Query().Get("digest")
	a.count(func(c *RegistryCounts) {
		c.Writes++
		switch {
		case op == "blobs" && digest != "" && rec.status == http.StatusCreated:
			c.BlobUploads++
			a.uploads[digest]++
		case op == "manifests" && r.Method == http.MethodPut && rec.status == http.StatusCreated:
			c.ManifestPuts++
		}
	})
}

// check refuses, as Artifact Registry does, a request outside /v2/, without an access token it accepts,
// or for an image outside a repository made with CreateRepository.
func (a *ArtifactRegistry) check(r *http.Request, name string) *httpError {
	if !strings.HasPrefix(r.URL.Path, "/v2/") {
		return registryError(http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.")
	}
	user, token, ok := r.BasicAuth()
	if !ok {
		return registryError(http.StatusUnauthorized, "UNAUTHORIZED", "Unauthenticated request. Unauthenticated requests do not have permission \"artifactregistry.repositories.downloadArtifacts\" on this resource.")
	}
	if !slices.Contains(tokenUsers, user) {
		return registryError(http.StatusUnauthorized, "UNAUTHORIZED", "Not authorized: user "+user+" is not _token or oauth2accesstoken, and the password must be an OAuth access token.")
	}
	_, err := a.auth.Authenticate(token)
	switch {
	case errors.Is(err, ErrInsufficientScope):
		return registryError(http.StatusForbidden, "DENIED", "Permission \"artifactregistry.repositories.uploadArtifacts\" denied: "+msgScope)
	case err != nil:
		return registryError(http.StatusUnauthorized, "UNAUTHORIZED", "The access token is invalid or has expired.")
	}
	if name == "" {
		return nil
	}
	parts := strings.Split(name, "/")
	if len(parts) < 3 {
		return registryError(http.StatusBadRequest, "NAME_INVALID", "Missing image name. Pushes should be of the form docker push HOST-NAME/PROJECT-ID/REPOSITORY/IMAGE")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.repos[parts[0]+"/"+parts[1]] {
		return registryError(http.StatusNotFound, "NAME_UNKNOWN", `Repository "`+parts[1]+`" not found`)
	}
	return nil
}

// splitRegistryPath splits /v2/NAME/OP/... into NAME and OP (blobs, manifests, tags, referrers); both are
// empty for /v2/ itself and other paths without a repository.
func splitRegistryPath(path string) (name, op string) {
	rest := strings.TrimPrefix(path, "/v2/")
	best := -1
	for _, o := range []string{"blobs", "manifests", "tags", "referrers"} {
		if i := strings.LastIndex(rest, "/"+o+"/"); i > best {
			best, op = i, o
		}
	}
	if best < 0 {
		return "", ""
	}
	return rest[:best], op
}

func (a *ArtifactRegistry) count(f func(*RegistryCounts)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.counts)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}
