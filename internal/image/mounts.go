package image

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// localMounts hides from remote.Write that a layer could be mounted from a registry other than registry.
// remote.Write asks the target to mount every *remote.MountableLayer it does not have, naming the layer's
// registry as origin; Artifact Registry cannot mount from ghcr.io, so each such layer would cost a refused
// request before the upload. Layers of the same registry stay mountable. The layers themselves are the
// same values (same digests, still streamed from the base registry); only the wrapper that offers the
// mount is taken off. remote.Write reads an image's layers through Layers only.
type localMounts struct {
	v1.Image
	registry string // host[:port] of the registry pushed to
}

func (i localMounts) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for j, l := range ls {
		out[j] = mountableFrom(l, i.registry)
	}
	return out, nil
}

// mountableFrom returns l, without its offer of a mount unless that mount is from registry.
func mountableFrom(l v1.Layer, registry string) v1.Layer {
	if ml, ok := l.(*remote.MountableLayer); ok && ml.Reference.Context().RegistryStr() != registry {
		return ml.Layer
	}
	return l
}
