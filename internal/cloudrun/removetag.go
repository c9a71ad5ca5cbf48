package cloudrun

import (
	"context"
	"fmt"
	"path"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// RemoveTag removes a traffic tag from the service (see WithoutTag) and changes nothing else: the
// template is written back as read, so no revision is made. A tag that is not there is nothing to write.
func (d *Deployer) RemoveTag(ctx context.Context, name, tag string, wait time.Duration) (*Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := d.removeTagOnce(ctx, name, tag, wait)
		switch {
		case err == nil || !isConflict(err):
			return res, err
		case attempt < maxConflicts:
			d.logf("the service changed while its tag was being removed (%v); reading it again", err)
		default:
			return nil, fmt.Errorf("%w; gave up after %d attempts: run the step again once the other change to the service is done", err, maxConflicts)
		}
	}
}

func (d *Deployer) removeTagOnce(ctx context.Context, name, tag string, wait time.Duration) (*Result, error) {
	live, err := d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return nil, &apiError{err: err, msg: fmt.Sprintf("service %s does not exist, so it has no tag %s to remove: check project_id, region and service", path.Base(name), tag)}
	}
	if err != nil {
		return nil, explain(err, name, "read")
	}
	ready := ""
	if live.LatestReadyRevision != "" {
		ready = path.Base(live.LatestReadyRevision)
	}
	res := &Result{Service: live, Revision: ready, Previous: ready}
	traffic, found := WithoutTag(live.Traffic, tag)
	if !found {
		d.logf("service %s has no tag %s: nothing to remove", path.Base(name), tag)
		return res, nil
	}
	next := proto.Clone(live).(*runpb.Service)
	next.Traffic = traffic
	d.logf("removing tag %s from service %s", tag, path.Base(name))
	op, err := d.Services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: next})
	if err != nil {
		return nil, explain(err, name, "update")
	}
	svc, err := d.wait(ctx, wait, live, op)
	if err != nil {
		return nil, err
	}
	res.Service, res.Updated, res.Changes = svc, true, []string{"tag " + tag + " removed"}
	return res, nil
}
