package gcptest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
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
	// The one refusal is the first, anonymous ping, whose challenge sends the client to the token endpoint.
	if got.BlobUploads != 3 || got.ManifestPuts != 1 || got.Refused != 1 || got.TokenExchanges != 1 || got.RefusedMounts != 0 {
		t.Errorf("counts after a push = %+v, want 3 blobs (2 layers and the config), 1 manifest, 1 token exchange and only the ping refused", got)
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
		{"anonymous", "my-project/mlflow/server", authn.Anonymous, 403, transport.DeniedErrorCode, `Unauthenticated request. Unauthenticated requests do not have permission "artifactregistry.repositories.downloadArtifacts" on resource "projects/my-project/locations/-/repositories/mlflow"`},
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

// TestArtifactRegistryAuth follows Artifact Registry's challenge and token exchange by hand, request by
// request, as a client other than go-containerregistry would.
func TestArtifactRegistryAuth(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	ar, host := StartArtifactRegistry(t, tokens)
	ar.CreateRepository("my-project", "mlflow")
	tok, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + host
	image := "my-project/mlflow/server"
	do := func(t *testing.T, method, path, authorization string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	basic := func(user, password string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}
	// exchange asks the token endpoint for scope and returns the registry token.
	exchange := func(t *testing.T, scope string) string {
		t.Helper()
		resp := do(t, http.MethodGet, "/v2/token?"+url.Values{"scope": {scope}, "service": {""}}.Encode(), basic("_token", tok.AccessToken))
		var body struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("token exchange: %s, %v", resp.Status, err)
		}
		if body.Token == "" || body.AccessToken != body.Token || body.ExpiresIn <= 0 || body.Token == tok.AccessToken {
			t.Fatalf("token response %+v, want a registry token of its own in token and access_token, and expires_in", body)
		}
		return body.Token
	}
	wantChallenge := `Bearer realm="http://` + host + `/v2/token"`

	pull := exchange(t, "repository:"+image+":pull")
	push := exchange(t, "repository:"+image+":push,pull")
	tests := []struct {
		name          string
		method, path  string
		authorization string
		status        int
		challenge     string // the WWW-Authenticate header wanted; empty for none
	}{
		{"ping without credentials", "GET", "/v2/", "", 401, wantChallenge},
		{"basic auth straight to the registry", "GET", "/v2/", basic("_token", tok.AccessToken), 401, wantChallenge},
		{"basic auth on a manifest", "HEAD", "/v2/" + image + "/manifests/v1", basic("oauth2accesstoken", tok.AccessToken), 401, wantChallenge},
		{"registry token from the exchange", "GET", "/v2/", "Bearer " + pull, 200, ""},
		{"access token as Bearer, as the Docker API page's curl does", "GET", "/v2/", "Bearer " + tok.AccessToken, 200, ""},
		{"forged Bearer", "GET", "/v2/", "Bearer ar.forged", 401, wantChallenge},
		{"pull token reads", "HEAD", "/v2/" + image + "/manifests/v1", "Bearer " + pull, 404, ""},
		{"pull token cannot push", "POST", "/v2/" + image + "/blobs/uploads/", "Bearer " + pull, 401,
			wantChallenge + `,scope="repository:` + image + `:push",error="insufficient_scope"`},
		{"pull token for another image", "HEAD", "/v2/my-project/mlflow/other/manifests/v1", "Bearer " + pull, 401,
			wantChallenge + `,scope="repository:my-project/mlflow/other:pull",error="insufficient_scope"`},
		{"push token uploads", "POST", "/v2/" + image + "/blobs/uploads/", "Bearer " + push, 202, ""},
		{"token endpoint without credentials", "GET", "/v2/token?scope=repository:" + image + ":pull", "", 403, ""},
		{"token endpoint with a forged token", "GET", "/v2/token?scope=repository:" + image + ":pull", basic("_token", "ya29.forged"), 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, tt.method, tt.path, tt.authorization)
			if resp.StatusCode != tt.status || resp.Header.Get("WWW-Authenticate") != tt.challenge {
				t.Errorf("%s %s: %s with challenge %q, want %d with %q", tt.method, tt.path, resp.Status, resp.Header.Get("WWW-Authenticate"), tt.status, tt.challenge)
			}
		})
	}
	if got := ar.Counts(); got.TokenExchanges != 2 || got.Writes != 1 {
		t.Errorf("counts %+v, want the 2 token exchanges and the 1 upload started", got)
	}
}

// TestArtifactRegistryMounts: a mount from another repository of the same registry goes to the registry
// behind the front; one naming another registry as its origin is refused and counted.
func TestArtifactRegistryMounts(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	ar, host := StartArtifactRegistry(t, tokens)
	ar.CreateRepository("my-project", "mlflow")
	tok, err := serviceAccount(t, tokens).Token()
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tt := range []struct {
		origin string
		status int
		code   string
	}{
		{"ghcr.io", 403, "DENIED"},
		{"127.0.0.1:1", 403, "DENIED"},
		{host, 202, ""},
		{"", 202, ""}, // clients before the origin parameter mount within the registry only
	} {
		q := url.Values{"mount": {digest}, "from": {"mlflow/mlflow"}}
		if tt.origin != "" {
			q.Set("origin", tt.origin)
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+host+"/v2/my-project/mlflow/server/blobs/uploads/?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Errors []struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || (tt.code != "" && (len(body.Errors) == 0 || body.Errors[0].Code != tt.code)) {
			t.Errorf("mount from origin %q: %s %+v, want %d %s", tt.origin, resp.Status, body, tt.status, tt.code)
		}
	}
	if got := ar.Counts(); got.RefusedMounts != 2 || got.Refused != 2 || got.Writes != 2 {
		t.Errorf("counts %+v, want 2 refused mounts and 2 uploads started", got)
	}
}
