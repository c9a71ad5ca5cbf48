package gcptest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// revisionState is where a revision is in its rollout: pending until its Runtime returns.
type revisionState int

const (
	revisionPending revisionState = iota
	revisionReady
	revisionFailed
)

// runRevision is a stored revision with what its Runtime said of it.
type runRevision struct {
	pb       *runpb.Revision
	id       string
	template *runpb.RevisionTemplate // as stored on the service when the revision was made
	state    revisionState
	failure  *RevisionFailure
	url      string
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
	runtime, secrets, projects := r.cfg.runtime, r.cfg.secrets, r.cfg.resourceManager
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		url, err := "", checkSecrets(secrets, projects, rs.ref, revView)
		if err == nil && runtime != nil {
			url, err = runtime.Start(r.ctx, svcView, revView)
		}
		r.mu.Lock()
		defer r.unlock()
		op.result.url, op.result.err, op.runtimeDone = url, err, true
		r.settle()
	}()
}

// checkSecrets fails a revision whose secret references Secret Manager cannot serve, or that its service
// account may not read, as Cloud Run does. The account may read a secret when it holds a role with
// secretmanager.versions.access on the secret, or on its project (when rm is known).
func checkSecrets(sm *SecretManager, rm *ResourceManager, ref ServiceRef, rev *runpb.Revision) error {
	if sm == nil {
		return nil
	}
	account := rev.GetServiceAccount()
	if account == "" {
		account = ref.ProjectNumber + "-compute@developer.gserviceaccount.com"
	}
	check := func(secret, version string) error {
		if err := sm.checkAccess(ref.ProjectNumber, secret, version); err != nil {
			return err
		}
		granted, number := sm.secretGrantsAccess(ref.ProjectNumber, secret, "serviceAccount:"+account)
		if granted || rm.projectGrantsAccess(number, "serviceAccount:"+account) {
			return nil
		}
		return errNoSecretAccess
	}
	fail := func(field, secret, version string, err error) error {
		name := secret
		if !strings.HasPrefix(name, "projects/") {
			name = "projects/" + ref.ProjectNumber + "/secrets/" + secret
		}
		if version == "" {
			version = "latest"
		}
		var msg string
		switch {
		case err == errNoSecretAccess:
			// Cloud Run's wording, as reported in its deploy errors, e.g.
			// https://github.com/getsentry/eng-pipes/pull/893.
			msg = field + ": Permission denied on secret: " + name + "/versions/" + version + " for Revision service account " + account +
				". The service account used must be granted the 'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, project or higher level."
		case status.Code(err) == codes.NotFound:
			msg = field + ": Secret " + name + "/versions/" + version + " was not found"
		default:
			msg = field + ": " + status.Convert(err).Message()
		}
		return &RevisionFailure{CommonReason: runpb.Condition_SECRETS_ACCESS_CHECK_FAILED, Message: msg}
	}
	for i, c := range rev.GetContainers() {
		for j, e := range c.GetEnv() {
			if sel := e.GetValueSource().GetSecretKeyRef(); sel != nil {
				if err := check(sel.GetSecret(), sel.GetVersion()); err != nil {
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
			if err := check(src.GetSecret(), ver); err != nil {
				return fail(fmt.Sprintf("spec.template.spec.volumes[%d].secret.secret_name", i), src.GetSecret(), ver, err)
			}
		}
	}
	return nil
}

// errNoSecretAccess is a secret that exists but that the revision's service account may not read.
var errNoSecretAccess = errors.New("no secret access")

// notReady is how Cloud Run reports a revision that failed: its operation fails with this, and so does
// the service's Ready condition.
func notReady(rev *runRevision) *refusal {
	return refuse(codes.FailedPrecondition, "Revision '%s' is not ready and cannot serve traffic. %s", rev.id, rev.failure.Message)
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

func (rs *runService) revision(id string) *runRevision {
	for _, rev := range rs.revs {
		if rev.id == id {
			return rev
		}
	}
	return nil
}

func (a runAPI) GetRevision(_ context.Context, req *runpb.GetRevisionRequest) (*runpb.Revision, error) {
	defer a.r.begin("GetRevision")()
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
		return nil, runNotFound("REVISION", parts[7], ref.Region, form)
	}
	return proto.Clone(rev.pb).(*runpb.Revision), nil
}

// revisionSuffix is the random part of a generated revision name, e.g. "6hx" in mlflow-00001-6hx.
func revisionSuffix() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// revisionName is SERVICE-0000N-xyz, numbered by the service generation that created it.
func revisionName(service string, generation int64) string {
	return service + "-" + fmt.Sprintf("%05d", generation) + "-" + revisionSuffix()
}
