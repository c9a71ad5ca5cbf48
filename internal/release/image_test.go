package release

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fakeInputs writes three small files standing in for the binaries and the CA bundle.
func fakeInputs(t *testing.T) Inputs {
	t.Helper()
	dir := t.TempDir()
	in := Inputs{Source: "https://github.com/acme/deploy-mlflow", Revision: "abc123", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for p, content := range map[*string]string{&in.Action: "action", &in.Server: "server", &in.CACerts: "certs"} {
		*p = filepath.Join(dir, content)
		if err := os.WriteFile(*p, []byte(content+" bytes"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func digest(t *testing.T, in Inputs) v1.Hash {
	t.Helper()
	img, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestImageIsReproducible(t *testing.T) {
	t.Parallel()
	in := fakeInputs(t)
	first := digest(t, in)
	// The build machine's file times and modes must not matter.
	later := time.Now().Add(time.Hour)
	for _, p := range []string{in.Action, in.Server, in.CACerts} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if again := digest(t, in); again != first {
		t.Errorf("same inputs, different digests: %s then %s", first, again)
	}

	for name, change := range map[string]func(*Inputs){
		"revision": func(in *Inputs) { in.Revision = "def456" },
		"created":  func(in *Inputs) { in.Created = in.Created.Add(time.Second) },
		"content": func(in *Inputs) {
			if err := os.WriteFile(in.Server, []byte("server bytez"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		changed := in
		change(&changed)
		if d := digest(t, changed); d == first {
			t.Errorf("a different %s gave the same digest %s", name, d)
		}
	}
}

func TestImageConfig(t *testing.T) {
	t.Parallel()
	in := fakeInputs(t)
	img, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	want := v1.Config{
		Entrypoint: []string{"/usr/local/bin/deploy-mlflow"},
		User:       "0:0",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels:     map[string]string{LabelSource: in.Source, LabelRevision: in.Revision},
	}
	if d := cmp.Diff(want, cf.Config); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	if !cf.Created.Equal(in.Created) {
		t.Errorf("created %v, want %v", cf.Created, in.Created)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want one", len(layers), err)
	}
}

// entry is what a test checks about one tar entry.
type entry struct {
	Mode    int64
	Dir     bool
	Content string
}

func TestLayerContents(t *testing.T) {
	t.Parallel()
	in := fakeInputs(t)
	img, err := Image(in)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d, mtime %v; want root and the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = entry{Mode: h.Mode, Dir: h.Typeflag == tar.TypeDir, Content: string(b)}
		order = append(order, h.Name)
	}
	dir := entry{Mode: 0o755, Dir: true}
	want := map[string]entry{
		"etc/": dir, "etc/ssl/": dir, "etc/ssl/certs/": dir,
		"etc/ssl/certs/ca-certificates.crt": {Mode: 0o644, Content: "certs bytes"},
		"tmp/":                              {Mode: 0o1777, Dir: true},
		"usr/":                              dir, "usr/local/": dir, "usr/local/bin/": dir, "usr/local/share/": dir, "usr/local/share/deploy-mlflow/": dir,
		"usr/local/bin/deploy-mlflow":                        {Mode: 0o755, Content: "action bytes"},
		"usr/local/share/deploy-mlflow/deploy-mlflow-server": {Mode: 0o755, Content: "server bytes"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layer (-want +got):\n%s", d)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("entries out of order: %q before %q", order[i-1], order[i])
		}
	}
}

func TestImageRefusesBadInputs(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change func(*Inputs)
		want   string
	}{
		"no revision":    {func(in *Inputs) { in.Revision = "" }, "needs a source URL and a revision"},
		"missing server": {func(in *Inputs) { in.Server = "/nonexistent/server" }, "/nonexistent/server for " + ServerPath},
		"directory":      {func(in *Inputs) { in.CACerts = t.TempDir() }, "is not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := fakeInputs(t)
			tc.change(&in)
			_, err := Image(in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
