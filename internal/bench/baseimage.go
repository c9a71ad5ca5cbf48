package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// baseLayerMB is the shape of the generated base image: 10 layers, 1000 MB, a few large (the Python
// packages) and many small, as in the official MLflow image.
var baseLayerMB = []int{300, 200, 150, 100, 80, 60, 50, 30, 20, 10}

// baseImage builds the generated base image from layers cached in dir, writing any that are missing.
// Each layer is a gzip'd tar of one file of pseudo-random bytes from a fixed seed: the same bytes on
// every machine, and incompressible, as real compressed layers are. The gzip stores rather than
// compresses (there is nothing to gain), which keeps generation fast.
func baseImage(dir string) (v1.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	img := empty.Image
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	var adds []mutate.Addendum
	for i, mb := range baseLayerMB {
		path := filepath.Join(dir, fmt.Sprintf("layer-%02d-%dMB.tar.gz", i, mb))
		if _, err := os.Stat(path); err != nil {
			if err := writeLayer(path, uint64(i), int64(mb)*1_000_000); err != nil {
				return nil, err
			}
		}
		l, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.DockerLayer))
		if err != nil {
			return nil, fmt.Errorf("generated layer %s: %w", path, err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: fmt.Sprintf("generated layer %d", i)}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	cf.Config.Cmd = []string{"python3"}
	cf.Created = v1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return mutate.ConfigFile(img, cf)
}

func writeLayer(path string, seed uint64, size int64) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	zw, _ := gzip.NewWriterLevel(f, gzip.NoCompression)
	tw := tar.NewWriter(zw)
	err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("opt/layer%d/data", seed), Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)})
	if err == nil {
		_, err = io.CopyN(tw, rand.NewChaCha8([32]byte{byte(seed)}), size)
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("generate layer %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
