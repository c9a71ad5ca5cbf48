package image

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushFixture is a base image on one registry and an empty target registry, as ghcr.io and Artifact
// Registry are.
type pushFixture struct {
	src, dst *testRegistry
	baseRef  string
	bin      string
	layers   int // in the base
}

func newPushFixture(tb testing.TB, mt types.MediaType, layerSizes ...int) *pushFixture {
	tb.Helper()
	f := &pushFixture{src: newRegistry(tb), dst: newRegistry(tb), layers: len(layerSizes)}
	f.baseRef = upload(tb, f.src, "mlflow/mlflow:v3.17.2-full", syntheticBase(tb, mt, "amd64", 1, layerSizes...))
	f.bin = fakeServerBinary(tb, elf.EM_X86_64, false, 200_000, 1)
	return f
}

// build reads the base afresh, as a new run of the action does, and builds on it.
func (f *pushFixture) build(tb testing.TB, revision string) v1.Image {
	tb.Helper()
	base, err := Base(context.Background(), f.baseRef)
	if err != nil {
		tb.Fatal(err)
	}
	img, err := Build(base, f.bin, Options{Source: "https://github.com/acme/models", Revision: revision})
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

func (f *pushFixture) tag(tb testing.TB, revision string) name.Tag {
	tb.Helper()
	ref, err := Reference(f.dst.host + "/acme/mlflow/server:" + revision)
	if err != nil {
		tb.Fatal(err)
	}
	return ref.(name.Tag)
}

func TestPush(t *testing.T) {
	t.Parallel()
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		t.Run(string(mt), func(t *testing.T) {
			t.Parallel()
			f := newPushFixture(t, mt, 30_000, 50_000, 20_000)
			ctx := context.Background()
			blobs := f.layers + 2 // the base's layers, the server layer, the config

			// First push: every blob goes up, streamed from the base registry.
			img := f.build(t, "rev1")
			var mu sync.Mutex
			var last v1.Update
			got, stats, err := Push(ctx, img, f.tag(t, "rev1"), WithProgress(func(u v1.Update) {
				mu.Lock()
				defer mu.Unlock()
				last = u
			}))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := img.Digest()
			if got.DigestStr() != want.String() || got.Context().Name() != f.dst.host+"/acme/mlflow/server" {
				t.Errorf("Push returned %s, want %s@%s", got, f.dst.host+"/acme/mlflow/server", want)
			}
			if n := f.dst.blobUploads(); n != blobs {
				t.Errorf("first push uploaded %d blobs, want %d", n, blobs)
			}
			if n := f.dst.manifestPuts(); n != 1 {
				t.Errorf("first push wrote %d manifests, want 1", n)
			}
			size := imageSize(t, img)
			if stats.Uploaded != blobs || stats.UploadedBytes != size || stats.Present != 0 || stats.Unchanged {
				t.Errorf("first push stats %+v, want %d blobs (%d bytes) uploaded", stats, blobs, size)
			}
			if last.Total == 0 || last.Complete != last.Total || last.Error != nil {
				t.Errorf("last progress update %+v, want complete", last)
			}
			pulled, err := remote.Image(got)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := pulled.Digest(); d != want {
				t.Errorf("the registry holds %s under %s", d, got)
			}
			t.Log(stats)

			// Re-run with nothing changed: no write request at all.
			f.dst.reset()
			f.src.reset()
			_, stats, err = Push(ctx, f.build(t, "rev1"), f.tag(t, "rev1"))
			if err != nil {
				t.Fatal(err)
			}
			if w := f.dst.writes(); len(w) != 0 {
				t.Errorf("re-push wrote %q, want nothing", w)
			}
			// remote.Write checks the tag before anything else: a ping and a HEAD are all it costs.
			var reqs []string
			for _, r := range f.dst.seen() {
				reqs = append(reqs, r.Method+" "+r.URL.Path)
			}
			if want := []string{"GET /v2/", "HEAD /v2/acme/mlflow/server/manifests/rev1"}; !slices.Equal(reqs, want) {
				t.Errorf("re-push made %q, want %q", reqs, want)
			}
			if n := f.src.blobGets(); n != 1 {
				t.Errorf("re-push read %d blobs from the base registry, want only the config", n)
			}
			if !stats.Unchanged || stats.Uploaded != 0 || stats.Present != blobs {
				t.Errorf("re-push stats %+v, want unchanged", stats)
			}
			t.Log(stats)

			// A new revision: only its config and manifest go up.
			f.dst.reset()
			f.src.reset()
			img = f.build(t, "rev2")
			_, stats, err = Push(ctx, img, f.tag(t, "rev2"))
			if err != nil {
				t.Fatal(err)
			}
			if n := f.dst.blobUploads(); n != 1 {
				t.Errorf("new revision uploaded %d blobs, want only the config", n)
			}
			if n := f.dst.manifestPuts(); n != 1 {
				t.Errorf("new revision wrote %d manifests, want 1", n)
			}
			if n := f.src.blobGets(); n != 1 {
				t.Errorf("new revision read %d blobs from the base registry, want only the config", n)
			}
			m, _ := img.Manifest()
			if stats.Uploaded != 1 || stats.UploadedBytes != m.Config.Size || stats.Present != blobs-1 || stats.Unchanged {
				t.Errorf("new revision stats %+v, want the config uploaded and %d blobs present", stats, blobs-1)
			}
			t.Log(stats)
		})
	}
}

// imageSize is the size of the image's blobs.
func imageSize(tb testing.TB, img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		tb.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func TestPushErrors(t *testing.T) {
	t.Parallel()
	// Artifact Registry's answers, on any request under the repository (not the /v2/ ping).
	for what, tc := range map[string]struct {
		status    int
		code, msg string
		check     func(t *testing.T, err error)
	}{
		"repository missing": {http.StatusNotFound, "NAME_UNKNOWN", `Repository "models" not found`, func(t *testing.T, err error) {
			var e *RepositoryNotFoundError
			if !errors.As(err, &e) {
				t.Fatalf("%v (%T), want a *RepositoryNotFoundError", err, err)
			}
			want := "gcloud artifacts repositories create models --repository-format=docker --location=europe-west4 --project=acme-ml"
			if e.Create != want || e.Repository != "europe-west4-docker.pkg.dev/acme-ml/models/mlflow" {
				t.Errorf("got %+v, want Create %q", e, want)
			}
		}},
		"unauthorized": {http.StatusUnauthorized, "UNAUTHORIZED", "authentication failed", func(t *testing.T, err error) {
			var e *PermissionError
			if !errors.As(err, &e) || e.Role != "roles/artifactregistry.writer" {
				t.Fatalf("%v (%T), want a *PermissionError naming roles/artifactregistry.writer", err, err)
			}
		}},
		"denied": {http.StatusForbidden, "DENIED", `Permission "artifactregistry.repositories.uploadArtifacts" denied on resource "projects/acme-ml/locations/europe-west4/repositories/models" (or it may not exist)`, func(t *testing.T, err error) {
			var e *PermissionError
			if !errors.As(err, &e) {
				t.Fatalf("%v (%T), want a *PermissionError", err, err)
			}
			want := "gcloud artifacts repositories add-iam-policy-binding models --location=europe-west4 --project=acme-ml --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles/artifactregistry.writer"
			if e.Grant != want {
				t.Errorf("Grant %q, want %q", e.Grant, want)
			}
			if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "gcloud artifacts repositories create models") {
				t.Errorf("%q leaves out the status or the command that creates a missing repository", err)
			}
		}},
	} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			dst, tr := newTLSRegistry(t)
			dst.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == "/v2/" {
					return false
				}
				writeRegistryError(w, tc.status, tc.code, tc.msg)
				return true
			})
			base := syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 1000)
			img, err := Build(base, fakeServerBinary(t, elf.EM_X86_64, false, 1000, 1), Options{Revision: "abc"})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := Reference("europe-west4-docker.pkg.dev/acme-ml/models/mlflow:abc")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = Push(context.Background(), img, ref.(name.Tag), WithTransport(tr))
			if err == nil {
				t.Fatal("Push succeeded")
			}
			tc.check(t, err)
			if !strings.Contains(err.Error(), "europe-west4-docker.pkg.dev/acme-ml/models/mlflow") {
				t.Errorf("%q does not name the repository", err)
			}
			t.Log(err)
			for _, w := range dst.writes() {
				if !strings.HasPrefix(w, "POST ") {
					t.Errorf("went on after the registry refused: %s", w)
				}
			}
		})
	}
}

func TestPushReportsBaseLayerErrors(t *testing.T) {
	t.Parallel()
	f := newPushFixture(t, types.OCIManifestSchema1, 1000, 2000)
	img := f.build(t, "rev1")
	// The base registry loses a layer after the manifest was read.
	f.src.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return true
		}
		return false
	})
	_, _, err := Push(context.Background(), img, f.tag(t, "rev1"))
	var be *BaseError
	if !errors.As(err, &be) || be.Ref != f.baseRef || !strings.Contains(err.Error(), "base_image") {
		t.Fatalf("Push: %v, want a *BaseError naming %s", err, f.baseRef)
	}
	if strings.Contains(err.Error(), "tag exist") {
		t.Errorf("%q blames the tag for a missing layer", err)
	}
	t.Log(err)
}

// TestPushRefusesPlainHTTP: a registry on a private address is not loopback, so it gets HTTPS only,
// although go-containerregistry would fall back to HTTP there.
func TestPushRefusesPlainHTTP(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t) // plain HTTP
	ref, err := Reference("10.20.30.40:5000/acme/mlflow:abc")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Build(syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 100), fakeServerBinary(t, elf.EM_X86_64, false, 100, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Push(context.Background(), img, ref.(name.Tag), WithTransport(&http.Transport{
		DialContext: dialTo(reg.Listener.Addr().String()),
	}))
	if err == nil {
		t.Fatal("Push over plain HTTP to a private address succeeded")
	}
	if seen := reg.seen(); len(seen) != 0 {
		t.Errorf("registry on a private address got %d plain HTTP requests", len(seen))
	}
	if !strings.Contains(err.Error(), "refusing plain http to 10.20.30.40:5000") {
		t.Errorf("%q does not say plain HTTP was refused", err)
	}
}

func TestPushStatsString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    PushStats
		want string
	}{
		{PushStats{Uploaded: 1, UploadedBytes: 9_800_000, Present: 14, PresentBytes: 1_234_000_000}, "pushed 1 blob (9.8 MB), 14 already present (1.2 GB)"},
		{PushStats{Uploaded: 16, UploadedBytes: 999, Present: 0}, "pushed 16 blobs (999 B), 0 already present (0 B)"},
		{PushStats{Present: 16, PresentBytes: 300_000_000, Unchanged: true}, "image unchanged: the registry already had it (16 blobs, 300.0 MB)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
	if !slices.Equal([]string{FormatBytes(0), FormatBytes(1500), FormatBytes(2_500_000_000_000)}, []string{"0 B", "1.5 kB", "2.5 TB"}) {
		t.Error(FormatBytes(1500))
	}
}

// BenchmarkPush pushes an image on a ~50 MB base (5 layers of 10 MB, streamed from one in-process
// registry to another) with a 10 MB server program:
//
//	go test -run '^$' -bench Push ./internal/image/
//
// "first" is a push to an empty registry, "unchanged" a re-push of the same image to the same tag, and
// "new-revision" a push of an image that differs only in its revision label.
func BenchmarkPush(b *testing.B) {
	const layer = 10_000_000
	f := newPushFixture(b, types.OCIManifestSchema1, layer, layer, layer, layer, layer)
	f.bin = fakeServerBinary(b, elf.EM_X86_64, false, layer, 1)
	ctx := context.Background()
	img := f.build(b, "rev1")
	size := imageSize(b, img)

	b.Run("first", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			f.dst = startRegistry()
			b.StartTimer()
			if _, _, err := Push(ctx, img, f.tag(b, "rev1")); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			f.dst.Close()
			b.StartTimer()
		}
	})

	f.dst = newRegistry(b)
	if _, _, err := Push(ctx, img, f.tag(b, "rev1")); err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if _, stats, err := Push(ctx, img, f.tag(b, "rev1")); err != nil || !stats.Unchanged {
				b.Fatal(stats, err)
			}
		}
	})

	// Each new revision changes the label as Build would, without compressing the program again.
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	i := 0 // across runs of the sub-benchmark (-count)
	b.Run("new-revision", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			i++
			rev := fmt.Sprintf("rev%d", i+1)
			cfg := cf.Config.DeepCopy()
			cfg.Labels[LabelRevision] = rev
			next, err := mutate.Config(img, *cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, stats, err := Push(ctx, next, f.tag(b, rev)); err != nil || stats.Uploaded != 1 {
				b.Fatal(stats, err)
			}
		}
	})
}

// TestPushProgress: a registry that answers an upload's PATCH with a 500 before reading its body makes
// the upload start again while the first body may still be being sent. Progress is counted (under the
// race detector) without going past the image's size, shows a slow upload partly done, ends complete,
// and is never reported after Push returns.
func TestPushProgress(t *testing.T) {
	t.Parallel()
	f := newPushFixture(t, types.OCIManifestSchema1, 4_000_000, 3_000_000)
	var mu sync.Mutex
	fails := 0
	f.dst.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPatch {
			return false
		}
		if fails < 4 {
			fails++
			w.Header().Set("Connection", "close")
			writeRegistryError(w, http.StatusInternalServerError, "UNKNOWN", "try again")
			return true
		}
		// About 2.5 s for the 4 MB layer, whatever size of read the server makes: longer than
		// progressEvery, so at least one update comes while it is being sent.
		r.Body = slowBody{r.Body}
		return false
	})
	img := f.build(t, "rev1")
	size := imageSize(t, img)
	var updates []v1.Update
	returned := false
	_, _, err := Push(context.Background(), img, f.tag(t, "rev1"), WithProgress(func(u v1.Update) {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			t.Errorf("progress %+v reported after Push returned", u)
		}
		updates = append(updates, u)
	}))
	mu.Lock()
	defer mu.Unlock()
	returned = true
	if err != nil {
		t.Fatal(err)
	}
	if fails != 4 {
		t.Errorf("%d PATCHes failed, want 4", fails)
	}
	partly := false
	for _, u := range updates {
		if u.Total != size || u.Complete > u.Total || u.Error != nil {
			t.Errorf("progress update %+v, want a part of %d", u, size)
		}
		partly = partly || (u.Complete > 0 && u.Complete < u.Total)
	}
	if !partly {
		t.Errorf("no update showed the upload partly done: %+v", updates)
	}
	if len(updates) == 0 || updates[len(updates)-1].Complete != size {
		t.Errorf("the last progress update is not complete: %+v", updates)
	}
}

// slowBody reads at most 32 KiB each 20 ms.
type slowBody struct{ io.ReadCloser }

func (b slowBody) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return b.ReadCloser.Read(p[:min(len(p), 32<<10)])
}
