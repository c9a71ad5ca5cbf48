package image

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// platform is the only platform Cloud Run runs.
var platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Base reads the base image's manifest and config (for an index, the linux/amd64 entry's) and returns
// the image; its layers are read only when something (Push) needs them. It is pulled anonymously unless
// WithAuth names its registry. Every failure to read it, now or later while its layers are streamed, is
// a *BaseError naming ref.
func Base(ctx context.Context, ref string, opts ...Option) (v1.Image, error) {
	r, err := Reference(ref)
	if err != nil {
		return nil, &BaseError{Ref: ref, Err: err}
	}
	o := makeOptions(opts)
	img, err := remote.Image(r, append(o.remote(ctx, r.Context().Registry, o.transport), remote.WithPlatform(platform))...)
	if err != nil {
		return nil, &BaseError{Ref: ref, Err: err}
	}
	// remote.Image checks the platform only when it picks from an index.
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, &BaseError{Ref: ref, Err: fmt.Errorf("reading its config: %w", err)}
	}
	if cf.OS != platform.OS || cf.Architecture != platform.Architecture {
		return nil, &BaseError{Ref: ref, Err: fmt.Errorf("it is a %s/%s image; Cloud Run needs %s", cf.OS, cf.Architecture, platform)}
	}
	return baseImage{Image: img, ref: ref}, nil
}

// baseImage makes errors from reading the base's layers *BaseErrors, so that a failure to stream a layer
// from the base registry is not reported as one of the target registry.
type baseImage struct {
	v1.Image
	ref string
}

func (b baseImage) Layers() ([]v1.Layer, error) {
	ls, err := b.Image.Layers()
	if err != nil {
		return nil, &BaseError{Ref: b.ref, Err: err}
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = b.layer(l)
	}
	return out, nil
}

func (b baseImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := b.Image.LayerByDigest(h)
	if err != nil {
		return nil, &BaseError{Ref: b.ref, Err: err}
	}
	return b.layer(l), nil
}

func (b baseImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := b.Image.LayerByDiffID(h)
	if err != nil {
		return nil, &BaseError{Ref: b.ref, Err: err}
	}
	return b.layer(l), nil
}

// layer wraps l, keeping it mountable: remote.Write asks the target registry to mount a layer from the
// base's repository. Push keeps that offer only when both are on the same registry (localMounts).
func (b baseImage) layer(l v1.Layer) v1.Layer {
	if ml, ok := l.(*remote.MountableLayer); ok {
		return &remote.MountableLayer{Layer: baseLayer{Layer: ml.Layer, ref: b.ref}, Reference: ml.Reference}
	}
	return baseLayer{Layer: l, ref: b.ref}
}

type baseLayer struct {
	v1.Layer
	ref string
}

func (l baseLayer) Compressed() (io.ReadCloser, error) {
	return l.open(l.Layer.Compressed)
}

func (l baseLayer) Uncompressed() (io.ReadCloser, error) {
	return l.open(l.Layer.Uncompressed)
}

func (l baseLayer) open(open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	rc, err := open()
	if err != nil {
		return nil, l.wrap(err)
	}
	return &baseReader{ReadCloser: rc, l: l}, nil
}

func (l baseLayer) wrap(err error) error {
	d, _ := l.Digest()
	return &BaseError{Ref: l.ref, Err: fmt.Errorf("reading layer %s: %w", d, err)}
}

// baseReader returns io.EOF on a read of its own, never with the last bytes: remote.WithProgress counts
// only the bytes of reads that return no error, so a layer streamed from the base registry would otherwise
// never reach its full size in the progress updates.
type baseReader struct {
	io.ReadCloser
	l   baseLayer
	eof bool
}

func (r *baseReader) Read(p []byte) (int, error) {
	if r.eof {
		return 0, io.EOF
	}
	n, err := r.ReadCloser.Read(p)
	switch {
	case err == io.EOF && n > 0:
		r.eof = true
		err = nil
	case err != nil && err != io.EOF:
		err = r.l.wrap(err)
	}
	return n, err
}
