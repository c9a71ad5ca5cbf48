package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
)

// Push writes img under tag and returns the digest it is stored under. Blobs the registry already has are
// not sent again (nor read from the base registry), and when tag already names img nothing is written at
// all: remote.Write HEADs the tag first. Errors are a *RepositoryNotFoundError, a *PermissionError, a
// *BaseError (a base layer could not be read) or another error naming the repository.
func Push(ctx context.Context, img v1.Image, tag name.Tag, opts ...Option) (name.Digest, PushStats, error) {
	tag, err := secureTag(tag)
	if err != nil {
		return name.Digest{}, PushStats{}, err
	}
	repo := tag.Context()
	m, err := img.Manifest()
	if err != nil {
		return name.Digest{}, PushStats{}, pushError(repo, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return name.Digest{}, PushStats{}, pushError(repo, err)
	}

	o := makeOptions(opts)
	rec := &recorder{inner: o.transport, uploaded: map[string]bool{}}
	ropts := append(o.remote(ctx, tag.Registry, rec), retries()...)
	if o.progress != nil {
		updates := make(chan v1.Update, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range updates {
				o.progress(u)
			}
		}()
		// remote.Write closes updates when it returns (it can fail before that only on conflicting auth
		// options, which o.remote never gives it).
		defer func() { <-done }()
		ropts = append(ropts, remote.WithProgress(updates))
	}

	err = remote.Write(tag, localMounts{Image: img, registry: tag.RegistryStr()}, ropts...)
	stats := rec.stats(m)
	if err != nil {
		stats.Unchanged = false
		return name.Digest{}, stats, pushError(repo, err)
	}
	return repo.Digest(digest.String()), stats, nil
}

// PushStats says what a push sent. Blobs are the image's layers and its config.
type PushStats struct {
	Uploaded      int   // blobs sent to the registry
	UploadedBytes int64 // their compressed size
	Present       int   // blobs the registry already had (or mounted from another of its repositories)
	PresentBytes  int64
	// Unchanged is true when the tag already named this image, so nothing was written.
	Unchanged bool
}

func (s PushStats) String() string {
	if s.Unchanged {
		return fmt.Sprintf("image unchanged: the registry already had it (%d %s, %s)", s.Present, plural(s.Present, "blob"), FormatBytes(s.PresentBytes))
	}
	return fmt.Sprintf("pushed %d %s (%s), %d already present (%s)",
		s.Uploaded, plural(s.Uploaded, "blob"), FormatBytes(s.UploadedBytes), s.Present, FormatBytes(s.PresentBytes))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// FormatBytes formats a byte count in decimal units, as registries and the Cloud console show sizes.
func FormatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// recorder watches the requests remote.Write makes: a blob upload ends in a PUT carrying the blob's
// digest, a manifest write is a PUT to /v2/<repo>/manifests/<ref>. Everything else is a read.
type recorder struct {
	inner http.RoundTripper

	mu           sync.Mutex
	uploaded     map[string]bool
	manifestPuts int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.inner.RoundTrip(req)
	if err != nil || req.Method != http.MethodPut || resp.StatusCode/100 != 2 {
		return resp, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := req.URL.Query().Get("digest"); d != "" {
		r.uploaded[d] = true
	} else if strings.HasPrefix(req.URL.Path, "/v2/") && strings.Contains(req.URL.Path, "/manifests/") {
		r.manifestPuts++
	}
	return resp, err
}

func (r *recorder) stats(m *v1.Manifest) PushStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := PushStats{Unchanged: r.manifestPuts == 0}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if r.uploaded[d.Digest.String()] {
			s.Uploaded++
			s.UploadedBytes += d.Size
		} else {
			s.Present++
			s.PresentBytes += d.Size
		}
	}
	return s
}

// retries are go-containerregistry's retry options set to gcp.Retry. Its transport then asks again after
// a 429 or 5xx (the ping, the token exchange, HEADs, manifest reads); a blob upload or manifest PUT that
// fails so, or whose connection drops mid-body, is done again whole: HEAD, POST, PATCH of the whole blob,
// PUT (go-containerregistry's uploadOne and commitManifest). A 401, 403 or 404 is never tried again.
func retries() []remote.Option {
	p := gcp.Retry
	return []remote.Option{
		// No Cap: go-containerregistry stops retrying once the pause reaches it; Steps bounds the tries.
		remote.WithRetryBackoff(remote.Backoff{Duration: p.Initial, Factor: p.Multiplier, Jitter: 0.5, Steps: p.Attempts}),
		remote.WithRetryStatusCodes(gcp.RetryStatusCodes...),
		remote.WithRetryPredicate(retryable),
	}
}

// retryable is go-containerregistry's retry predicate: a registry error with a status RetryableStatus
// accepts, or a connection that dropped. Its default also retries any error a registry calls temporary,
// such as a 400 BLOB_UPLOAD_INVALID, which a new try does not fix.
func retryable(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return gcp.RetryableStatus(terr.StatusCode)
	}
	return gcp.Dropped(err) || errors.Is(err, net.ErrClosed)
}
