package gcptest

import (
	"context"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// A runOperation is the long-running operation of a CreateService or UpdateService. It is done once the
// revision it rolls out has started (the Runtime returned) and, after that, once it has been polled
// WithOperationPolls times and WithOperationDelay has passed on the settings' clock; then the service is
// reconciled and the operation carries the service, or why its revision cannot serve.
type runOperation struct {
	name        string
	key         string // of the service
	form        string // the project as the caller wrote it
	started     time.Time
	polls       int
	generation  int64
	rev         *runRevision // the revision this operation rolls out, or nil
	runtimeDone bool         // the revision's Runtime has returned (always true without a revision)
	result      struct {
		url string
		err error
	}
	metadata *anypb.Any
	done     *longrunningpb.Operation // once complete
}

// newOperation records a long-running operation on a service, with the service as its metadata. r.mu is
// held.
func (r *Run) newOperation(ref ServiceRef, form string, metadata *runpb.Service) *runOperation {
	op := &runOperation{
		name:        "projects/" + form + "/locations/" + ref.Region + "/operations/" + uuid.NewString(),
		key:         serviceKey(ref),
		form:        form,
		started:     r.cfg.now(),
		metadata:    mustAny(metadata),
		runtimeDone: true,
	}
	r.ops = append(r.ops, op)
	return op
}

// doneOperation records an operation that is complete at once (validate_only), answered with svc.
func (r *Run) doneOperation(ref ServiceRef, form string, svc *runpb.Service) *longrunningpb.Operation {
	op := r.newOperation(ref, form, svc)
	op.done = &longrunningpb.Operation{Name: op.name, Done: true, Metadata: op.metadata, Result: &longrunningpb.Operation_Response{Response: mustAny(svc)}}
	return op.proto()
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func (op *runOperation) proto() *longrunningpb.Operation {
	if op.done != nil {
		return proto.Clone(op.done).(*longrunningpb.Operation)
	}
	return &longrunningpb.Operation{Name: op.name, Metadata: op.metadata}
}

// settle completes the operations whose time has come. r.mu is held.
func (r *Run) settle() {
	for _, op := range r.ops {
		if op.done != nil || !op.runtimeDone {
			continue
		}
		if op.polls < r.cfg.opPolls || r.cfg.now().Sub(op.started) < r.cfg.opDelay {
			continue
		}
		r.complete(op)
	}
}

// observe counts a read of rs as a poll of its pending operations, as a client that watches the service
// rather than the operation (its reconciling field) sees the rollout end in the same time; then settles.
// r.mu is held.
func (r *Run) observe(rs *runService) {
	for _, op := range r.ops {
		if op.key == serviceKey(rs.ref) && op.done == nil {
			op.polls++
		}
	}
	r.settle()
}

// complete finishes an operation: its revision is ready or failed, the service reconciled, and the
// operation carries the service or the error. r.mu is held.
func (r *Run) complete(op *runOperation) {
	op.done = &longrunningpb.Operation{Name: op.name, Done: true}
	rs := r.services[op.key] // services are never deleted
	if op.rev != nil {
		r.finishRevision(rs, op.rev, op.result.url, op.result.err)
	}
	r.reconcile(rs)
	failure := rs.failure
	if op.rev != nil && op.rev.state == revisionFailed {
		failure = notReady(op.rev)
	} else if op.generation != rs.svc.Generation {
		failure = nil // a later generation's failure is not this operation's
	}
	op.done.Metadata = mustAny(r.view(rs, op.form))
	if failure != nil {
		op.done.Result = &longrunningpb.Operation_Error{Error: failure.GRPCStatus().Proto()}
		return
	}
	op.done.Result = &longrunningpb.Operation_Response{Response: op.done.Metadata}
}

// GetOperation is how op.Wait of the Cloud Run client polls an operation.
func (a runAPI) GetOperation(_ context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	defer a.r.begin("GetOperation")()
	for _, op := range a.r.ops {
		if op.name == req.GetName() {
			op.polls++
			a.r.settle()
			return op.proto(), nil
		}
	}
	return nil, refuse(codes.NotFound, "Operation '%s' not found.", req.GetName())
}
