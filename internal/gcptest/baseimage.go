package gcptest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// baseCreated is the synthetic base image's creation time.
var baseCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// BaseImage stands in for the official MLflow image (ghcr.io/mlflow/mlflow:vX.Y.Z-full), which cannot be
// pulled here: a linux/amd64 Docker image whose config has the official one's shape (Env with PATH,
// Cmd ["python3"] inherited from python:slim, a label) and whose layers hold layerSizes bytes of random
// data each, derived from seed, so that two bases differ and one base is the same every time.
func BaseImage(seed uint64, layerSizes ...int) (v1.Image, error) {
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: baseCreated},
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "PYTHON_VERSION=3.11"},
			Cmd:        []string{"python3"},
			WorkingDir: "/",
			Labels:     map[string]string{"org.opencontainers.image.description": "stand-in for the MLflow image"},
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}))
	for i, size := range layerSizes {
		l, err := randomLayer(rng, fmt.Sprintf("usr/local/lib/python3.11/site-packages/part%d.bin", i), size)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.DockerLayer,
			History:   v1.History{Created: v1.Time{Time: baseCreated}, CreatedBy: fmt.Sprintf("RUN step %d", i)},
		})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// randomLayer is a gzip layer holding one file of size random bytes (stored: random bytes do not shrink).
func randomLayer(rng *rand.Rand, file string, size int) (v1.Layer, error) {
	content := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		binary.LittleEndian.PutUint64(content[i:], rng.Uint64())
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	headers := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: path.Dir(file) + "/", Mode: 0o755, ModTime: baseCreated},
		{Typeflag: tar.TypeReg, Name: file, Mode: 0o644, Size: int64(size), ModTime: baseCreated},
	}
	for _, h := range headers {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.DockerLayer))
}
