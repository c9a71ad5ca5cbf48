package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Labels set on the built image, beside the base image's own.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
)

// Options label the built image; empty fields add no label.
type Options struct {
	// Source is the URL of the repository the deployment comes from.
	Source string
	// Revision is the commit SHA deployed.
	Revision string
}

// layerTime is the mtime of the server program in its layer. It is fixed, so the layer's digest depends
// only on the program and the layer is shared by every image that holds the same program.
var layerTime = time.Unix(0, 0).UTC()

// Build returns base with one more layer holding serverBinary (a static linux/amd64 executable) at
// serverenv.BinaryPath, which becomes the entrypoint. The base's config is kept but for the entrypoint, the
// command (cleared: the official MLflow image inherits CMD ["python3"]) and the labels in opts. The same
// inputs give the same digest: the layer, its history entry and the image's creation time are all fixed,
// the last two to the base's own creation time. Base layers are not read.
func Build(base v1.Image, serverBinary string, opts Options) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading the base image's manifest: %w", err)
	}
	var layerType types.MediaType
	switch mt {
	case types.DockerManifestSchema2:
		layerType = types.DockerLayer
	case types.OCIManifestSchema1:
		layerType = types.OCILayer
	default:
		return nil, fmt.Errorf("the base image's manifest is a %s; want a Docker v2 or OCI image manifest", mt)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the base image's config: %w", err)
	}

	layer, err := serverLayer(serverBinary, layerType)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: layerType,
		History: v1.History{
			Created:   cf.Created,
			CreatedBy: "deploy-mlflow: COPY server " + serverenv.BinaryPath,
		},
	})
	if err != nil {
		return nil, err
	}

	cfg := cf.Config.DeepCopy()
	cfg.Entrypoint = []string{serverenv.BinaryPath}
	cfg.Cmd = nil
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for k, v := range map[string]string{LabelSource: opts.Source, LabelRevision: opts.Revision} {
		if v != "" {
			cfg.Labels[k] = v
		}
	}
	img, err = mutate.Config(img, *cfg)
	if err != nil {
		return nil, err
	}
	// Not mutate.Time: it rewrites every layer, so the base's would be uploaded again.
	return mutate.CreatedAt(img, cf.Created)
}

// serverLayer is a gzip layer holding the file at path as serverenv.BinaryPath, mode 0755, owned by root,
// with no directory entries (the base's /usr/local/bin stays as it is). It is compressed once, in memory,
// at gzip's fastest level: every deploy builds it (its digest says whether the registry has it already),
// and on the server program that takes about a quarter of the default level's time for a layer about 7%
// larger, which is uploaded only when the program changed. Its digest and diff ID are hashed as it is
// written, so nothing reads it again to find them.
func serverLayer(path string, mt types.MediaType) (v1.Layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server program: %w", err)
	}
	defer f.Close()
	if err := checkServerBinary(f); err != nil {
		return nil, fmt.Errorf("server program %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("server program: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("server program: %w", err)
	}

	var buf bytes.Buffer
	compressed, uncompressed := sha256.New(), sha256.New()
	// No name, no mtime in the gzip header: the bytes depend on the content only.
	zw, err := gzip.NewWriterLevel(io.MultiWriter(&buf, compressed), gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, uncompressed))
	err = tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(serverenv.BinaryPath, "/"),
		Mode:     0o755,
		Size:     st.Size(),
		ModTime:  layerTime,
		Format:   tar.FormatPAX,
	})
	if err == nil {
		_, err = io.CopyN(tw, f, st.Size())
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("server program %s: writing its layer: %w", path, err)
	}
	return partial.CompressedToLayer(&memoryLayer{
		b:         buf.Bytes(),
		digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(compressed.Sum(nil))},
		diffID:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(uncompressed.Sum(nil))},
		mediaType: mt,
	})
}

// memoryLayer is a compressed layer held in memory, with its hashes known.
type memoryLayer struct {
	b              []byte
	digest, diffID v1.Hash
	mediaType      types.MediaType
}

func (l *memoryLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *memoryLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *memoryLayer) Size() (int64, error)                { return int64(len(l.b)), nil }
func (l *memoryLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *memoryLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}

// checkServerBinary makes sure the program can run in the image: a program built for the runner's
// architecture, or linked against a libc the base may not have, would only fail once Cloud Run starts it.
func checkServerBinary(r io.ReaderAt) error {
	ef, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("not an ELF executable (%v); build it with GOOS=linux GOARCH=amd64 CGO_ENABLED=0", err)
	}
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 {
		return fmt.Errorf("built for %s, not linux/amd64; build it with GOOS=linux GOARCH=amd64 CGO_ENABLED=0", ef.Machine)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("an ELF %s, not an executable", ef.Type)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}
