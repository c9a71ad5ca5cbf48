package gcptest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
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

// Run stands in for the Cloud Run Admin API v2 (google.cloud.run.v2 Services and Revisions) and the
// google.longrunning Operations its writes return, on one gRPC listener. Reach it with
// run.NewServicesClient / run.NewRevisionsClient and option.WithGRPCConn for a connection to Addr that
// sends an access token its Authenticator accepts; op.Wait polls the same connection with GetOperation.
//
// It answers the calls the action makes: services (services.go), revisions (revisions.go), their IAM
// policy (iam.go) and operations (operations.go). Other methods answer UNIMPLEMENTED.
type Run struct {
	cfg    *settings
	grpc   *grpcServer
	ctx    context.Context // of the runtimes; ends on Close
	cancel context.CancelFunc
	bg     sync.WaitGroup

	callLog // Calls and CallCounts

	mu       sync.Mutex
	services map[string]*runService // projects/NUMBER/locations/REGION/services/ID
	ops      []*runOperation
	writes   map[string]int
	stopped  []*runpb.Revision // revisions that stopped serving, for the RevisionStopper
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

// NewRun starts a Cloud Run stand-in on a loopback port; auth decides which tokens may call it. Close stops
// it and the revisions' runtimes.
func NewRun(auth Authenticator, opts ...Option) (*Run, error) {
	r := &Run{cfg: newSettings(opts), services: map[string]*runService{}, writes: map[string]int{}}
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
	return started(t, r, err)
}

// Addr is the host:port the gRPC server listens on.
func (r *Run) Addr() string { return r.grpc.addr }

// Close stops the server and waits for the runtimes it started to return.
func (r *Run) Close() {
	r.grpc.close()
	r.cancel()
	r.bg.Wait()
}

// Writes returns how many calls could have changed something: CreateService, UpdateService and
// SetIamPolicy calls that were not validate_only, whether or not they succeeded.
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
	defer r.begin("")()
	rs := r.lookup(project, region, service)
	if rs == nil {
		return nil, false
	}
	return r.view(rs, project), true
}

// Revisions returns the revisions of a service, oldest first.
func (r *Run) Revisions(project, region, service string) []*runpb.Revision {
	defer r.begin("")()
	var revs []*runpb.Revision
	if rs := r.lookup(project, region, service); rs != nil {
		for _, rev := range rs.revs {
			revs = append(revs, proto.Clone(rev.pb).(*runpb.Revision))
		}
	}
	return revs
}

// Policy returns the IAM policy of a service.
func (r *Run) Policy(project, region, service string) (*iampb.Policy, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.lookup(project, region, service)
	if rs == nil {
		return nil, false
	}
	return proto.Clone(rs.policy).(*iampb.Policy), true
}

// SetPolicy replaces the IAM policy of a service without the checks of SetIamPolicy, to set up what an
// earlier deploy or someone else left, such as an allUsers binding granted before the domain-restricted-
// sharing policy was enforced (an organization policy does not remove existing bindings). It gives the
// policy a new etag and reports whether the service exists.
func (r *Run) SetPolicy(project, region, service string, p *iampb.Policy) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.lookup(project, region, service)
	if rs == nil {
		return false
	}
	rs.policy = proto.Clone(p).(*iampb.Policy)
	rs.policy.Etag = []byte(newEtag())
	return true
}

// AllowsUnauthenticated tells whether Cloud Run lets a request without an identity token through to a
// service: when the service has invoker_iam_disabled, or its policy grants roles/run.invoker to allUsers
// without a condition. The local front end asks it for every request.
func (r *Run) AllowsUnauthenticated(project, region, service string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.lookup(project, region, service)
	if rs == nil {
		return false
	}
	if rs.svc.GetInvokerIamDisabled() {
		return true
	}
	for _, b := range rs.policy.GetBindings() {
		if b.GetRole() == "roles/run.invoker" && b.GetCondition() == nil && slices.Contains(b.GetMembers(), "allUsers") {
			return true
		}
	}
	return false
}

// ServingURL returns the URL the Runtime gave for the revision receiving most of a service's traffic, or
// "" if none serves (or the Runtime gave none).
func (r *Run) ServingURL(project, region, service string) string {
	defer r.begin("")()
	rs := r.lookup(project, region, service)
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

// begin takes the lock, counts a call of method (unless "", for the accessors above) and completes the
// operations that are due; the caller defers the returned unlock.
func (r *Run) begin(method string) func() {
	if method != "" {
		r.count(method)
	}
	r.mu.Lock()
	r.settle()
	return r.unlock
}

// unlock releases r.mu and tells the Runtime of revisions that stopped serving.
func (r *Run) unlock() {
	stopped := r.stopped
	r.stopped = nil
	stopper, _ := r.cfg.runtime.(RevisionStopper)
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

func (r *Run) lookup(project, region, service string) *runService {
	p, ok := r.cfg.lookupProject(project)
	if !ok {
		return nil
	}
	return r.services[serviceKey(ServiceRef{ProjectNumber: p.number, Region: region, Service: service})]
}
