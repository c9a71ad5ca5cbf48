package gcptest

import (
	"context"
	"fmt"

	"cloud.google.com/go/run/apiv2/runpb"
)

// Runtime decides the fate of each new revision, as Cloud Run's deployment of the container does: Start
// returns once the revision serves (with the URL it serves on, if it has one of its own) or has failed.
// An error fails the revision with the error's message; a *RevisionFailure also sets Cloud Run's reason.
// ctx ends when the Run stand-in closes. Without a Runtime every revision is ready at once.
type Runtime interface {
	Start(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (url string, err error)
}

// RuntimeFunc adapts a function to Runtime.
type RuntimeFunc func(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (string, error)

// Start calls f.
func (f RuntimeFunc) Start(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (string, error) {
	return f(ctx, svc, rev)
}

// RevisionStopper may be implemented by a Runtime that keeps something running per revision: Stop is
// called, in the background, once a revision no longer receives traffic or its service is deleted.
type RevisionStopper interface {
	Stop(rev *runpb.Revision)
}

// RevisionFailure is why a revision could not serve, as Cloud Run reports it in the revision's conditions.
type RevisionFailure struct {
	// CommonReason, if set, is the condition's reason (e.g. CONTAINER_MISSING); otherwise RevisionReason
	// is (default HEALTH_CHECK_CONTAINER_ERROR).
	CommonReason   runpb.Condition_CommonReason
	RevisionReason runpb.Condition_RevisionReason
	Message        string
}

func (f *RevisionFailure) Error() string { return f.Message }

// ContainerFailedToStart is Cloud Run's failure for a container that did not listen on its port in time.
func ContainerFailedToStart(port int32) *RevisionFailure {
	return &RevisionFailure{
		RevisionReason: runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR,
		Message: fmt.Sprintf("The user-provided container failed to start and listen on the port defined provided by the PORT=%d environment variable within the allocated timeout. "+
			"This can happen when the container port is misconfigured or if the timeout is too short. The health check timeout can be extended. Logs for this revision might contain more information.", port),
	}
}

// ImageNotFound is Cloud Run's failure for a revision whose image does not exist.
func ImageNotFound(image string) *RevisionFailure {
	return &RevisionFailure{CommonReason: runpb.Condition_CONTAINER_MISSING, Message: "Image '" + image + "' not found."}
}
