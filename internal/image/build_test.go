package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		manifest      types.MediaType
		config, layer types.MediaType
	}{
		{types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
		{types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
	} {
		t.Run(string(tc.manifest), func(t *testing.T) {
			t.Parallel()
			base := syntheticBase(t, tc.manifest, "amd64", 1, 3000, 5000, 100)
			bin := fakeServerBinary(t, elf.EM_X86_64, false, 4096, 1)
			img, err := Build(base, bin, Options{Source: "https://github.com/acme/models", Revision: "0123abcd"})
			if err != nil {
				t.Fatal(err)
			}

			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{serverenv.BinaryPath}; !slices.Equal(cf.Config.Entrypoint, want) {
				t.Errorf("Entrypoint = %q, want %q", cf.Config.Entrypoint, want)
			}
			if cf.Config.Cmd != nil {
				t.Errorf("Cmd = %q, want none", cf.Config.Cmd)
			}
			if !slices.Equal(cf.Config.Env, baseConfig.Env) {
				t.Errorf("Env = %q, want the base's %q", cf.Config.Env, baseConfig.Env)
			}
			if cf.Config.WorkingDir != baseConfig.WorkingDir {
				t.Errorf("WorkingDir = %q, want the base's %q", cf.Config.WorkingDir, baseConfig.WorkingDir)
			}
			wantLabels := map[string]string{
				"org.opencontainers.image.title": "mlflow",
				LabelSource:                      "https://github.com/acme/models",
				LabelRevision:                    "0123abcd",
			}
			if !maps.Equal(cf.Config.Labels, wantLabels) {
				t.Errorf("Labels = %v, want %v", cf.Config.Labels, wantLabels)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
			}
			if !cf.Created.Time.Equal(baseCreated) {
				t.Errorf("Created = %v, want the base's %v", cf.Created, baseCreated)
			}
			if len(cf.History) != 4 || !cf.History[3].Created.Time.Equal(baseCreated) || cf.History[3].EmptyLayer {
				t.Errorf("History = %+v, want the base's 3 entries and one for the server layer, created %v", cf.History, baseCreated)
			}
			if len(cf.RootFS.DiffIDs) != 4 {
				t.Errorf("%d diff IDs, want 4", len(cf.RootFS.DiffIDs))
			}
			// The base's config is not changed underneath.
			if bcf, _ := base.ConfigFile(); !slices.Equal(bcf.Config.Cmd, []string{"python3"}) || bcf.Config.Labels[LabelRevision] != "" {
				t.Errorf("base config changed: %+v", bcf.Config)
			}

			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			bm, err := base.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.manifest || m.Config.MediaType != tc.config {
				t.Errorf("manifest %s with config %s, want %s with %s", m.MediaType, m.Config.MediaType, tc.manifest, tc.config)
			}
			if len(m.Layers) != len(bm.Layers)+1 {
				t.Fatalf("%d layers, want the base's %d and one more", len(m.Layers), len(bm.Layers))
			}
			if !slices.Equal(digests(m.Layers[:len(bm.Layers)]), digests(bm.Layers)) {
				t.Errorf("base layers changed:\n got %v\nwant %v", m.Layers[:len(bm.Layers)], bm.Layers)
			}
			if got := m.Layers[len(bm.Layers)].MediaType; got != tc.layer {
				t.Errorf("server layer media type %s, want %s", got, tc.layer)
			}

			ls, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			checkServerLayer(t, ls[len(ls)-1], want)
		})
	}
}

// checkServerLayer checks that l holds exactly the server program, and no directory.
func checkServerLayer(t *testing.T, l v1.Layer, want []byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name != strings.TrimPrefix(serverenv.BinaryPath, "/") {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("server entry: type %c mode %o uid %d gid %d mtime %v; want a regular file, 0755, root, epoch",
				h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime)
		}
		got, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("server entry holds %d bytes that differ from the %d of the program", len(got), len(want))
		}
	}
	if want := []string{strings.TrimPrefix(serverenv.BinaryPath, "/")}; !slices.Equal(names, want) {
		t.Errorf("layer entries %q, want only %q", names, want)
	}
	rc, err = l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	blob, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) < 2 || blob[0] != 0x1f || blob[1] != 0x8b {
		t.Errorf("server layer is not gzip: % x", blob[:min(len(blob), 2)])
	}
	// The layer states its hashes and size without reading itself: they must be those of its bytes.
	size, err := l.Size()
	if err != nil || size != int64(len(blob)) {
		t.Errorf("layer Size() = %d, %v; its compressed bytes are %d", size, err, len(blob))
	}
	if d, err := l.Digest(); err != nil || d != sha256Of(t, bytes.NewReader(blob)) {
		t.Errorf("layer Digest() = %v, %v; its compressed bytes hash to %v", d, err, sha256Of(t, bytes.NewReader(blob)))
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := l.DiffID(); err != nil || d != sha256Of(t, zr) {
		t.Errorf("layer DiffID() = %v, %v; its uncompressed bytes hash otherwise", d, err)
	}
}

func sha256Of(t *testing.T, r io.Reader) v1.Hash {
	t.Helper()
	h, _, err := v1.SHA256(r)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBuildIsReproducible(t *testing.T) {
	t.Parallel()
	base := syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 3000, 5000)
	bin := fakeServerBinary(t, elf.EM_X86_64, false, 100_000, 1)
	// The same program elsewhere, written at another time: neither the path nor the file's mtime counts.
	content, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	copyBin := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(copyBin, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(copyBin, time.Now(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	opts := Options{Source: "https://github.com/acme/models", Revision: "0123abcd"}
	build := func(bin string, opts Options) (v1.Hash, *v1.Manifest) {
		t.Helper()
		img, err := Build(base, bin, opts)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		return d, m
	}
	d1, m1 := build(bin, opts)
	if d2, _ := build(copyBin, opts); d2 != d1 {
		t.Errorf("same inputs, digests %s and %s", d1, d2)
	}
	d3, m3 := build(bin, Options{Source: opts.Source, Revision: "4567cdef"})
	if d3 == d1 {
		t.Errorf("another revision gave the same digest %s", d1)
	}
	if !slices.Equal(digests(m1.Layers), digests(m3.Layers)) {
		t.Errorf("another revision changed the layers:\n%v\n%v", m1.Layers, m3.Layers)
	}
	if m1.Config.Digest == m3.Config.Digest {
		t.Errorf("another revision kept the config %s", m1.Config.Digest)
	}
	other := fakeServerBinary(t, elf.EM_X86_64, false, 100_000, 2)
	if d4, _ := build(other, opts); d4 == d1 {
		t.Errorf("another program gave the same digest %s", d1)
	}
}

func TestBuildRejectsServerBinary(t *testing.T) {
	t.Parallel()
	base := syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 100)
	script := filepath.Join(t.TempDir(), "server.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexec mlflow server\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		path string
		want string
	}{
		"missing":  {filepath.Join(t.TempDir(), "nothing"), "no such file"},
		"script":   {script, "not an ELF executable"},
		"arm64":    {fakeServerBinary(t, elf.EM_AARCH64, false, 100, 1), "built for EM_AARCH64, not linux/amd64"},
		"with cgo": {fakeServerBinary(t, elf.EM_X86_64, true, 100, 1), "dynamically linked"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(base, tc.path, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want an error saying %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "server program") {
				t.Errorf("error %q does not say it is about the server program", err)
			}
		})
	}
}

func TestBuildRejectsSchema1Base(t *testing.T) {
	t.Parallel()
	base := syntheticBase(t, types.OCIManifestSchema1, "amd64", 1, 100)
	bin := fakeServerBinary(t, elf.EM_X86_64, false, 100, 1)
	_, err := Build(schema1{base}, bin, Options{})
	if err == nil || !strings.Contains(err.Error(), "want a Docker v2 or OCI image manifest") {
		t.Fatalf("Build: %v", err)
	}
}

type schema1 struct{ v1.Image }

func (schema1) MediaType() (types.MediaType, error) { return types.DockerManifestSchema1, nil }

func digests(ds []v1.Descriptor) []v1.Hash {
	out := make([]v1.Hash, len(ds))
	for i, d := range ds {
		out[i] = d.Digest
	}
	return out
}
