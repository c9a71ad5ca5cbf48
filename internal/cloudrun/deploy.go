package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Result is what a deploy left running.
type Result struct {
	Service  *runpb.Service
	Revision string // the ready revision's short name
	Created  bool   // the service did not exist before
	Updated  bool   // the service was written; false when nothing had changed
	Changes  []string
	// Previous is the short name of the revision that was ready before the deploy (the live service's
	// latest ready revision); empty when the service was created.
	Previous string
	// TagURL is the URL of Routing.Tag, when one was asked for.
	TagURL string
}

// RevisionError is a revision that did not become ready, with Cloud Run's reason.
type RevisionError struct {
	Revision string
	Reason   string
	LogsURL  string
}

func (e *RevisionError) Error() string {
	return fmt.Sprintf("Cloud Run revision %s is not ready: %s\nLogs: %s", e.Revision, e.Reason, e.LogsURL)
}

// Deployer creates or updates services with the Cloud Run Admin API.
type Deployer struct {
	Services  *run.ServicesClient
	Revisions *run.RevisionsClient
	// ProjectNumbers are the project numbers known (from Secret Manager), so that a secret Cloud Run
	// names by its project number compares equal to the same secret named by project ID.
	ProjectNumbers ProjectNumbers
	// PollInterval is how often to ask Cloud Run whether a rollout is done; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// Routing says where the new revision's traffic goes; the zero value sends it all.
	Routing Routing
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// maxConflicts bounds read-modify-write retries when someone else writes the service meanwhile.
const maxConflicts = 3

// Deploy makes the live service match desired: it creates it when missing, updates it (read, change,
// write back with the read etag) when a field the action manages differs, and writes nothing when none
// does. It waits up to wait for the new revision and fails with Cloud Run's reason if it is not ready.
//
// A write whose answer is lost (DEADLINE_EXCEEDED) may have been done or not. Deploy does not write
// again blindly: it reads the service, as after a conflict, and goes on from what it finds, waiting for
// the rollout its write started when the spec is already there.
func (d *Deployer) Deploy(ctx context.Context, desired *runpb.Service, wait time.Duration) (*Result, error) {
	var lost *writeLost
	for attempt := 1; ; attempt++ {
		res, err := d.deployOnce(ctx, desired, wait)
		var l *writeLost
		switch {
		case err == nil:
			if lost != nil && !res.Updated {
				// The write whose answer was lost had been done: this run did write the service.
				res.Updated, res.Created, res.Changes = true, lost.created, lost.changes
			}
			return res, nil
		case errors.As(err, &l) && attempt < maxConflicts:
			lost = l
			d.logf("%v; reading the service to see whether Cloud Run did it", err)
		case errors.As(err, &l):
			return nil, fmt.Errorf("%w, %d times: run the deploy again; it reads the service and goes on from what it finds", err, maxConflicts)
		case !isConflict(err):
			return nil, err
		case attempt < maxConflicts:
			d.logf("the service changed while it was being updated (%v); reading it again", err)
		default:
			return nil, fmt.Errorf("%w; gave up after %d attempts: run the deploy again once the other change to the service is done", err, maxConflicts)
		}
	}
}

// writeLost is a create or update whose answer did not arrive (DEADLINE_EXCEEDED): Cloud Run may have
// done it or not.
type writeLost struct {
	err     error
	created bool
	changes []string
}

func (e *writeLost) Error() string {
	return fmt.Sprintf("Cloud Run's answer to the write was lost (%v)", e.err)
}
func (e *writeLost) Unwrap() error { return e.err }

// lostWrite tells a write's DEADLINE_EXCEEDED (Cloud Run's own deadline, not ctx's) from other failures.
func lostWrite(ctx context.Context, err error, created bool, changes []string) error {
	if status.Code(err) != codes.DeadlineExceeded || ctx.Err() != nil {
		return nil
	}
	return &writeLost{err: err, created: created, changes: changes}
}

func (d *Deployer) deployOnce(ctx context.Context, desired *runpb.Service, wait time.Duration) (*Result, error) {
	live, err := d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: desired.Name})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		if d.Routing.NoTraffic {
			d.logf("service %s does not exist yet: its first revision takes all traffic, as Cloud Run requires", path.Base(desired.Name))
		}
		return d.create(ctx, withTraffic(desired, Traffic(nil, d.Routing)), wait)
	default:
		return nil, explain(err, desired.Name, "read")
	}
	desired = withTraffic(desired, Traffic(live, d.Routing))
	previous := ""
	if live.LatestReadyRevision != "" {
		previous = path.Base(live.LatestReadyRevision)
	}
	changes := Changes(live, desired, d.ProjectNumbers)
	next := Apply(live, desired)
	switch {
	case len(changes) == 0 && serving(live):
		d.logf("service %s is already up to date: nothing to write", path.Base(desired.Name))
		return d.ready(ctx, live, &Result{Previous: previous})
	case len(changes) == 0 && live.Reconciling:
		// This spec is being rolled out already: by an earlier write of this deploy whose answer was lost,
		// or by a run that was cancelled or stopped waiting. Another revision would only queue behind it.
		svc, err := d.waitReconciled(ctx, wait, desired.Name)
		if err != nil {
			return nil, err
		}
		return d.ready(ctx, svc, &Result{Previous: previous})
	case len(changes) == 0:
		// The spec is already what was asked, but its revision failed (a re-run after fixing what made it
		// fail: a permission, the database). An identical template makes no new revision, so mark it.
		changes = []string{"retry of failed revision " + path.Base(live.LatestCreatedRevision)}
		if next.Template.Annotations == nil {
			next.Template.Annotations = map[string]string{}
		}
		next.Template.Annotations[RetryAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	d.logf("updating service %s: %s", path.Base(desired.Name), strings.Join(changes, ", "))
	op, err := d.Services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: next})
	if err != nil {
		if lost := lostWrite(ctx, err, false, changes); lost != nil {
			return nil, lost
		}
		return nil, explain(err, desired.Name, "update")
	}
	svc, err := d.wait(ctx, wait, desired, op)
	if err != nil {
		return nil, err
	}
	return d.ready(ctx, svc, &Result{Updated: true, Changes: changes, Previous: previous})
}

func (d *Deployer) create(ctx context.Context, desired *runpb.Service, wait time.Duration) (*Result, error) {
	parent, id := splitName(desired.Name)
	d.logf("creating service %s", id)
	svc := cloneForCreate(desired)
	op, err := d.Services.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent, ServiceId: id, Service: svc})
	if err != nil {
		if lost := lostWrite(ctx, err, true, []string{"service created"}); lost != nil {
			return nil, lost
		}
		return nil, explain(err, desired.Name, "create")
	}
	created, err := d.wait(ctx, wait, desired, op)
	if err != nil {
		return nil, err
	}
	return d.ready(ctx, created, &Result{Created: true, Updated: true, Changes: []string{"service created"}})
}

// RetryAnnotation marks a revision template deployed again, unchanged, after its revision failed.
const RetryAnnotation = "deploy-mlflow/retried-at"

// serving tells whether the service's latest revision is ready and takes its traffic.
func serving(svc *runpb.Service) bool {
	return svc.LatestCreatedRevision != "" && svc.LatestCreatedRevision == svc.LatestReadyRevision &&
		svc.GetTerminalCondition().GetState() == runpb.Condition_CONDITION_SUCCEEDED
}

// ready checks that the latest revision serves: the service reports its latest created revision as ready.
func (d *Deployer) ready(ctx context.Context, svc *runpb.Service, res *Result) (*Result, error) {
	res.Service = svc
	if serving(svc) {
		res.Revision = path.Base(svc.LatestReadyRevision)
		res.TagURL = TagURL(svc, d.Routing.Tag)
		return res, nil
	}
	if rerr := d.revisionFailure(ctx, svc.Name); rerr != nil {
		return nil, rerr
	}
	return nil, &RevisionError{Revision: path.Base(svc.LatestCreatedRevision), Reason: conditionText(svc.GetTerminalCondition()), LogsURL: LogsURL(svc.Name)}
}

// revisionFailure reads the service's latest created revision and, if it failed, says why.
func (d *Deployer) revisionFailure(ctx context.Context, name string) error {
	svc, err := d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: name})
	if err != nil || svc.LatestCreatedRevision == "" || svc.LatestCreatedRevision == svc.LatestReadyRevision {
		return nil
	}
	rev, err := d.Revisions.GetRevision(ctx, &runpb.GetRevisionRequest{Name: svc.LatestCreatedRevision})
	if err != nil {
		return nil
	}
	for _, c := range rev.GetConditions() {
		if c.GetState() == runpb.Condition_CONDITION_FAILED {
			return &RevisionError{Revision: path.Base(rev.Name), Reason: conditionText(c), LogsURL: LogsURL(name)}
		}
	}
	return nil
}

func conditionText(c *runpb.Condition) string {
	if c == nil {
		return "Cloud Run gave no reason"
	}
	reason := c.GetRevisionReason().String()
	if r := c.GetReason(); r != runpb.Condition_COMMON_REASON_UNDEFINED {
		reason = r.String()
	}
	if c.GetMessage() == "" {
		return reason
	}
	return fmt.Sprintf("%s (%s)", c.GetMessage(), reason)
}

// LogsURL is the Cloud Console page of the service's logs.
func LogsURL(name string) string { return consoleURL(name, "logs") }

// ConsoleURL is the Cloud Console page of the service.
func ConsoleURL(name string) string { return consoleURL(name, "revisions") }

func consoleURL(name, tab string) string {
	p := strings.Split(name, "/") // projects/P/locations/R/services/S
	if len(p) != 6 {
		return "https://console.cloud.google.com/run"
	}
	return fmt.Sprintf("https://console.cloud.google.com/run/detail/%s/%s/%s?project=%s", p[3], p[5], tab, p[1])
}

// isConflict tells a write that lost a race (stale etag, created meanwhile), which is worth a new read.
func isConflict(err error) bool {
	switch status.Code(err) {
	case codes.Aborted, codes.AlreadyExists:
		return true
	case codes.FailedPrecondition:
		return strings.Contains(strings.ToLower(err.Error()), "etag")
	}
	return false
}

// apiError is a Cloud Run API failure put in the user's terms; it unwraps to the gRPC status.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

func explain(err error, name, verb string) error {
	svc := path.Base(name)
	msg := strings.TrimSuffix(status.Convert(err).Message(), ".")
	switch status.Code(err) {
	case codes.PermissionDenied:
		return &apiError{err: err, msg: fmt.Sprintf("Cloud Run refused to %s service %s: %s. The deploying identity needs roles/run.admin, and roles/iam.serviceAccountUser on the runtime service account; the Cloud Run Admin API must be enabled (gcloud services enable run.googleapis.com)", verb, svc, msg)}
	case codes.Unauthenticated:
		return &apiError{err: err, msg: fmt.Sprintf("Cloud Run did not accept the credentials: %s; check the google-github-actions/auth step", msg)}
	case codes.Aborted, codes.AlreadyExists:
		return &apiError{err: err, msg: fmt.Sprintf("service %s was changed by someone else during the %s: %s", svc, verb, msg)}
	case codes.InvalidArgument:
		return &apiError{err: err, msg: fmt.Sprintf("Cloud Run refused the service spec of %s: %s", svc, msg)}
	}
	return &apiError{err: err, msg: fmt.Sprintf("Cloud Run %s of service %s failed: %v", verb, svc, err)}
}

// withTraffic is a copy of the service with the given traffic.
func withTraffic(s *runpb.Service, traffic []*runpb.TrafficTarget) *runpb.Service {
	out := proto.Clone(s).(*runpb.Service)
	out.Traffic = traffic
	return out
}

// cloneForCreate drops the name, which CreateService takes as parent and service_id instead.
func cloneForCreate(s *runpb.Service) *runpb.Service {
	out := proto.Clone(s).(*runpb.Service)
	out.Name = ""
	return out
}

func splitName(name string) (parent, id string) {
	i := strings.LastIndex(name, "/services/")
	return name[:i], name[i+len("/services/"):]
}

func (d *Deployer) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}
