package image

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// upload puts img (a v1.Image or v1.ImageIndex) on reg under repo:tag and returns the reference.
func upload(tb testing.TB, reg *testRegistry, ref string, img any) string {
	tb.Helper()
	full := reg.host + "/" + ref
	r, err := Reference(full)
	if err != nil {
		tb.Fatal(err)
	}
	switch img := img.(type) {
	case v1.Image:
		err = remote.Write(r, img)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, img)
	}
	if err != nil {
		tb.Fatal(err)
	}
	reg.reset()
	return full
}

func TestBaseResolvesIndexToAMD64(t *testing.T) {
	t.Parallel()
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		t.Run(string(mt), func(t *testing.T) {
			t.Parallel()
			reg := newRegistry(t)
			idx, amd := syntheticIndex(t, mt)
			ref := upload(t, reg, "mlflow/mlflow:v3.17.2-full", idx)

			base, err := Base(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := base.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := amd.Digest(); got != want {
				t.Errorf("Base resolved %s, want the amd64 image %s", got, want)
			}
			if gets := reg.blobGets(); gets != 1 {
				t.Errorf("Base read %d blobs, want only the config", gets)
			}
			// Layers stay mountable, so a push to another repository of the same registry need not copy them.
			ls, err := base.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				if _, ok := l.(*remote.MountableLayer); !ok {
					t.Errorf("base layer is a %T, want a *remote.MountableLayer", l)
				}
			}
		})
	}
}

func TestBaseErrors(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	arm := upload(t, reg, "mlflow/mlflow:arm", syntheticBase(t, types.OCIManifestSchema1, "arm64", 1, 100))
	for name, tc := range map[string]struct {
		ref  string
		want string
	}{
		"missing tag":      {reg.host + "/mlflow/mlflow:v2.0.0-full", "check that the image and tag exist"},
		"other platform":   {arm, "it is a linux/arm64 image; Cloud Run needs linux/amd64"},
		"invalid":          {"ghcr.io/Mlflow:x:y", "could not parse"},
		"no amd64 in list": {upload(t, reg, "mlflow/mlflow:list", armOnlyIndex(t)), "linux/amd64"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Base(context.Background(), tc.ref)
			var be *BaseError
			if !errors.As(err, &be) || be.Ref != tc.ref {
				t.Fatalf("Base(%q): %v, want a *BaseError naming it", tc.ref, err)
			}
			for _, want := range []string{tc.ref, "base_image", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestBaseAuth checks that credentials go only to the registry WithAuth names: the base is pulled
// anonymously from anywhere else.
func TestBaseAuth(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	ref := upload(t, reg, "team/mlflow:base", syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 100))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("_token:secret"))
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == want {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return true
	})
	auth := &authn.Basic{Username: "_token", Password: "secret"}
	elsewhere, err := name.NewRegistry("us-docker.pkg.dev")
	if err != nil {
		t.Fatal(err)
	}
	same, err := name.NewRegistry(reg.host)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Base(context.Background(), ref, WithAuth(elsewhere, auth)); err == nil || !strings.Contains(err.Error(), "pulled anonymously") {
		t.Errorf("base on another registry than the credentials': %v, want an error about anonymous pulls", err)
	}
	for _, r := range reg.seen() {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("credentials sent to a registry WithAuth did not name: %s %s", r.Method, r.URL)
		}
	}
	if _, err := Base(context.Background(), ref, WithAuth(same, auth)); err != nil {
		t.Errorf("base on the credentials' registry: %v", err)
	}
}

func armOnlyIndex(tb testing.TB) v1.ImageIndex {
	arm := syntheticBase(tb, types.OCIManifestSchema1, "arm64", 2, 100)
	return mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        arm,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}},
	})
}
