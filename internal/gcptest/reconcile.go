package gcptest

import (
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// reconcile derives a service's status from its revisions and pending operations, as Cloud Run reports
// it: latest created and ready revisions, traffic, conditions. r.mu is held.
func (r *Run) reconcile(rs *runService) {
	svc := rs.svc
	now := timestamppb.Now()
	svc.LatestCreatedRevision, svc.LatestReadyRevision = "", ""
	var latest, ready *runRevision
	for _, rev := range rs.revs {
		latest = rev
		if rev.state == revisionReady {
			ready = rev
		}
	}
	if latest != nil {
		svc.LatestCreatedRevision = latest.pb.Name
	}
	if ready != nil {
		svc.LatestReadyRevision = ready.pb.Name
	}
	pending := false
	for _, op := range r.ops {
		pending = pending || (op.key == serviceKey(rs.ref) && op.done == nil && op.generation == svc.Generation)
	}
	cond := func(typ string, st runpb.Condition_State, msg string) *runpb.Condition {
		c := &runpb.Condition{Type: typ, State: st, Message: msg, LastTransitionTime: now}
		if st == runpb.Condition_CONDITION_FAILED {
			c.Severity = runpb.Condition_ERROR
			c.Reasons = &runpb.Condition_Reason{Reason: runpb.Condition_REVISION_FAILED}
		}
		return c
	}
	if pending {
		svc.Reconciling = true
		svc.TerminalCondition = cond("Ready", runpb.Condition_CONDITION_RECONCILING, "Deploying revision.")
		svc.Conditions = []*runpb.Condition{
			cond("RoutesReady", runpb.Condition_CONDITION_PENDING, "Routing traffic."),
			cond("ConfigurationsReady", runpb.Condition_CONDITION_RECONCILING, "Creating revision."),
		}
		return
	}
	svc.Reconciling = false
	rs.failure = nil
	serving, statuses, routeErr := r.route(rs, ready)
	switch {
	case latest != nil && latest.state == revisionFailed:
		rs.failure = notReady(latest)
	case routeErr != nil:
		rs.failure = routeErr
	}
	if rs.failure == nil {
		for id := range rs.serving {
			if _, still := serving[id]; !still {
				r.stopped = append(r.stopped, proto.Clone(rs.revision(id).pb).(*runpb.Revision))
			}
		}
		rs.serving, rs.statuses, rs.observed = serving, statuses, svc.Generation
		svc.Uri = r.cfg.serviceURL(rs.ref)
		svc.Urls = []string{svc.Uri}
		svc.TerminalCondition = cond("Ready", runpb.Condition_CONDITION_SUCCEEDED, "")
		svc.Conditions = []*runpb.Condition{
			cond("RoutesReady", runpb.Condition_CONDITION_SUCCEEDED, ""),
			cond("ConfigurationsReady", runpb.Condition_CONDITION_SUCCEEDED, ""),
		}
	} else {
		msg := rs.failure.msg
		routes := cond("RoutesReady", runpb.Condition_CONDITION_FAILED, msg)
		if len(rs.serving) > 0 {
			routes = cond("RoutesReady", runpb.Condition_CONDITION_SUCCEEDED, "")
		}
		svc.TerminalCondition = cond("Ready", runpb.Condition_CONDITION_FAILED, msg)
		svc.Conditions = []*runpb.Condition{routes, cond("ConfigurationsReady", runpb.Condition_CONDITION_FAILED, msg)}
	}
	svc.ObservedGeneration = rs.observed
	svc.TrafficStatuses = nil
	for _, st := range rs.statuses {
		svc.TrafficStatuses = append(svc.TrafficStatuses, proto.Clone(st).(*runpb.TrafficTargetStatus))
	}
}

// route resolves a service's traffic targets to revisions: LATEST is the latest ready revision.
func (r *Run) route(rs *runService, ready *runRevision) (map[string]int32, []*runpb.TrafficTargetStatus, *refusal) {
	serving := map[string]int32{}
	var statuses []*runpb.TrafficTargetStatus
	for _, t := range rs.svc.Traffic {
		st := &runpb.TrafficTargetStatus{Type: t.Type, Revision: t.Revision, Percent: t.Percent, Tag: t.Tag}
		id := t.Revision
		if t.Type == runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST {
			if ready == nil {
				// Only the missing revision's own failure explains this; reconcile reports that first.
				return nil, nil, refuse(codes.FailedPrecondition, "No revision of the service is ready to serve traffic.")
			}
			id = ready.id
		} else if rev := rs.revision(id); rev == nil || rev.state != revisionReady {
			return nil, nil, refuse(codes.Internal, "Revision '%s' does not exist or is deleted. Update all traffic to route to currently available revisions.", id)
		}
		if t.Tag != "" {
			st.Uri = "https://" + t.Tag + "---" + strings.TrimPrefix(r.cfg.serviceURL(rs.ref), "https://")
		}
		if t.Percent > 0 {
			serving[id] += t.Percent
		}
		statuses = append(statuses, st)
	}
	return serving, statuses, nil
}
