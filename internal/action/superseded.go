package action

import (
	"fmt"
	"path"

	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
)

// SupersededError is a deploy whose rollout ended with the service running another image: someone else
// (another workflow run, most often) updated the service meanwhile, and their revision replaced this
// one. It wraps what the deploy saw go wrong, if anything did.
type SupersededError struct {
	Service string // projects/P/locations/R/services/S
	Image   string // this deploy's image
	Now     string // the image the service runs now
	Err     error
}

func (e *SupersededError) Error() string {
	seen := ""
	if e.Err != nil {
		seen = fmt.Sprintf(" (%v)", e.Err)
	}
	return fmt.Sprintf("service %s was updated by another deploy while this one rolled out: it now runs %s, not this deploy's %s%s. "+
		"Use a concurrency group in the workflow so that deploys of one service run one at a time, "+
		"and run this deploy again if its image should serve. See %s",
		path.Base(e.Service), e.Now, e.Image, seen, cloudrun.ConsoleURL(e.Service))
}

func (e *SupersededError) Unwrap() error { return e.Err }

// superseded tells whether the service as read now runs another image than the deploy's, and if so says
// so instead of err, which then describes the other deploy's revision rather than this one's.
func superseded(live *runpb.Service, image string, err error) error {
	containers := live.GetTemplate().GetContainers()
	if len(containers) == 0 || containers[0].GetImage() == image {
		return nil
	}
	return &SupersededError{Service: live.GetName(), Image: image, Now: containers[0].GetImage(), Err: err}
}
