package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	rec := newRecorder(o.transport, m)
	ropts := append(o.remote(ctx, tag.Registry, rec), retries()...)
	stopProgress := func(bool) {}
	if o.progress != nil {
		stopProgress = reportProgress(rec, o.progress)
	}

	err = remote.Write(tag, localMounts{Image: img, registry: tag.RegistryStr()}, ropts...)
	// Once the manifest is written (or was there), the registry has every blob.
	stopProgress(err == nil)
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
// digest, a manifest write is a PUT to /v2/<repo>/manifests/<ref>. Everything else is a read. It also
// counts progress: the blobs found present (a HEAD answered 200, a mount answered 201) or uploaded, and
// the bytes of the upload bodies being sent now.
//
// Progress is counted here rather than with remote.WithProgress, whose counters race with an upload
// body that net/http is still sending when the registry has already refused it (a 500 before reading
// the body), and whose count then goes past the total.
type recorder struct {
	inner http.RoundTripper
	sizes map[string]int64 // the image's blobs (config and layers) by digest

	mu           sync.Mutex
	uploaded     map[string]bool
	done         map[string]bool // present or uploaded
	sending      map[*countingBody]bool
	manifestPuts int
}

func newRecorder(inner http.RoundTripper, m *v1.Manifest) *recorder {
	r := &recorder{inner: inner, sizes: map[string]int64{}, uploaded: map[string]bool{}, done: map[string]bool{},
		sending: map[*countingBody]bool{}}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		r.sizes[d.Digest.String()] = d.Size
	}
	return r
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
		body := &countingBody{ReadCloser: req.Body}
		req = req.Clone(req.Context())
		req.Body = body
		r.mu.Lock()
		r.sending[body] = true
		r.mu.Unlock()
		// net/http may go on reading the body after RoundTrip returns; it no longer counts then.
		defer func() {
			r.mu.Lock()
			delete(r.sending, body)
			r.mu.Unlock()
		}()
	}
	resp, err := r.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch q := req.URL.Query(); {
	case req.Method == http.MethodHead && resp.StatusCode == http.StatusOK && strings.Contains(req.URL.Path, "/blobs/"):
		r.done[path.Base(req.URL.Path)] = true
	case req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated && q.Get("mount") != "":
		r.done[q.Get("mount")] = true
	case req.Method != http.MethodPut || resp.StatusCode/100 != 2:
	case q.Get("digest") != "":
		r.uploaded[q.Get("digest")] = true
		r.done[q.Get("digest")] = true
	case strings.HasPrefix(req.URL.Path, "/v2/") && strings.Contains(req.URL.Path, "/manifests/"):
		r.manifestPuts++
	}
	return resp, err
}

// progress returns the image's size and how much of it the registry has or is being sent.
func (r *recorder) progress() v1.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	var u v1.Update
	for d, size := range r.sizes {
		u.Total += size
		if r.done[d] {
			u.Complete += size
		}
	}
	for b := range r.sending {
		u.Complete += b.n.Load()
	}
	u.Complete = min(u.Complete, u.Total)
	return u
}

// countingBody counts the bytes read from an upload's body.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// progressEvery is how often Push looks at its progress while it writes.
const progressEvery = time.Second

// reportProgress calls f with rec's progress every progressEvery while it changes, from one goroutine.
// stop ends that, and calls f once more with the progress at that moment, all of it when complete; f
// is not called after stop returns.
func reportProgress(rec *recorder, f func(v1.Update)) (stop func(complete bool)) {
	quit, done := make(chan struct{}), make(chan struct{})
	var complete bool
	go func() {
		defer close(done)
		tick := time.NewTicker(progressEvery)
		defer tick.Stop()
		var last v1.Update
		for {
			select {
			case <-quit:
				u := rec.progress()
				if complete {
					u.Complete = u.Total
				}
				if u != last {
					f(u)
				}
				return
			case <-tick.C:
				if u := rec.progress(); u != last {
					f(u)
					last = u
				}
			}
		}
	}()
	return func(c bool) {
		complete = c
		close(quit)
		<-done
	}
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
