package gcptest

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestArtifactRegistryPush(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	ar, host := StartArtifactRegistry(t, tokens)
	ar.CreateRepository("my-project", "mlflow")
	tok, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "_token", Password: tok.AccessToken})
	ref, err := name.ParseReference(host+"/my-project/mlflow/server:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, auth); err != nil {
		t.Fatalf("remote.Write: %v", err)
	}
	got := ar.Counts()
	if got.BlobUploads != 3 || got.ManifestPuts != 1 || got.Refused != 1 { // the refusal is the first, anonymous ping
		t.Errorf("counts after a push = %+v, want 3 blobs (2 layers and the config) and 1 manifest", got)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	if ar.Uploads(d.String()) != 1 {
		t.Errorf("Uploads(%s) = %d, want 1", d, ar.Uploads(d.String()))
	}

	// The same image again costs reads only.
	ar.ResetCounts()
	if err := remote.Write(ref, img, auth); err != nil {
		t.Fatal(err)
	}
	if got := ar.Counts(); got.Writes != 0 || got.Requests == 0 {
		t.Errorf("counts after pushing the same image = %+v, want no write", got)
	}

	pulled, err := remote.Image(ref, auth)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("pulled %s, pushed %s", got, want)
	}
	// _token and oauth2accesstoken are both Artifact Registry's users for access tokens.
	if _, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "oauth2accesstoken", Password: tok.AccessToken})); err != nil {
		t.Errorf("oauth2accesstoken: %v", err)
	}
}

func TestArtifactRegistryRefuses(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	ar, host := StartArtifactRegistry(t, tokens)
	ar.CreateRepository("my-project", "mlflow")
	tok, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := serviceAccount(t, tokens, "https://www.googleapis.com/auth/devstorage.read_only").Token()
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		image    string
		auth     authn.Authenticator
		status   int
		wantCode transport.ErrorCode
		wantMsg  string
	}{
		{"anonymous", "my-project/mlflow/server", authn.Anonymous, 401, transport.UnauthorizedErrorCode, "Unauthenticated request"},
		{"user name of a password login", "my-project/mlflow/server", &authn.Basic{Username: "admin", Password: tok.AccessToken}, 401, transport.UnauthorizedErrorCode, "oauth2accesstoken"},
		{"token it did not issue", "my-project/mlflow/server", &authn.Basic{Username: "_token", Password: "ya29.forged"}, 401, transport.UnauthorizedErrorCode, "invalid or has expired"},
		{"token without cloud-platform", "my-project/mlflow/server", &authn.Basic{Username: "_token", Password: narrow.AccessToken}, 403, transport.DeniedErrorCode, "denied"},
		{"repository never created", "my-project/nope/server", &authn.Basic{Username: "_token", Password: tok.AccessToken}, 404, transport.NameUnknownErrorCode, `Repository "nope" not found`},
		{"no image name", "my-project/mlflow", &authn.Basic{Username: "_token", Password: tok.AccessToken}, 400, transport.NameInvalidErrorCode, "Missing image name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := name.ParseReference(host+"/"+tt.image+":v1", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			// A push fails at its first request (a HEAD, without a body); a GET shows the error itself.
			var te *transport.Error
			if err := remote.Write(ref, img, remote.WithAuth(tt.auth)); !errors.As(err, &te) || te.StatusCode != tt.status {
				t.Fatalf("remote.Write error = %v, want status %d", err, tt.status)
			}
			_, err = remote.Get(ref, remote.WithAuth(tt.auth))
			if !errors.As(err, &te) || len(te.Errors) == 0 {
				t.Fatalf("remote.Get error = %v, want a registry error", err)
			}
			if te.Errors[0].Code != tt.wantCode || !strings.Contains(te.Errors[0].Message, tt.wantMsg) {
				t.Errorf("error = %s %q, want %s containing %q", te.Errors[0].Code, te.Errors[0].Message, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if got := ar.Counts(); got.Writes != 0 || got.BlobUploads != 0 {
		t.Errorf("refused pushes wrote: %+v", got)
	}
}
