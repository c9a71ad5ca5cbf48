package image

import (
	"context"
	"debug/elf"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// mounts lists the blob mounts a registry was asked for, as "DIGEST from REPO at ORIGIN".
func (r *testRegistry) mounts() []string {
	var out []string
	for _, req := range r.seen() {
		q := req.URL.Query()
		if req.Method == http.MethodPost && q.Get("mount") != "" {
			out = append(out, q.Get("mount")+" from "+q.Get("from")+" at "+q.Get("origin"))
		}
	}
	return out
}

// TestPushMountsNoLayerFromAnotherRegistry: a base on another registry (ghcr.io for the official image) is
// streamed through, without first asking the target to mount each layer from there.
func TestPushMountsNoLayerFromAnotherRegistry(t *testing.T) {
	t.Parallel()
	f := newPushFixture(t, types.OCIManifestSchema1, 1000, 2000, 3000)
	img := f.build(t, "rev1")
	got, stats, err := Push(context.Background(), img, f.tag(t, "rev1"))
	if err != nil {
		t.Fatal(err)
	}
	if m := f.dst.mounts(); len(m) != 0 {
		t.Errorf("asked the target registry for mounts %q, want none: the base is on %s", m, f.src.host)
	}
	if want, _ := img.Digest(); got.DigestStr() != want.String() || stats.Uploaded != f.layers+2 {
		t.Errorf("pushed %s (%+v), want %s with every blob uploaded", got, stats, want)
	}
}

// TestPushMountsFromItsOwnRegistry: layers of a base on the registry pushed to may still be mounted.
func TestPushMountsFromItsOwnRegistry(t *testing.T) {
	t.Parallel()
	dst := newRegistry(t)
	f := &pushFixture{src: dst, dst: dst, layers: 2}
	f.baseRef = upload(t, dst, "mlflow/mlflow:v3.17.2-full", syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 1000, 2000))
	f.bin = fakeServerBinary(t, elf.EM_X86_64, false, 1000, 1)
	img := f.build(t, "rev1")
	// go-containerregistry's registry shares blobs between repositories; this one does not, so the push
	// has to mount them.
	dst.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/acme/mlflow/server/blobs/") {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		return false
	})
	if _, _, err := Push(context.Background(), img, f.tag(t, "rev1")); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	var want []string
	for _, l := range m.Layers[:f.layers] {
		want = append(want, l.Digest.String()+" from mlflow/mlflow at "+dst.host)
	}
	got := f.dst.mounts()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("mounts %q, want the base's layers %q", got, want)
	}
}

// TestPushToArtifactRegistry pushes a base from another registry to the Artifact Registry stand-in, which
// challenges, exchanges tokens and refuses mounts from other registries as Artifact Registry does.
func TestPushToArtifactRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newPushFixture(t, types.DockerManifestSchema2, 1000, 2000, 3000)
	tokens := gcptest.StartTokenServer(t)
	ar, host := gcptest.StartArtifactRegistry(t, tokens)
	ar.CreateRepository("acme", "mlflow")
	ts, err := tokens.TokenSource(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := name.NewRegistry(host)
	if err != nil {
		t.Fatal(err)
	}
	auth := WithAuth(reg, google.NewTokenSourceAuthenticator(ts))
	ref, err := Reference(host + "/acme/mlflow/server:rev1")
	if err != nil {
		t.Fatal(err)
	}
	tag := ref.(name.Tag)

	img := f.build(t, "rev1")
	got, _, err := Push(ctx, img, tag, auth)
	if err != nil {
		t.Fatal(err)
	}
	blobs := f.layers + 2
	// The one refusal is the first ping, which carries no credentials and gets the challenge.
	if c := ar.Counts(); c.RefusedMounts != 0 || c.Refused != 1 || c.TokenExchanges != 1 || c.BlobUploads != blobs || c.ManifestPuts != 1 {
		t.Errorf("first push: %+v, want no mount attempt, only the ping refused, 1 token exchange, %d blobs and 1 manifest", c, blobs)
	}
	if want, _ := img.Digest(); got.DigestStr() != want.String() {
		t.Errorf("pushed %s, want %s", got, want)
	}

	ar.ResetCounts()
	if _, stats, err := Push(ctx, f.build(t, "rev1"), tag, auth); err != nil || !stats.Unchanged {
		t.Fatalf("re-push: %+v, %v", stats, err)
	}
	if c := ar.Counts(); c.Writes != 0 || c.Refused != 1 {
		t.Errorf("re-push: %+v, want no write", c)
	}
}
