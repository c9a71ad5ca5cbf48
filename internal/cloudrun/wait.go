package cloudrun

import (
	"context"
	"fmt"
	"path"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultPollInterval is how often a deploy asks Cloud Run whether its rollout is done.
const DefaultPollInterval = time.Second

// operation is a Cloud Run write in progress: a *run.CreateServiceOperation or *run.UpdateServiceOperation.
type operation interface {
	Name() string
	Poll(ctx context.Context, opts ...gax.CallOption) (*runpb.Service, error)
	Done() bool
}

// wait polls op every PollInterval until it is done, ctx ends or wait has passed, and returns the service
// as read after op is done. It does not use op.Wait: that pauses a random time up to 1, 2, 4, ... 60 s
// between polls, so it notices a finished rollout up to a minute late, or after wait_timeout. Nor does it
// trust op's response for the result: Cloud Run documents the URL, traffic and latest revisions as
// transient until reconciliation is over, and a read after it is what the service is.
func (d *Deployer) wait(ctx context.Context, wait time.Duration, desired *runpb.Service, op operation) (*runpb.Service, error) {
	d.logf("waiting up to %s for the new revision (operation %s)", wait, op.Name())
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(d.pollInterval())
	defer tick.Stop()
	for {
		// The service in op's response is not used (see above); Poll's error is the operation's own
		// failure once op is done, and a failure to ask before.
		_, err := op.Poll(wctx)
		switch {
		case op.Done() && err == nil:
			d.logf("Cloud Run finished the rollout after %s", time.Since(start).Round(time.Second))
			return d.read(ctx, desired.Name)
		case op.Done():
			// A failed revision fails the operation; report the revision's own reason.
			if rerr := d.revisionFailure(ctx, desired.Name); rerr != nil {
				return nil, rerr
			}
			return nil, explain(err, desired.Name, "deploy")
		case err != nil && ranOutOfTime(wctx, err):
			return nil, d.stopped(ctx, wait, desired.Name)
		case err != nil:
			return nil, fmt.Errorf("polling Cloud Run operation %s: %w", op.Name(), explain(err, desired.Name, "deploy"))
		}
		select {
		case <-wctx.Done():
			return nil, d.stopped(ctx, wait, desired.Name)
		case <-tick.C:
		}
	}
}

// waitReconciled polls the service every PollInterval until Cloud Run has finished acting on it (its
// reconciling field is false), ctx ends or wait has passed, for a rollout that no operation of this deploy
// tracks.
func (d *Deployer) waitReconciled(ctx context.Context, wait time.Duration, name string) (*runpb.Service, error) {
	d.logf("Cloud Run is already rolling out this spec (an earlier write, or a run that stopped waiting): waiting up to %s for it", wait)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(d.pollInterval())
	defer tick.Stop()
	for {
		svc, err := d.Services.GetService(wctx, &runpb.GetServiceRequest{Name: name})
		switch {
		case err == nil && !svc.Reconciling:
			d.logf("Cloud Run finished the rollout after %s", time.Since(start).Round(time.Second))
			return svc, nil
		case err != nil && ranOutOfTime(wctx, err):
			return nil, d.stopped(ctx, wait, name)
		case err != nil:
			return nil, explain(err, name, "read")
		}
		select {
		case <-wctx.Done():
			return nil, d.stopped(ctx, wait, name)
		case <-tick.C:
		}
	}
}

// ranOutOfTime tells whether a failed poll failed because wctx ended. gRPC may answer DEADLINE_EXCEEDED a
// moment before wctx reports its deadline (the server side times the call from when it arrived), so such
// an answer waits briefly for wctx to agree.
func ranOutOfTime(wctx context.Context, err error) bool {
	if wctx.Err() != nil {
		return true
	}
	if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Canceled {
		return false
	}
	select {
	case <-wctx.Done():
		return true
	case <-time.After(time.Second):
		return false
	}
}

// stopped is why a wait ended before its operation did: ctx ended, or wait passed.
func (d *Deployer) stopped(ctx context.Context, wait time.Duration, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("the deploy of %s was cancelled while Cloud Run rolled out the new revision (%w); the rollout goes on without the action, see %s",
			path.Base(name), err, LogsURL(name))
	}
	return fmt.Errorf("the new revision of %s was not ready within wait_timeout (%s); it may still become ready, see %s",
		path.Base(name), wait, LogsURL(name))
}

// read reads the service after its rollout.
func (d *Deployer) read(ctx context.Context, name string) (*runpb.Service, error) {
	svc, err := d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: name})
	if err != nil {
		return nil, explain(err, name, "read")
	}
	return svc, nil
}

func (d *Deployer) pollInterval() time.Duration {
	if d.PollInterval > 0 {
		return d.PollInterval
	}
	return DefaultPollInterval
}
