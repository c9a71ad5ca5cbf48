package gcptest

import (
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// ArtifactRegistry is an http.Handler that puts Artifact Registry's Docker front on a registry. As Artifact
// Registry does, it answers a request without a Bearer token with a 401 and the challenge
// `Bearer realm="SCHEME://HOST/v2/token"`; its token endpoint exchanges basic auth with user _token or
// oauth2accesstoken and an access token its Authenticator accepts as password for a registry token, which
// registry requests then carry as Bearer. It serves only images PROJECT/REPOSITORY/IMAGE of repositories
// made with CreateRepository, with Artifact Registry's errors, and refuses blob mounts from another
// registry. The registry behind it does the rest: go-containerregistry's pkg/registry in tests, or a
// reverse proxy to a real registry.
//
// go-containerregistry's remote.Write with authn.Basic{Username: "_token", Password: token} (or
// google.NewTokenSourceAuthenticator) works against it over plain HTTP on 127.0.0.1 (name.Insecure): it
// follows the challenge to the token endpoint by itself.
type ArtifactRegistry struct {
	auth Authenticator
	next http.Handler

	mu      sync.Mutex
	repos   map[string]bool // PROJECT/REPOSITORY
	grants  map[string]grant
	counts  RegistryCounts
	uploads map[string]int // blob digest -> completed uploads

	httpFaults // FailHTTP, DropHTTP, FailedHTTP: injected before anything else, not counted
}

// RegistryCounts is what an ArtifactRegistry has seen since it was made or its counts were reset.
type RegistryCounts struct {
	Requests       int // every request, answered or refused, the token endpoint's included
	Refused        int // refused for credentials (401, 403), for the repository name (400, 404) or as a mount
	Writes         int // accepted POST, PUT, PATCH and DELETE requests
	BlobUploads    int // blob uploads completed (the request that names the digest, answered 201)
	ManifestPuts   int // manifests written
	TokenExchanges int // registry tokens the token endpoint issued
	RefusedMounts  int // blob mounts refused for naming another registry as their origin (also in Refused)
}

// NewArtifactRegistry puts the Artifact Registry front on registry; auth decides which access tokens are
// accepted.
func NewArtifactRegistry(auth Authenticator, registry http.Handler) *ArtifactRegistry {
	return &ArtifactRegistry{auth: auth, next: registry, repos: map[string]bool{}, grants: map[string]grant{}, uploads: map[string]int{}}
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

// ResetCounts sets the counts to zero. Registry tokens already issued stay valid.
func (a *ArtifactRegistry) ResetCounts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts = RegistryCounts{}
	a.uploads = map[string]int{}
}

func (a *ArtifactRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.faults.serve(w, r) {
		return
	}
	a.count(func(c *RegistryCounts) { c.Requests++ })
	if r.URL.Path == registryTokenPath {
		a.serveToken(w, r)
		return
	}
	name, op := splitRegistryPath(r.URL.Path)
	if refused := a.check(r, name, op); refused != nil {
		a.count(func(c *RegistryCounts) {
			c.Refused++
			if refused.mount {
				c.RefusedMounts++
			}
		})
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

// A registryRefusal is the front's "no" to a registry request: the error, the challenge a 401 carries,
// and whether it refused a mount.
type registryRefusal struct {
	err       *httpError
	challenge string
	mount     bool
}

func (f *registryRefusal) write(w http.ResponseWriter) {
	if f.challenge != "" {
		w.Header().Set("WWW-Authenticate", f.challenge)
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	f.err.write(w)
}

// check refuses, as Artifact Registry does, a request outside /v2/, without a token it accepts, for an
// image outside a repository made with CreateRepository, or mounting a blob from another registry.
func (a *ArtifactRegistry) check(r *http.Request, name, op string) *registryRefusal {
	if !strings.HasPrefix(r.URL.Path, "/v2/") {
		return &registryRefusal{err: registryError(http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.")}
	}
	if refused := a.authorize(r, name); refused != nil {
		return refused
	}
	if name == "" {
		return nil
	}
	project, repository, ok := splitImage(name)
	if !ok {
		return &registryRefusal{err: registryError(http.StatusBadRequest, "NAME_INVALID", "Missing image name. Pushes should be of the form docker push HOST-NAME/PROJECT-ID/REPOSITORY/IMAGE")}
	}
	a.mu.Lock()
	known := a.repos[project+"/"+repository]
	a.mu.Unlock()
	if !known {
		return &registryRefusal{err: registryError(http.StatusNotFound, "NAME_UNKNOWN", `Repository "`+repository+`" not found`)}
	}
	// A mount names its origin registry (go-containerregistry's origin parameter); the blob cannot come from
	// a registry other than this one.
	q := r.URL.Query()
	if op == "blobs" && r.Method == http.MethodPost && q.Get("mount") != "" && q.Get("origin") != "" && q.Get("origin") != r.Host {
		return &registryRefusal{mount: true, err: registryError(http.StatusForbidden, "DENIED",
			"Cannot mount blob "+q.Get("mount")+" from "+q.Get("origin")+"/"+q.Get("from")+": it is not on this registry; upload it instead.")}
	}
	return nil
}

// splitImage splits PROJECT/REPOSITORY/IMAGE; ok is false without an image.
func splitImage(name string) (project, repository string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) < 3 {
		return "", "", false
	}
	return parts[0], parts[1], true
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
