package gcptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ServiceRef names a Cloud Run service, with both forms of its project.
type ServiceRef struct {
	ProjectID     string
	ProjectNumber string
	Region        string
	Service       string
}

// DefaultServiceURL is the deterministic URL Cloud Run gives a service: https://SERVICE-NUMBER.REGION.run.app.
func DefaultServiceURL(ref ServiceRef) string {
	return "https://" + ref.Service + "-" + ref.ProjectNumber + "." + ref.Region + ".run.app"
}

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

// WithRuntime sets the Runtime that starts Cloud Run revisions.
func WithRuntime(rt Runtime) Option { return func(s *settings) { s.runtime = rt } }

// WithOperationPolls makes a Cloud Run operation done on its n-th GetOperation (or first WaitOperation),
// once its revision has started (default 1: the first poll after the call that began it).
func WithOperationPolls(n int) Option { return func(s *settings) { s.opPolls = max(n, 1) } }

// WithOperationDelay makes a Cloud Run operation done d after it began, once its revision has started,
// however often it is polled.
func WithOperationDelay(d time.Duration) Option { return func(s *settings) { s.opDelay = d } }

// WithServiceURL sets the URL Cloud Run services get (default DefaultServiceURL).
func WithServiceURL(fn func(ServiceRef) string) Option {
	return func(s *settings) { s.serviceURL = fn }
}

// WithDomainRestrictedSharing simulates the organization policy constraints/iam.allowedPolicyMemberDomains:
// SetIamPolicy refuses allUsers and allAuthenticatedUsers.
func WithDomainRestrictedSharing() Option { return func(s *settings) { s.domainRestricted = true } }

// WithSecretManager makes Cloud Run check a revision's secret references against sm, as it does before
// starting a revision: a missing or unusable secret version fails the revision.
func WithSecretManager(sm *SecretManager) Option { return func(s *settings) { s.secrets = sm } }

// Run stands in for the Cloud Run Admin API v2 (google.cloud.run.v2 Services and Revisions) and the
// google.longrunning Operations its writes return, on one gRPC listener. Reach it with
// run.NewServicesClient / run.NewRevisionsClient and option.WithGRPCConn for a connection to Addr that
// sends an access token its Authenticator accepts; op.Wait polls the same connection.
type Run struct {
	cfg    *settings
	grpc   *grpcServer
	ctx    context.Context // of the runtimes; ends on Close
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu       sync.Mutex
	runtime  Runtime
	services map[string]*runService // projects/NUMBER/locations/REGION/services/ID
	ops      []*runOperation
	calls    map[string]int
	writes   map[string]int
	stopped  []*runpb.Revision // revisions that stopped serving, for the RevisionStopper
}

type runService struct {
	ref      ServiceRef
	svc      *runpb.Service // names in the project-number form; the view rewrites them
	revs     []*runRevision // oldest first
	policy   *iampb.Policy
	observed int64                        // generation of the last successful reconciliation
	statuses []*runpb.TrafficTargetStatus // of the last successful reconciliation
	serving  map[string]int32             // revision ID -> percent of traffic it receives
	failure  *status.Status               // why the current generation cannot serve, or nil
}

type revisionState int

const (
	revisionPending revisionState = iota
	revisionReady
	revisionFailed
)

type runRevision struct {
	pb       *runpb.Revision
	id       string
	template *runpb.RevisionTemplate // as stored on the service when the revision was made
	state    revisionState
	failure  *RevisionFailure
	url      string
}

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
	deleted  *runpb.Service // for a deletion, the service as deleted
	metadata *anypb.Any
	done     *longrunningpb.Operation // once complete
}

// NewRun starts a Cloud Run stand-in on a loopback port; auth decides which tokens may call it. Close stops
// it and the revisions' runtimes.
func NewRun(auth Authenticator, opts ...Option) (*Run, error) {
	cfg := newSettings(opts)
	if cfg.serviceURL == nil {
		cfg.serviceURL = DefaultServiceURL
	}
	r := &Run{cfg: cfg, runtime: cfg.runtime, services: map[string]*runService{}, calls: map[string]int{}, writes: map[string]int{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	api := runAPI{r: r}
	srv, err := serveGRPC(auth, func(g *grpc.Server) {
		runpb.RegisterServicesServer(g, api)
		runpb.RegisterRevisionsServer(g, api)
		longrunningpb.RegisterOperationsServer(g, api)
	})
	if err != nil {
		r.cancel()
		return nil, err
	}
	r.grpc = srv
	return r, nil
}

// StartRun starts a Cloud Run stand-in that is closed when the test ends.
func StartRun(t testing.TB, auth Authenticator, opts ...Option) *Run {
	t.Helper()
	r, err := NewRun(auth, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Addr is the host:port the gRPC server listens on.
func (r *Run) Addr() string { return r.grpc.addr }

// Close stops the server and waits for the runtimes it started to return.
func (r *Run) Close() {
	r.grpc.close()
	r.cancel()
	r.bg.Wait()
}

// SetRuntime replaces the Runtime for revisions created from now on.
func (r *Run) SetRuntime(rt Runtime) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runtime = rt
}

// Calls returns how many authenticated calls of the named method (e.g. "GetService", "GetOperation") it
// answered.
func (r *Run) Calls(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method]
}

// CallCounts returns the authenticated calls per method.
func (r *Run) CallCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calls)
}

// Writes returns how many calls could have changed something: CreateService, UpdateService, DeleteService
// and SetIamPolicy calls that were not validate_only, whether or not they succeeded.
func (r *Run) Writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.writes {
		n += c
	}
	return n
}

// Service returns the service as GetService would return it for a name with project (an ID or number).
func (r *Run) Service(project, region, service string) (*runpb.Service, bool) {
	r.mu.Lock()
	defer r.unlock()
	r.settle()
	rs, form := r.lookup(project, region, service)
	if rs == nil {
		return nil, false
	}
	return r.view(rs, form), true
}

// Revisions returns the revisions of a service, oldest first.
func (r *Run) Revisions(project, region, service string) []*runpb.Revision {
	r.mu.Lock()
	defer r.unlock()
	r.settle()
	rs, _ := r.lookup(project, region, service)
	if rs == nil {
		return nil
	}
	var revs []*runpb.Revision
	for _, rev := range rs.revs {
		revs = append(revs, proto.Clone(rev.pb).(*runpb.Revision))
	}
	return revs
}

// Policy returns the IAM policy of a service.
func (r *Run) Policy(project, region, service string) (*iampb.Policy, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs, _ := r.lookup(project, region, service)
	if rs == nil {
		return nil, false
	}
	return proto.Clone(rs.policy).(*iampb.Policy), true
}

// ServingURL returns the URL the Runtime gave for the revision receiving most of a service's traffic, or
// "" if none serves (or the Runtime gave none).
func (r *Run) ServingURL(project, region, service string) string {
	r.mu.Lock()
	defer r.unlock()
	r.settle()
	rs, _ := r.lookup(project, region, service)
	if rs == nil {
		return ""
	}
	best, share := "", int32(-1)
	for _, rev := range rs.revs {
		if p, ok := rs.serving[rev.id]; ok && p > share {
			best, share = rev.url, p
		}
	}
	return best
}

func (r *Run) lookup(project, region, service string) (*runService, string) {
	p, ok := r.cfg.lookupProject(project)
	if !ok {
		return nil, ""
	}
	return r.services["projects/"+p.number+"/locations/"+region+"/services/"+service], project
}

// unlock releases r.mu and tells the runtime of revisions that stopped serving.
func (r *Run) unlock() {
	stopped := r.stopped
	r.stopped = nil
	stopper, _ := r.runtime.(RevisionStopper)
	r.mu.Unlock()
	if stopper == nil {
		return
	}
	for _, rev := range stopped {
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			stopper.Stop(rev)
		}()
	}
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
		return ref, "", nil, status.Errorf(codes.PermissionDenied, "Permission '%s' denied on resource '%s' (or resource may not exist).", permission, name)
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

func serviceKey(ref ServiceRef) string {
	return "projects/" + ref.ProjectNumber + "/locations/" + ref.Region + "/services/" + ref.Service
}

func notFound(kind, id string, ref ServiceRef, form string) error {
	return status.Errorf(codes.NotFound, "Resource '%s' of kind '%s' in region '%s' in project '%s' does not exist.", id, kind, ref.Region, form)
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

// settle completes the operations whose time has come. r.mu is held.
func (r *Run) settle() {
	for _, op := range r.ops {
		if op.done != nil || !op.runtimeDone {
			continue
		}
		if r.cfg.opDelay > 0 {
			if time.Since(op.started) < r.cfg.opDelay {
				continue
			}
		} else if op.polls < r.cfg.opPolls {
			continue
		}
		r.complete(op)
	}
}

// complete finishes an operation: its revision is ready or failed, the service reconciled, and the
// operation carries the service or the error. r.mu is held.
func (r *Run) complete(op *runOperation) {
	op.done = &longrunningpb.Operation{Name: op.name, Done: true, Metadata: op.metadata}
	if op.deleted != nil {
		op.done.Result = &longrunningpb.Operation_Response{Response: mustAny(op.deleted)}
		return
	}
	rs := r.services[op.key]
	if rs == nil {
		if op.rev != nil && op.result.err == nil {
			r.stopped = append(r.stopped, proto.Clone(op.rev.pb).(*runpb.Revision)) // its service is gone
		}
		parts := strings.Split(op.key, "/")
		op.done.Result = &longrunningpb.Operation_Error{Error: status.New(codes.NotFound,
			fmt.Sprintf("Resource '%s' of kind 'SERVICE' in region '%s' in project '%s' does not exist.", parts[5], parts[3], op.form)).Proto()}
		return
	}
	if op.rev != nil {
		r.finishRevision(rs, op.rev, op.result.url, op.result.err)
	}
	r.reconcile(rs)
	var failure *status.Status
	switch {
	case op.rev != nil && op.rev.state == revisionFailed:
		failure = status.New(codes.FailedPrecondition, notReady(op.rev))
	case op.generation == rs.svc.Generation && rs.failure != nil:
		failure = rs.failure
	}
	if failure != nil {
		op.done.Metadata = mustAny(r.view(rs, op.form))
		op.done.Result = &longrunningpb.Operation_Error{Error: failure.Proto()}
		return
	}
	final := mustAny(r.view(rs, op.form))
	op.done.Metadata, op.done.Result = final, &longrunningpb.Operation_Response{Response: final}
}

func notReady(rev *runRevision) string {
	return "Revision '" + rev.id + "' is not ready and cannot serve traffic. " + rev.failure.Message
}

// finishRevision records what the Runtime said of a revision. r.mu is held.
func (r *Run) finishRevision(rs *runService, rev *runRevision, url string, err error) {
	now := timestamppb.Now()
	rev.pb.Reconciling = false
	rev.pb.UpdateTime = now
	if err == nil {
		rev.state, rev.url = revisionReady, url
		rev.pb.Conditions = []*runpb.Condition{
			{Type: "Ready", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: now},
			{Type: "ContainerHealthy", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: now},
			{Type: "ResourcesAvailable", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: now},
		}
		return
	}
	var f *RevisionFailure
	if !errors.As(err, &f) {
		f = &RevisionFailure{Message: err.Error()}
	}
	if f.CommonReason == runpb.Condition_COMMON_REASON_UNDEFINED && f.RevisionReason == runpb.Condition_REVISION_REASON_UNDEFINED {
		f = &RevisionFailure{RevisionReason: runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR, Message: f.Message}
	}
	rev.state, rev.failure = revisionFailed, f
	failed := func(typ string) *runpb.Condition {
		c := &runpb.Condition{Type: typ, State: runpb.Condition_CONDITION_FAILED, Message: f.Message, Severity: runpb.Condition_ERROR, LastTransitionTime: now}
		if f.CommonReason != runpb.Condition_COMMON_REASON_UNDEFINED {
			c.Reasons = &runpb.Condition_Reason{Reason: f.CommonReason}
		} else {
			c.Reasons = &runpb.Condition_RevisionReason_{RevisionReason: f.RevisionReason}
		}
		return c
	}
	rev.pb.Conditions = []*runpb.Condition{failed("Ready"), failed("ContainerHealthy"),
		{Type: "ResourcesAvailable", State: runpb.Condition_CONDITION_SUCCEEDED, LastTransitionTime: now}}
}

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
		pending = pending || (op.key == serviceKey(rs.ref) && op.done == nil && op.deleted == nil && op.generation == svc.Generation)
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
		rs.failure = status.New(codes.FailedPrecondition, notReady(latest))
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
		msg := rs.failure.Message()
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

func (rs *runService) revision(id string) *runRevision {
	for _, rev := range rs.revs {
		if rev.id == id {
			return rev
		}
	}
	return nil
}

// route resolves a service's traffic targets to revisions: LATEST is the latest ready revision.
func (r *Run) route(rs *runService, ready *runRevision) (map[string]int32, []*runpb.TrafficTargetStatus, *status.Status) {
	serving := map[string]int32{}
	var statuses []*runpb.TrafficTargetStatus
	for _, t := range rs.svc.Traffic {
		st := &runpb.TrafficTargetStatus{Type: t.Type, Revision: t.Revision, Percent: t.Percent, Tag: t.Tag}
		id := t.Revision
		if t.Type == runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST {
			if ready == nil {
				// Only the missing revision's own failure explains this; reconcile reports that first.
				return nil, nil, status.New(codes.FailedPrecondition, "No revision of the service is ready to serve traffic.")
			}
			id = ready.id
		} else if rev := rs.revision(id); rev == nil || rev.state != revisionReady {
			return nil, nil, status.New(codes.Internal, "Revision '"+id+"' does not exist or is deleted. Update all traffic to route to currently available revisions.")
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

// startRevision makes the revision of a new generation of a service and starts its Runtime in the
// background; the operation completes once it returned. r.mu is held.
func (r *Run) startRevision(rs *runService, op *runOperation, id, principal string) {
	svc := rs.svc
	t := proto.Clone(svc.Template).(*runpb.RevisionTemplate)
	now := timestamppb.Now()
	pb := &runpb.Revision{
		Name:                          serviceKey(rs.ref) + "/revisions/" + id,
		Uid:                           uuid.NewString(),
		Generation:                    1,
		Labels:                        t.Labels,
		Annotations:                   t.Annotations,
		CreateTime:                    now,
		UpdateTime:                    now,
		LaunchStage:                   svc.LaunchStage,
		Service:                       serviceKey(rs.ref),
		Scaling:                       t.Scaling,
		VpcAccess:                     t.VpcAccess,
		MaxInstanceRequestConcurrency: t.MaxInstanceRequestConcurrency,
		Timeout:                       t.Timeout,
		ServiceAccount:                t.ServiceAccount,
		Containers:                    t.Containers,
		Volumes:                       t.Volumes,
		ExecutionEnvironment:          t.ExecutionEnvironment,
		EncryptionKey:                 t.EncryptionKey,
		SessionAffinity:               t.SessionAffinity,
		NodeSelector:                  t.NodeSelector,
		Reconciling:                   true,
		ObservedGeneration:            1,
		Creator:                       principal,
		LogUri:                        "https://console.cloud.google.com/logs/viewer?project=" + rs.ref.ProjectID + "&resource=cloud_run_revision/service_name/" + rs.ref.Service + "/revision_name/" + id,
		Etag:                          newEtag(),
		Conditions: []*runpb.Condition{
			{Type: "Ready", State: runpb.Condition_CONDITION_RECONCILING, LastTransitionTime: now},
			{Type: "ContainerHealthy", State: runpb.Condition_CONDITION_PENDING, LastTransitionTime: now},
			{Type: "ResourcesAvailable", State: runpb.Condition_CONDITION_RECONCILING, LastTransitionTime: now},
		},
	}
	rev := &runRevision{pb: pb, id: id, template: proto.Clone(svc.Template).(*runpb.RevisionTemplate)}
	rs.revs = append(rs.revs, rev)
	op.rev, op.runtimeDone = rev, false

	svcView, revView := r.view(rs, rs.ref.ProjectID), proto.Clone(pb).(*runpb.Revision)
	runtime, secrets := r.runtime, r.cfg.secrets
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		url, err := "", checkSecrets(secrets, rs.ref, revView)
		if err == nil && runtime != nil {
			url, err = runtime.Start(r.ctx, svcView, revView)
		}
		r.mu.Lock()
		defer r.unlock()
		op.result.url, op.result.err, op.runtimeDone = url, err, true
		r.settle()
	}()
}

// checkSecrets fails a revision whose secret references Secret Manager cannot serve, as Cloud Run does.
func checkSecrets(sm *SecretManager, ref ServiceRef, rev *runpb.Revision) error {
	if sm == nil {
		return nil
	}
	fail := func(field, secret, version string, err error) error {
		name := secret
		if !strings.HasPrefix(name, "projects/") {
			name = "projects/" + ref.ProjectNumber + "/secrets/" + secret
		}
		if version == "" {
			version = "latest"
		}
		msg := field + ": Secret " + name + "/versions/" + version + " was not found"
		if status.Code(err) != codes.NotFound {
			msg = field + ": " + status.Convert(err).Message()
		}
		return &RevisionFailure{CommonReason: runpb.Condition_SECRETS_ACCESS_CHECK_FAILED, Message: msg}
	}
	for i, c := range rev.GetContainers() {
		for j, e := range c.GetEnv() {
			if sel := e.GetValueSource().GetSecretKeyRef(); sel != nil {
				if err := sm.checkAccess(ref.ProjectNumber, sel.GetSecret(), sel.GetVersion()); err != nil {
					return fail(fmt.Sprintf("spec.template.spec.containers[%d].env[%d].value_from.secret_key_ref.name", i, j), sel.GetSecret(), sel.GetVersion(), err)
				}
			}
		}
	}
	for i, v := range rev.GetVolumes() {
		src := v.GetSecret()
		if src == nil {
			continue
		}
		versions := []string{"latest"}
		if len(src.GetItems()) > 0 {
			versions = nil
			for _, it := range src.GetItems() {
				versions = append(versions, it.GetVersion())
			}
		}
		for _, ver := range versions {
			if err := sm.checkAccess(ref.ProjectNumber, src.GetSecret(), ver); err != nil {
				return fail(fmt.Sprintf("spec.template.spec.volumes[%d].secret.secret_name", i), src.GetSecret(), ver, err)
			}
		}
	}
	return nil
}

// newOperation records a long-running operation on a service, with the service as its metadata. r.mu is
// held.
func (r *Run) newOperation(ref ServiceRef, form string, metadata *runpb.Service) *runOperation {
	op := &runOperation{
		name:        "projects/" + form + "/locations/" + ref.Region + "/operations/" + uuid.NewString(),
		key:         serviceKey(ref),
		form:        form,
		started:     time.Now(),
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

// spec is the part of a service its caller sets: everything but output-only fields and its name.
func spec(svc *runpb.Service) *runpb.Service {
	s := proto.Clone(svc).(*runpb.Service)
	clearOutputOnly(s)
	s.Name = ""
	return s
}

// runAPI is the gRPC face of a Run stand-in.
type runAPI struct {
	runpb.UnimplementedServicesServer
	runpb.UnimplementedRevisionsServer
	longrunningpb.UnimplementedOperationsServer
	r *Run
}

var (
	_ runpb.ServicesServer           = runAPI{}
	_ runpb.RevisionsServer          = runAPI{}
	_ longrunningpb.OperationsServer = runAPI{}
)

// begin counts a call, takes the lock and completes what is due; the caller defers the returned unlock.
func (a runAPI) begin(method string) func() {
	a.r.mu.Lock()
	a.r.calls[method]++
	a.r.settle()
	return a.r.unlock
}

func (a runAPI) CreateService(ctx context.Context, req *runpb.CreateServiceRequest) (*longrunningpb.Operation, error) {
	defer a.begin("CreateService")()
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
		return nil, status.Errorf(codes.AlreadyExists, "Resource '%s' already exists.", ref.Service)
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
	defer a.begin("GetService")()
	ref, form, _, err := a.r.parseName(req.GetName(), []string{"projects", "locations", "services"}, "run.services.get")
	if err != nil {
		return nil, err
	}
	rs := a.r.services[serviceKey(ref)]
	if rs == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	return a.r.view(rs, form), nil
}

func (a runAPI) ListServices(_ context.Context, req *runpb.ListServicesRequest) (*runpb.ListServicesResponse, error) {
	defer a.begin("ListServices")()
	parts, ok := splitName(req.GetParent(), "projects", "locations")
	if !ok {
		return nil, invalid("Invalid parent %q: expected projects/{project}/locations/{location}.", req.GetParent())
	}
	p, ok := a.r.cfg.lookupProject(parts[1])
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "Permission 'run.services.list' denied on resource '%s' (or resource may not exist).", req.GetParent())
	}
	var found []*runService
	for _, rs := range a.r.services {
		if rs.ref.ProjectNumber == p.number && (parts[3] == "-" || parts[3] == rs.ref.Region) {
			found = append(found, rs)
		}
	}
	// Newest first, as the API documents.
	slices.SortFunc(found, func(x, y *runService) int { return y.svc.CreateTime.AsTime().Compare(x.svc.CreateTime.AsTime()) })
	start, end, next, err := paginate(len(found), req.GetPageSize(), req.GetPageToken(), 100)
	if err != nil {
		return nil, err
	}
	resp := &runpb.ListServicesResponse{NextPageToken: next}
	for _, rs := range found[start:end] {
		resp.Services = append(resp.Services, a.r.view(rs, parts[1]))
	}
	return resp, nil
}

func (a runAPI) UpdateService(ctx context.Context, req *runpb.UpdateServiceRequest) (*longrunningpb.Operation, error) {
	defer a.begin("UpdateService")()
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
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	if in.GetEtag() != "" && in.GetEtag() != rs.svc.Etag {
		return nil, status.Errorf(codes.Aborted, "The etag %s in the request does not match the current etag %s of Service '%s': it changed since it was read. Read it again and retry.", in.GetEtag(), rs.svc.Etag, ref.Service)
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
				return nil, status.Errorf(codes.AlreadyExists, "Revision named '%s' with different configuration already exists.", newID)
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

// merge applies an update to the stored spec: the whole service, or with an update mask only the named
// top-level fields (a nested path such as scaling.min_instance_count replaces all of scaling).
func merge(stored, update *runpb.Service, paths []string) (*runpb.Service, error) {
	if len(paths) == 0 {
		return update, nil
	}
	dst, src := stored.ProtoReflect(), update.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for _, path := range paths {
		top, _, _ := strings.Cut(path, ".")
		fd := fields.ByName(protoreflect.Name(snakeCase(top)))
		if fd == nil || fd.Name() == "name" {
			return nil, invalid("update_mask: %q is not a field of Service that can be updated.", path)
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
	clearOutputOnly(stored)
	return stored, nil
}

func snakeCase(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (a runAPI) DeleteService(_ context.Context, req *runpb.DeleteServiceRequest) (*longrunningpb.Operation, error) {
	defer a.begin("DeleteService")()
	r := a.r
	if !req.GetValidateOnly() {
		r.writes["DeleteService"]++
	}
	ref, form, _, err := r.parseName(req.GetName(), []string{"projects", "locations", "services"}, "run.services.delete")
	if err != nil {
		return nil, err
	}
	rs := r.services[serviceKey(ref)]
	if rs == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	if req.GetEtag() != "" && req.GetEtag() != rs.svc.Etag {
		return nil, status.Errorf(codes.Aborted, "The etag %s in the request does not match the current etag %s of Service '%s'.", req.GetEtag(), rs.svc.Etag, ref.Service)
	}
	deleted := r.view(rs, form)
	now := time.Now()
	deleted.DeleteTime, deleted.ExpireTime = timestamppb.New(now), timestamppb.New(now.Add(30*24*time.Hour))
	if req.GetValidateOnly() {
		return r.doneOperation(ref, form, deleted), nil
	}
	op := r.newOperation(ref, form, deleted)
	op.deleted = deleted
	for id := range rs.serving {
		r.stopped = append(r.stopped, proto.Clone(rs.revision(id).pb).(*runpb.Revision))
	}
	delete(r.services, serviceKey(ref))
	return op.proto(), nil
}

func (a runAPI) GetIamPolicy(_ context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.begin("GetIamPolicy")()
	ref, form, _, err := a.r.parseName(req.GetResource(), []string{"projects", "locations", "services"}, "run.services.getIamPolicy")
	if err != nil {
		return nil, err
	}
	rs := a.r.services[serviceKey(ref)]
	if rs == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	return proto.Clone(rs.policy).(*iampb.Policy), nil
}

// Member forms IAM accepts in a binding.
var memberPrefixes = []string{"user:", "serviceAccount:", "group:", "domain:", "principal:", "principalSet:", "deleted:"}

func (a runAPI) SetIamPolicy(_ context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.begin("SetIamPolicy")()
	r := a.r
	r.writes["SetIamPolicy"]++
	ref, form, _, err := r.parseName(req.GetResource(), []string{"projects", "locations", "services"}, "run.services.setIamPolicy")
	if err != nil {
		return nil, err
	}
	rs := r.services[serviceKey(ref)]
	if rs == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	policy := req.GetPolicy()
	if policy == nil {
		return nil, invalid("policy: field is required.")
	}
	if len(policy.GetEtag()) > 0 && !bytes.Equal(policy.GetEtag(), rs.policy.GetEtag()) {
		return nil, status.Error(codes.Aborted, "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.")
	}
	for _, b := range policy.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/run.") && !slices.Contains([]string{"roles/owner", "roles/editor", "roles/viewer"}, b.GetRole()) {
			return nil, invalid("Role %s is not supported for this resource.", b.GetRole())
		}
		for _, m := range b.GetMembers() {
			public := m == "allUsers" || m == "allAuthenticatedUsers"
			if !public && !slices.ContainsFunc(memberPrefixes, func(p string) bool { return strings.HasPrefix(m, p) && len(m) > len(p) }) {
				return nil, invalid("Invalid member %q: members are allUsers, allAuthenticatedUsers or TYPE:ID (user:, serviceAccount:, group:, domain:, principal:, principalSet:).", m)
			}
			if public && r.cfg.domainRestricted {
				st, _ := status.New(codes.FailedPrecondition, "One or more users named in the policy do not belong to a permitted customer,  perhaps due to an organization policy.").
					WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
						Type:        "constraints/iam.allowedPolicyMemberDomains",
						Subject:     "orgpolicy:" + serviceKey(ref) + "?configvalue=" + m,
						Description: "User " + m + " is not in permitted organization.",
					}}})
				return nil, st.Err()
			}
		}
	}
	stored := proto.Clone(policy).(*iampb.Policy)
	stored.Version = max(stored.Version, 1)
	stored.Etag = make([]byte, 8)
	_, _ = rand.Read(stored.Etag[2:])
	stored.Etag[0], stored.Etag[1] = 0x07, 0x06
	rs.policy = stored
	return proto.Clone(stored).(*iampb.Policy), nil
}

func (a runAPI) TestIamPermissions(_ context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	defer a.begin("TestIamPermissions")()
	ref, form, _, err := a.r.parseName(req.GetResource(), []string{"projects", "locations", "services"}, "run.services.get")
	if err != nil {
		return nil, err
	}
	if a.r.services[serviceKey(ref)] == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	resp := &iampb.TestIamPermissionsResponse{}
	for _, p := range req.GetPermissions() {
		if strings.HasPrefix(p, "run.") {
			resp.Permissions = append(resp.Permissions, p)
		}
	}
	return resp, nil
}

func (a runAPI) GetRevision(_ context.Context, req *runpb.GetRevisionRequest) (*runpb.Revision, error) {
	defer a.begin("GetRevision")()
	ref, form, parts, err := a.r.parseName(req.GetName(), []string{"projects", "locations", "services", "revisions"}, "run.revisions.get")
	if err != nil {
		return nil, err
	}
	rs := a.r.services[serviceKey(ref)]
	var rev *runRevision
	if rs != nil {
		rev = rs.revision(parts[7])
	}
	if rev == nil {
		return nil, notFound("REVISION", parts[7], ref, form)
	}
	return proto.Clone(rev.pb).(*runpb.Revision), nil
}

func (a runAPI) ListRevisions(_ context.Context, req *runpb.ListRevisionsRequest) (*runpb.ListRevisionsResponse, error) {
	defer a.begin("ListRevisions")()
	ref, form, _, err := a.r.parseName(req.GetParent(), []string{"projects", "locations", "services"}, "run.revisions.list")
	if err != nil {
		return nil, err
	}
	var revs []*runRevision
	for _, rs := range a.r.services {
		if rs.ref.ProjectNumber == ref.ProjectNumber && rs.ref.Region == ref.Region && (ref.Service == "-" || ref.Service == rs.ref.Service) {
			revs = append(revs, rs.revs...)
		}
	}
	if ref.Service != "-" && a.r.services[serviceKey(ref)] == nil {
		return nil, notFound("SERVICE", ref.Service, ref, form)
	}
	slices.SortStableFunc(revs, func(x, y *runRevision) int { return y.pb.CreateTime.AsTime().Compare(x.pb.CreateTime.AsTime()) })
	start, end, next, err := paginate(len(revs), req.GetPageSize(), req.GetPageToken(), 100)
	if err != nil {
		return nil, err
	}
	resp := &runpb.ListRevisionsResponse{NextPageToken: next}
	for _, rev := range revs[start:end] {
		resp.Revisions = append(resp.Revisions, proto.Clone(rev.pb).(*runpb.Revision))
	}
	return resp, nil
}

func (a runAPI) operation(name string) (*runOperation, error) {
	for _, op := range a.r.ops {
		if op.name == name {
			return op, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "Operation '%s' not found.", name)
}

func (a runAPI) GetOperation(_ context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	defer a.begin("GetOperation")()
	op, err := a.operation(req.GetName())
	if err != nil {
		return nil, err
	}
	op.polls++
	a.r.settle()
	return op.proto(), nil
}

func (a runAPI) WaitOperation(ctx context.Context, req *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	unlock := a.begin("WaitOperation")
	op, err := a.operation(req.GetName())
	if err != nil {
		unlock()
		return nil, err
	}
	op.polls = max(op.polls, a.r.cfg.opPolls)
	timeout := time.Minute
	if req.GetTimeout() != nil {
		timeout = req.GetTimeout().AsDuration()
	}
	deadline := time.Now().Add(timeout)
	for {
		a.r.settle()
		if op.done != nil || time.Now().After(deadline) || ctx.Err() != nil {
			res := op.proto()
			unlock()
			return res, nil
		}
		a.r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		a.r.mu.Lock()
	}
}

func (a runAPI) ListOperations(_ context.Context, req *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	defer a.begin("ListOperations")()
	var ops []*longrunningpb.Operation
	for _, op := range a.r.ops {
		if strings.HasPrefix(op.name, req.GetName()+"/operations/") {
			ops = append(ops, op.proto())
		}
	}
	start, end, next, err := paginate(len(ops), req.GetPageSize(), req.GetPageToken(), 100)
	if err != nil {
		return nil, err
	}
	return &longrunningpb.ListOperationsResponse{Operations: ops[start:end], NextPageToken: next}, nil
}
