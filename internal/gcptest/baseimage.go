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

// BaseCreated is the creation time of the stand-in base images.
var BaseCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// BaseConfig is the config of the stand-in base images, shaped like the official MLflow image's: Env
// with PATH, Cmd ["python3"] inherited from python:slim, labels.
var BaseConfig = v1.Config{
	Env:        []string{"PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "PYTHON_VERSION=3.11.14"},
	Cmd:        []string{"python3"},
	WorkingDir: "/",
	Labels: map[string]string{
		"org.opencontainers.image.title":  "mlflow",
		"org.opencontainers.image.source": "https://github.com/mlflow/mlflow",
	},
}

// BaseImage stands in for the official MLflow image (ghcr.io/mlflow/mlflow:vX.Y.Z-full), which cannot be
// pulled here: a linux/amd64 Docker image (see NewBaseImage).
func BaseImage(seed uint64, layerSizes ...int) (v1.Image, error) {
	return NewBaseImage(types.DockerManifestSchema2, "amd64", seed, layerSizes...)
}

// NewBaseImage is a linux image for arch with the manifest type mt (Docker or OCI, with the matching
// config and layer types), BaseConfig, and one layer per size in layerSizes holding that many bytes of
// random data derived from seed: two seeds give two bases, and one seed the same base every time.
func NewBaseImage(mt types.MediaType, arch string, seed uint64, layerSizes ...int) (v1.Image, error) {
	layerType, configType := types.OCILayer, types.OCIConfigJSON
	if mt == types.DockerManifestSchema2 {
		layerType, configType = types.DockerLayer, types.DockerConfigJSON
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: BaseCreated},
		Config:       *BaseConfig.DeepCopy(),
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, mt), configType)
	rng := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}))
	for i, size := range layerSizes {
		l, err := randomLayer(rng, fmt.Sprintf("usr/local/lib/python3.11/site-packages/part%d.bin", i), size, layerType)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: layerType,
			History:   v1.History{Created: v1.Time{Time: BaseCreated}, CreatedBy: fmt.Sprintf("RUN step %d", i)},
		})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// randomLayer is a gzip layer holding one file of size random bytes (stored: random bytes do not shrink).
func randomLayer(rng *rand.Rand, file string, size int, mt types.MediaType) (v1.Layer, error) {
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
		{Typeflag: tar.TypeDir, Name: path.Dir(file) + "/", Mode: 0o755, ModTime: BaseCreated},
		{Typeflag: tar.TypeReg, Name: file, Mode: 0o644, Size: int64(size), ModTime: BaseCreated},
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
		tarball.WithMediaType(mt))
}
