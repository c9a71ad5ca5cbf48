package release

import (
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/deploy-mlflow/deploy-mlflow/internal/action"
)

// Where the image holds its files. The server program goes where the action looks for it by default, so the
// action needs no setting inside its own image.
const (
	ActionPath  = "/usr/local/bin/deploy-mlflow"
	ServerPath  = action.DefaultServerBinary
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
)

// Labels the image carries (OCI annotations keys, as GitHub's package page reads them).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
)

// Inputs are the files on this machine that go into the image, and the metadata it is labelled with.
type Inputs struct {
	Action, Server, CACerts string // paths of the static action binary, the static server program, a PEM bundle
	Source                  string // the repository URL
	Revision                string // the commit
	Created                 time.Time
}

// Image is the action's image: an empty linux/amd64 base, one layer, the action as entrypoint, run as root
// (GitHub runs container actions as root; writing $GITHUB_OUTPUT fails otherwise).
func Image(in Inputs) (v1.Image, error) {
	if in.Source == "" || in.Revision == "" {
		return nil, fmt.Errorf("the image needs a source URL and a revision for its labels (got %q, %q)", in.Source, in.Revision)
	}
	layer, err := Layer([]File{
		{Path: ActionPath, Mode: 0o755, Source: in.Action},
		{Path: ServerPath, Mode: 0o755, Source: in.Server},
		{Path: CACertsPath, Mode: 0o644, Source: in.CACerts},
	})
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	created := v1.Time{Time: in.Created.UTC()}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "deploy-mlflow release: action, server program, CA roots"},
	})
	if err != nil {
		return nil, fmt.Errorf("add the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: []string{ActionPath},
		User:       "0:0",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CACertsPath},
		Labels:     map[string]string{LabelSource: in.Source, LabelRevision: in.Revision},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	return img, nil
}
