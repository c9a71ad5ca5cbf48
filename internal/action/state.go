package action

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/sethvargo/go-githubactions"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// Stage is how far a deploy got, told by what it has written.
type Stage int

const (
	// NothingWritten: the service and the image tag are as they were (a cancelled push may have left
	// unreferenced layers in the repository, which are harmless).
	NothingWritten Stage = iota
	// ImagePushed: the image is in Artifact Registry, but the service was not updated.
	ImagePushed
	// UpdateSent: Cloud Run accepted the new spec and is rolling out its revision without the action.
	UpdateSent
	// Done: the new revision is ready and serves.
	Done
)

// progressLog records how far a deploy got, for the report of a deploy stopped midway.
type progressLog struct {
	mu        sync.Mutex
	stage     Stage
	service   string // projects/P/locations/R/services/S
	image     string // REPOSITORY@sha256:..., once pushed
	operation string // the Cloud Run operation, once its write was accepted
	revision  string // the revision being rolled out or serving, when known
}

func (p *progressLog) set(f func(*progressLog)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// deployLog wraps the deployer's log to learn the operation Cloud Run accepted: the deployer says
// "waiting up to ... (operation NAME)" once its write was accepted and before it waits.
func (p *progressLog) deployLog(logf func(string, ...any)) func(string, ...any) {
	return func(format string, args ...any) {
		if strings.HasPrefix(format, "waiting up to") && len(args) > 0 {
			op := fmt.Sprint(args[len(args)-1])
			p.set(func(p *progressLog) { p.stage, p.operation = UpdateSent, op })
		}
		logf(format, args...)
	}
}

// probeBudget bounds the read of the service after a cancellation: the runner kills the action 10 s
// after it cancels it (SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that).
const probeBudget = time.Second

// probe reads the service after the deploy was stopped during its Cloud Run step, to tell whether
// Cloud Run took the new spec even though the action did not hear back. read gets a context of its
// own: ctx is already cancelled.
func (p *progressLog) probe(ctx context.Context, read func(context.Context, string) (*runpb.Service, error)) {
	p.mu.Lock()
	name, image := p.service, p.image
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeBudget)
	defer cancel()
	svc, err := read(rctx, name)
	if err != nil || image == "" || len(svc.GetTemplate().GetContainers()) == 0 || svc.Template.Containers[0].Image != image {
		return
	}
	p.set(func(p *progressLog) {
		if p.stage < UpdateSent {
			p.stage = UpdateSent
		}
		p.revision = path.Base(svc.LatestCreatedRevision)
		if svc.LatestCreatedRevision != "" && svc.LatestCreatedRevision == svc.LatestReadyRevision &&
			svc.GetTerminalCondition().GetState() == runpb.Condition_CONDITION_SUCCEEDED {
			p.stage = Done
		}
	})
}

// StoppedError is a deploy stopped midway (the job was cancelled), with what it left behind.
type StoppedError struct {
	Stage     Stage
	Service   string // projects/P/locations/R/services/S
	Image     string
	Operation string
	Revision  string
	Err       error // why it stopped: the context's error, or the failure it caused
}

func (p *progressLog) stopped(err error) *StoppedError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &StoppedError{Stage: p.stage, Service: p.service, Image: p.image, Operation: p.operation, Revision: p.revision, Err: err}
}

func (e *StoppedError) Unwrap() error { return e.Err }

func (e *StoppedError) Error() string {
	return "the deploy was cancelled: " + e.State()
}

// State says, in a sentence or two, what state the service was left in and what to do.
func (e *StoppedError) State() string {
	svc := path.Base(e.Service)
	switch e.Stage {
	case NothingWritten:
		return fmt.Sprintf("nothing was written: service %s and the image tag are unchanged (a push stopped midway may leave unreferenced layers, which the next run reuses). Re-run the workflow to deploy", svc)
	case ImagePushed:
		return fmt.Sprintf("the image %s was pushed, but service %s was not updated and serves what it served before. Re-run the workflow to deploy (the push is not repeated)", e.Image, svc)
	case UpdateSent:
		var detail []string
		if e.Revision != "" {
			detail = append(detail, "revision "+e.Revision)
		}
		if e.Operation != "" {
			detail = append(detail, "operation "+e.Operation)
		}
		what := ""
		if len(detail) > 0 {
			what = " (" + strings.Join(detail, ", ") + ")"
		}
		return fmt.Sprintf("the update of service %s to image %s was sent and Cloud Run is rolling it out without the action%s; "+
			"the previous revision serves until the new one is ready. Follow it at %s; a re-run checks it and deploys again if it failed",
			svc, e.Image, what, cloudrun.ConsoleURL(e.Service))
	default:
		return fmt.Sprintf("service %s was updated and its new revision %s is ready and serves image %s; only the step's outputs were not written. See %s",
			svc, e.Revision, e.Image, cloudrun.ConsoleURL(e.Service))
	}
}

// writeStoppedSummary puts the state a stopped deploy left the service in at the top of the step summary.
func writeStoppedSummary(gh *githubactions.Action, getenv func(string) string, cfg *config.Config, e *StoppedError) {
	if getenv("GITHUB_STEP_SUMMARY") == "" {
		return
	}
	gh.AddStepSummary(fmt.Sprintf("### MLflow on Cloud Run: %s: deploy cancelled\n\n%s.\n", cfg.Service, e.State()))
}
