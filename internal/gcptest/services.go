package gcptest

import (
	"context"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// runService is a stored service with its revisions, policy and the state of its traffic.
type runService struct {
	ref      ServiceRef
	svc      *runpb.Service // names in the project-number form; the view rewrites them
	revs     []*runRevision // oldest first
	policy   *iampb.Policy
	observed int64                        // generation of the last successful reconciliation
	statuses []*runpb.TrafficTargetStatus // of the last successful reconciliation
	serving  map[string]int32             // revision ID -> percent of traffic it receives
	failure  *refusal                     // why the current generation cannot serve, or nil
}

// parseName reads projects/P/locations/L/services/S[/revisions/R]; permission names the IAM permission
// that Google reports for an unknown project.
func (r *Run) parseName(name string, collections []string, permission string) (ref ServiceRef, form string, parts []string, err error) {
	parts, ok := splitName(name, collections...)
	if !ok {
		return ref, "", nil, invalid("Invalid resource name %q: expected %s.", name, strings.Join(collections, "/{…}/")+"/{…}")
	}
	p, ok := r.cfg.lookupProject(parts[1])
	if !ok {
		return ref, "", nil, runPermissionDenied(permission, name)
	}
	if !regionPattern.MatchString(parts[3]) {
		return ref, "", nil, invalid("Location %q is not a valid Cloud Run region.", parts[3])
	}
	ref = ServiceRef{ProjectID: p.id, ProjectNumber: p.number, Region: parts[3]}
	if len(parts) > 5 {
		ref.Service = parts[5]
	}
	return ref, parts[1], parts, nil
}

// service finds the service a request names, or refuses as Cloud Run does; it also returns the project as
// the caller wrote it.
func (r *Run) service(name, permission string) (*runService, string, error) {
	ref, form, _, err := r.parseName(name, []string{"projects", "locations", "services"}, permission)
	if err != nil {
		return nil, "", err
	}
	rs := r.services[serviceKey(ref)]
	if rs == nil {
		return nil, "", runNotFound("SERVICE", ref.Service, ref.Region, form)
	}
	return rs, form, nil
}

func serviceKey(ref ServiceRef) string {
	return "projects/" + ref.ProjectNumber + "/locations/" + ref.Region + "/services/" + ref.Service
}

// view is a stored service as returned to a caller that named its project as form.
func (r *Run) view(rs *runService, form string) *runpb.Service {
	v := proto.Clone(rs.svc).(*runpb.Service)
	from, to := "projects/"+rs.ref.ProjectNumber+"/", "projects/"+form+"/"
	for _, f := range []*string{&v.Name, &v.LatestCreatedRevision, &v.LatestReadyRevision} {
		*f = strings.Replace(*f, from, to, 1)
	}
	return v
}

// CreateService stores a service and starts its first revision; the operation it returns is done once
// the revision serves or has failed (see runOperation).
func (a runAPI) CreateService(ctx context.Context, req *runpb.CreateServiceRequest) (*longrunningpb.Operation, error) {
	defer a.r.begin("CreateService")()
	r := a.r
	if !req.GetValidateOnly() {
		r.writes["CreateService"]++
	}
	ref, form, _, err := r.parseName(req.GetParent(), []string{"projects", "locations"}, "run.services.create")
	if err != nil {
		return nil, err
	}
	ref.Service = req.GetServiceId()
	return r.create(ctx, ref, form, req.GetService(), req.GetValidateOnly())
}

func (r *Run) create(ctx context.Context, ref ServiceRef, form string, in *runpb.Service, validateOnly bool) (*longrunningpb.Operation, error) {
	if !serviceIDPattern.MatchString(ref.Service) {
		return nil, invalid("Invalid value for service_id: %q. Service names must use only lowercase alphanumeric characters and dashes, begin with a letter, not end with a dash, and be less than 50 characters.", ref.Service)
	}
	if in == nil {
		return nil, invalid("service: field is required.")
	}
	if err := validateService(in, ref.Service); err != nil {
		return nil, err
	}
	if _, exists := r.services[serviceKey(ref)]; exists {
		return nil, refuse(codes.AlreadyExists, "Resource '%s' already exists.", ref.Service)
	}
	svc := spec(in)
	applyDefaults(svc, ref.ProjectNumber)
	svc.Name = serviceKey(ref)
	principal, _ := PrincipalFrom(ctx)
	now := timestamppb.Now()
	svc.Uid, svc.Generation, svc.CreateTime, svc.UpdateTime = uuid.NewString(), 1, now, now
	svc.Creator, svc.LastModifier, svc.Etag = principal, principal, newEtag()
	rs := &runService{ref: ref, svc: svc, policy: &iampb.Policy{Version: 1, Etag: []byte{0x00, 0x20, 0x01}}}
	if validateOnly {
		return r.doneOperation(ref, form, r.view(rs, form)), nil
	}
	r.services[serviceKey(ref)] = rs
	op := r.newOperation(ref, form, svc)
	op.generation = 1
	id := svc.Template.Revision
	if id == "" {
		id = revisionName(ref.Service, 1)
	}
	r.startRevision(rs, op, id, principal)
	r.reconcile(rs)
	op.metadata = mustAny(r.view(rs, form))
	return op.proto(), nil
}

func (a runAPI) GetService(_ context.Context, req *runpb.GetServiceRequest) (*runpb.Service, error) {
	defer a.r.begin("GetService")()
	rs, form, err := a.r.service(req.GetName(), "run.services.get")
	if err != nil {
		return nil, err
	}
	a.r.observe(rs)
	return a.r.view(rs, form), nil
}

// UpdateService replaces a service's spec (or, with an update mask, the named fields). A changed template
// makes a new revision; a spec that changes nothing makes no new generation.
func (a runAPI) UpdateService(ctx context.Context, req *runpb.UpdateServiceRequest) (*longrunningpb.Operation, error) {
	defer a.r.begin("UpdateService")()
	r := a.r
	if !req.GetValidateOnly() {
		r.writes["UpdateService"]++
	}
	in := req.GetService()
	ref, form, _, err := r.parseName(in.GetName(), []string{"projects", "locations", "services"}, "run.services.update")
	if err != nil {
		return nil, err
	}
	rs := r.services[serviceKey(ref)]
	if rs == nil {
		if req.GetAllowMissing() {
			return r.create(ctx, ref, form, in, req.GetValidateOnly())
		}
		return nil, runNotFound("SERVICE", ref.Service, ref.Region, form)
	}
	if in.GetEtag() != "" && in.GetEtag() != rs.svc.Etag {
		return nil, refuse(codes.Aborted, "The etag %s in the request does not match the current etag %s of Service '%s': it changed since it was read. Read it again and retry.", in.GetEtag(), rs.svc.Etag, ref.Service)
	}
	desired, err := merge(spec(rs.svc), spec(in), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	if err := validateService(desired, ref.Service); err != nil {
		return nil, err
	}
	applyDefaults(desired, ref.ProjectNumber)
	templateChanged := !proto.Equal(desired.Template, rs.svc.Template) || req.GetForceNewRevision()
	changed := templateChanged || !proto.Equal(desired, spec(rs.svc))

	newID := ""
	if templateChanged {
		newID = desired.Template.Revision
		if existing := rs.revision(newID); newID != "" && existing != nil {
			if !proto.Equal(existing.template, desired.Template) {
				return nil, refuse(codes.AlreadyExists, "Revision named '%s' with different configuration already exists.", newID)
			}
			newID = "" // the template names a revision that already has it: nothing to make
		} else if newID == "" {
			newID = revisionName(ref.Service, rs.svc.Generation+1)
		}
	}
	principal, _ := PrincipalFrom(ctx)
	if changed {
		kept := rs.svc
		desired.Name, desired.Uid, desired.CreateTime, desired.Creator = kept.Name, kept.Uid, kept.CreateTime, kept.Creator
		desired.Generation, desired.UpdateTime, desired.LastModifier, desired.Etag = kept.Generation+1, timestamppb.Now(), principal, newEtag()
		desired.Uri, desired.Urls = kept.Uri, kept.Urls
		desired.LatestCreatedRevision, desired.LatestReadyRevision, desired.ObservedGeneration = kept.LatestCreatedRevision, kept.LatestReadyRevision, kept.ObservedGeneration
		desired.TerminalCondition, desired.Conditions, desired.TrafficStatuses = kept.TerminalCondition, kept.Conditions, kept.TrafficStatuses
	}
	if req.GetValidateOnly() {
		preview := rs.svc
		if changed {
			preview = desired
		}
		return r.doneOperation(ref, form, r.view(&runService{ref: rs.ref, svc: preview}, form)), nil
	}

	op := r.newOperation(ref, form, rs.svc)
	op.generation = rs.svc.Generation
	if changed {
		rs.svc = desired
		op.generation = desired.Generation
		if newID != "" {
			r.startRevision(rs, op, newID, principal)
		}
	}
	r.reconcile(rs)
	op.metadata = mustAny(r.view(rs, form))
	return op.proto(), nil
}
