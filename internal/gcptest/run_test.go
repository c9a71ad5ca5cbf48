package gcptest

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

const (
	testParent  = "projects/my-project/locations/us-central1"
	testService = testParent + "/services/mlflow"
)

// runClients starts a token server and a Cloud Run stand-in knowing my-project (number 111) and returns
// the real clients, authenticated with a service-account key.
func runClients(t *testing.T, opts ...Option) (*Run, *run.ServicesClient, *run.RevisionsClient) {
	t.Helper()
	tokens := StartTokenServer(t)
	r := StartRun(t, tokens, append([]Option{WithProject("my-project", "111")}, opts...)...)
	conn := dial(t, r.Addr(), serviceAccount(t, tokens))
	ctx := context.Background()
	services, err := run.NewServicesClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	revisions, err := run.NewRevisionsClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	return r, services, revisions
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mlflowService(image string) *runpb.Service {
	return &runpb.Service{Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: image}}}}
}

func create(t *testing.T, c *run.ServicesClient, svc *runpb.Service) (*runpb.Service, error) {
	t.Helper()
	ctx := waitCtx(t)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: svc})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	return op.Wait(ctx)
}

func update(t *testing.T, c *run.ServicesClient, svc *runpb.Service) (*runpb.Service, error) {
	t.Helper()
	ctx := waitCtx(t)
	op, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: svc})
	if err != nil {
		return nil, err
	}
	return op.Wait(ctx)
}

func get(t *testing.T, c *run.ServicesClient) *runpb.Service {
	t.Helper()
	svc, err := c.GetService(context.Background(), &runpb.GetServiceRequest{Name: testService})
	if err != nil {
		t.Fatalf("GetService: %v", err)
	}
	return svc
}

func TestRunCreateFillsDefaults(t *testing.T) {
	t.Parallel()
	r, c, revs := runClients(t)
	ctx := waitCtx(t)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("us-docker.pkg.dev/my-project/r/mlflow:1")})
	if err != nil {
		t.Fatal(err)
	}
	if op.Done() {
		t.Error("the operation is done when CreateService returns; Cloud Run's finish later")
	}
	if meta, err := op.Metadata(); err != nil || meta.GetName() != testService {
		t.Errorf("operation metadata = %v, %v; want the Service", meta, err)
	}
	if during := get(t, c); !during.Reconciling || during.TerminalCondition.GetState() != runpb.Condition_CONDITION_RECONCILING || during.LatestReadyRevision != "" {
		t.Errorf("while deploying: reconciling=%v terminal=%v latestReady=%q", during.Reconciling, during.TerminalCondition, during.LatestReadyRevision)
	}
	svc, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}

	c0 := svc.Template.Containers[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"name", svc.Name, testService},
		{"uri", svc.Uri, "https://mlflow-111.us-central1.run.app"},
		{"generation", svc.Generation, int64(1)},
		{"observed_generation", svc.ObservedGeneration, int64(1)},
		{"reconciling", svc.Reconciling, false},
		{"terminal condition", svc.TerminalCondition.GetState(), runpb.Condition_CONDITION_SUCCEEDED},
		{"ingress", svc.Ingress, runpb.IngressTraffic_INGRESS_TRAFFIC_ALL},
		{"port", fmt.Sprint(c0.Ports[0].Name, " ", c0.Ports[0].ContainerPort), "http1 8080"},
		{"limits", fmt.Sprint(c0.Resources.Limits), "map[cpu:1000m memory:512Mi]"},
		{"cpu_idle", c0.Resources.CpuIdle, true},
		{"startup probe", fmt.Sprint(c0.StartupProbe.GetTcpSocket().GetPort(), " ", c0.StartupProbe.TimeoutSeconds, " ", c0.StartupProbe.PeriodSeconds, " ", c0.StartupProbe.FailureThreshold), "8080 240 240 1"},
		{"concurrency", svc.Template.MaxInstanceRequestConcurrency, int32(80)},
		{"timeout", svc.Template.Timeout.AsDuration(), 300 * time.Second},
		{"service account", svc.Template.ServiceAccount, "111-compute@developer.gserviceaccount.com"},
		{"max instances", svc.Template.Scaling.GetMaxInstanceCount(), int32(100)},
		{"traffic", fmt.Sprint(svc.TrafficStatuses[0].Type, " ", svc.TrafficStatuses[0].Percent), "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST 100"},
		{"creator", svc.Creator, "deployer@test-project.iam.gserviceaccount.com"},
	}
	for _, ch := range checks {
		if fmt.Sprint(ch.got) != fmt.Sprint(ch.want) {
			t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
		}
	}
	if svc.Uid == "" || svc.Etag == "" || svc.CreateTime == nil || svc.UpdateTime == nil || len(svc.Conditions) == 0 {
		t.Errorf("output-only fields missing: uid=%q etag=%q create=%v update=%v conditions=%v", svc.Uid, svc.Etag, svc.CreateTime, svc.UpdateTime, svc.Conditions)
	}
	revID := path.Base(svc.LatestCreatedRevision)
	if svc.LatestReadyRevision != svc.LatestCreatedRevision || !strings.HasPrefix(svc.LatestCreatedRevision, testService+"/revisions/mlflow-00001-") || len(revID) != len("mlflow-00001-abc") {
		t.Errorf("latest created %q, latest ready %q", svc.LatestCreatedRevision, svc.LatestReadyRevision)
	}

	rev, err := revs.GetRevision(ctx, &runpb.GetRevisionRequest{Name: svc.LatestReadyRevision})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Name != "projects/111/locations/us-central1/services/mlflow/revisions/"+revID || rev.Service != "projects/111/locations/us-central1/services/mlflow" {
		t.Errorf("revision name %q, service %q; want the project number", rev.Name, rev.Service)
	}
	if rev.Conditions[0].Type != "Ready" || rev.Conditions[0].State != runpb.Condition_CONDITION_SUCCEEDED || rev.Containers[0].Image != "us-docker.pkg.dev/my-project/r/mlflow:1" {
		t.Errorf("revision = %v", rev)
	}
	if got, ok := r.Service("111", "us-central1", "mlflow"); !ok || got.Name != "projects/111/locations/us-central1/services/mlflow" {
		t.Errorf("Service accessor by number = %v", got)
	}
	if r.Writes() != 1 || r.Calls("GetOperation") < 1 {
		t.Errorf("writes = %d, GetOperation calls = %d", r.Writes(), r.Calls("GetOperation"))
	}
}

func TestRunUpdate(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t)
	first, err := create(t, c, mlflowService("img:1"))
	if err != nil {
		t.Fatal(err)
	}

	// Writing back what was read changes nothing: no revision, no new generation.
	same, err := update(t, c, get(t, c))
	if err != nil {
		t.Fatalf("no-op update: %v", err)
	}
	if same.Generation != 1 || len(r.Revisions("my-project", "us-central1", "mlflow")) != 1 || same.Etag != first.Etag {
		t.Errorf("after a no-op update: generation %d, %d revisions, etag %s -> %s", same.Generation, len(r.Revisions("my-project", "us-central1", "mlflow")), first.Etag, same.Etag)
	}

	changed := get(t, c)
	changed.Template.Containers[0].Image = "img:2"
	second, err := update(t, c, changed)
	if err != nil {
		t.Fatal(err)
	}
	if second.Generation != 2 || !strings.Contains(second.LatestReadyRevision, "/revisions/mlflow-00002-") || second.Etag == first.Etag {
		t.Errorf("after an image change: generation %d, latest ready %s, etag %s", second.Generation, second.LatestReadyRevision, second.Etag)
	}

	// A label on the service is a new generation but not a new revision.
	labelled := get(t, c)
	labelled.Labels = map[string]string{"managed-by": "deploy-mlflow"}
	third, err := update(t, c, labelled)
	if err != nil {
		t.Fatal(err)
	}
	if third.Generation != 3 || third.LatestReadyRevision != second.LatestReadyRevision {
		t.Errorf("after a label change: generation %d, latest ready %s", third.Generation, third.LatestReadyRevision)
	}
	if n := len(r.Revisions("my-project", "us-central1", "mlflow")); n != 2 {
		t.Errorf("%d revisions, want 2", n)
	}

	stale := get(t, c)
	stale.Etag = first.Etag
	stale.Template.Containers[0].Image = "img:3"
	if _, err := update(t, c, stale); status.Code(err) != codes.Aborted {
		t.Errorf("update with a stale etag = %v, want Aborted", err)
	}
	if got := r.CallCounts()["UpdateService"]; got != 4 || r.Writes() != 5 {
		t.Errorf("UpdateService calls = %d, writes = %d; want 4 and 5", got, r.Writes())
	}
}

func TestRunCreateAndUpdateErrors(t *testing.T) {
	t.Parallel()
	_, c, _ := runClients(t)
	ctx := waitCtx(t)
	if _, err := create(t, c, mlflowService("img:1")); err != nil {
		t.Fatal(err)
	}
	withPort := mlflowService("img")
	withPort.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "PORT", Values: &runpb.EnvVar_Value{Value: "5000"}}}
	split := mlflowService("img")
	split.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 50}}

	tests := []struct {
		name    string
		call    func() error
		want    codes.Code
		wantMsg string
	}{
		{"create existing", func() error {
			_, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img")})
			return err
		}, codes.AlreadyExists, "already exists"},
		{"update missing", func() error {
			_, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: &runpb.Service{Name: testParent + "/services/absent", Template: mlflowService("img").Template}})
			return err
		}, codes.NotFound, "Resource 'absent' of kind 'SERVICE' in region 'us-central1' in project 'my-project' does not exist."},
		{"get missing", func() error {
			_, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: testParent + "/services/absent"})
			return err
		}, codes.NotFound, "does not exist"},
		{"reserved env", func() error {
			_, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "other", Service: withPort})
			return err
		}, codes.InvalidArgument, "reserved env names were provided: PORT"},
		{"bad service id", func() error {
			_, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "MLflow_Server", Service: mlflowService("img")})
			return err
		}, codes.InvalidArgument, "service_id"},
		{"no image", func() error {
			_, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "other", Service: mlflowService("")})
			return err
		}, codes.InvalidArgument, "image"},
		{"traffic not 100", func() error {
			_, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "other", Service: split})
			return err
		}, codes.InvalidArgument, "add up to 100"},
		{"unknown project", func() error {
			_, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: "projects/nope/locations/us-central1/services/mlflow"})
			return err
		}, codes.PermissionDenied, "run.services.get"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.want || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %v, want %v containing %q", err, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestRunAllowMissingAndValidateOnly(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t)
	ctx := waitCtx(t)

	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img"), ValidateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	preview, err := op.Wait(ctx)
	if err != nil || preview.Template.Containers[0].Ports[0].ContainerPort != 8080 {
		t.Fatalf("validate_only create = %v, %v; want the defaults filled in", preview, err)
	}
	if _, ok := r.Service("my-project", "us-central1", "mlflow"); ok || r.Writes() != 0 {
		t.Fatalf("validate_only stored the service (writes %d)", r.Writes())
	}

	svc := mlflowService("img")
	svc.Name = testService
	uop, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: svc, AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	created, err := uop.Wait(ctx)
	if err != nil || created.Generation != 1 || created.LatestReadyRevision == "" {
		t.Fatalf("update with allow_missing = %v, %v; want the service created", created, err)
	}
}

func TestRunFailedRevision(t *testing.T) {
	t.Parallel()
	runtime := RuntimeFunc(func(_ context.Context, _ *runpb.Service, rev *runpb.Revision) (string, error) {
		if rev.Containers[0].Image == "broken" {
			return "", ContainerFailedToStart(8080)
		}
		return "http://127.0.0.1:9/" + path.Base(rev.Name), nil
	})
	r, c, revs := runClients(t, WithRuntime(runtime))
	good, err := create(t, c, mlflowService("good"))
	if err != nil {
		t.Fatal(err)
	}
	goodURL := r.ServingURL("my-project", "us-central1", "mlflow")

	broken := get(t, c)
	broken.Template.Containers[0].Image = "broken"
	_, err = update(t, c, broken)
	var apiErr *apierror.APIError
	if !errors.As(err, &apiErr) || apiErr.GRPCStatus().Code() != codes.FailedPrecondition {
		t.Fatalf("Wait error = %v, want FAILED_PRECONDITION", err)
	}
	msg := apiErr.GRPCStatus().Message()
	if !strings.HasPrefix(msg, "Revision 'mlflow-00002-") || !strings.Contains(msg, "is not ready and cannot serve traffic. The user-provided container failed to start") {
		t.Errorf("operation error message = %q", msg)
	}

	svc := get(t, c)
	if svc.LatestReadyRevision != good.LatestReadyRevision || !strings.Contains(svc.LatestCreatedRevision, "mlflow-00002-") {
		t.Errorf("latest ready %s, latest created %s; want the old one ready and the new one created", svc.LatestReadyRevision, svc.LatestCreatedRevision)
	}
	if svc.TerminalCondition.GetState() != runpb.Condition_CONDITION_FAILED || svc.TerminalCondition.GetMessage() != msg || svc.ObservedGeneration != 1 {
		t.Errorf("terminal condition %v, observed generation %d", svc.TerminalCondition, svc.ObservedGeneration)
	}
	if got := r.ServingURL("my-project", "us-central1", "mlflow"); got != goodURL || !strings.Contains(goodURL, "mlflow-00001-") {
		t.Errorf("serving URL %q, want the old revision's %q", got, goodURL)
	}
	rev, err := revs.GetRevision(waitCtx(t), &runpb.GetRevisionRequest{Name: svc.LatestCreatedRevision})
	if err != nil {
		t.Fatal(err)
	}
	ready := rev.Conditions[0]
	if ready.Type != "Ready" || ready.State != runpb.Condition_CONDITION_FAILED || ready.GetRevisionReason() != runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR || !strings.Contains(ready.Message, "PORT=8080") {
		t.Errorf("failed revision's Ready condition = %v", ready)
	}

	// A fixed image deploys again, and the service recovers.
	fixed := get(t, c)
	fixed.Template.Containers[0].Image = "good-again"
	third, err := update(t, c, fixed)
	if err != nil || third.TerminalCondition.GetState() != runpb.Condition_CONDITION_SUCCEEDED || !strings.Contains(third.LatestReadyRevision, "mlflow-00003-") {
		t.Errorf("after a fix: %v, %v", third, err)
	}
}

func TestRunFirstRevisionFails(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t, WithRuntime(RuntimeFunc(func(context.Context, *runpb.Service, *runpb.Revision) (string, error) {
		return "", ImageNotFound("us-docker.pkg.dev/my-project/r/mlflow:missing")
	})))
	_, err := create(t, c, mlflowService("us-docker.pkg.dev/my-project/r/mlflow:missing"))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "Image 'us-docker.pkg.dev/my-project/r/mlflow:missing' not found.") {
		t.Fatalf("Wait error = %v", err)
	}
	svc, _ := r.Service("my-project", "us-central1", "mlflow")
	if svc.Uri != "" || svc.LatestReadyRevision != "" || svc.ObservedGeneration != 0 || len(svc.TrafficStatuses) != 0 {
		t.Errorf("a service that never served: uri %q, latest ready %q, observed %d, traffic %v", svc.Uri, svc.LatestReadyRevision, svc.ObservedGeneration, svc.TrafficStatuses)
	}
	rev := r.Revisions("my-project", "us-central1", "mlflow")[0]
	if rev.Conditions[0].GetReason() != runpb.Condition_CONTAINER_MISSING {
		t.Errorf("revision reason = %v, want CONTAINER_MISSING", rev.Conditions[0].GetReasons())
	}
}

func TestRunOperationFinishesLater(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      []Option
		polls     int // GetOperation calls that see it not done
		wait      time.Duration
		wantPolls int
	}{
		{name: "after three polls", opts: []Option{WithOperationPolls(3)}, polls: 2},
		{name: "after a delay", opts: []Option{WithOperationDelay(300 * time.Millisecond)}, polls: 5, wait: 350 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c, _ := runClients(t, tt.opts...)
			ctx := waitCtx(t)
			op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img")})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.polls {
				got, err := c.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()})
				if err != nil || got.Done {
					t.Fatalf("poll %d: done=%v err=%v, want not done yet", i+1, got.GetDone(), err)
				}
			}
			time.Sleep(tt.wait)
			got, err := c.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()})
			if err != nil || !got.Done || got.GetResponse() == nil {
				t.Fatalf("final poll: %v, %v; want done with a response", got, err)
			}
			svc, err := c.CreateServiceOperation(op.Name()).Wait(ctx)
			if err != nil || svc.LatestReadyRevision == "" {
				t.Errorf("Wait after done = %v, %v", svc, err)
			}
		})
	}
}

// blockingRuntime starts revisions only when told, and records which revisions were stopped.
type blockingRuntime struct {
	release chan struct{}
	mu      sync.Mutex
	stopped []string
}

func (b *blockingRuntime) Start(ctx context.Context, _ *runpb.Service, rev *runpb.Revision) (string, error) {
	select {
	case <-b.release:
		return "http://" + path.Base(rev.Name), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (b *blockingRuntime) Stop(rev *runpb.Revision) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = append(b.stopped, path.Base(rev.Name))
}

func TestRunWaitsForTheRuntime(t *testing.T) {
	t.Parallel()
	rt := &blockingRuntime{release: make(chan struct{})}
	r, c, _ := runClients(t, WithRuntime(rt))
	ctx := waitCtx(t)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img:1")})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got, err := c.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()}); err != nil || got.Done {
			t.Fatalf("done=%v err=%v while the revision is still starting", got.GetDone(), err)
		}
	}
	close(rt.release)
	first, err := op.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := get(t, c)
	next.Template.Containers[0].Image = "img:2"
	if _, err := update(t, c, next); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rt.mu.Lock()
		stopped := strings.Join(rt.stopped, ",")
		rt.mu.Unlock()
		if stopped == path.Base(first.LatestReadyRevision) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopped revisions = %q, want the first one once the second serves", stopped)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.ServingURL("my-project", "us-central1", "mlflow"); !strings.Contains(got, "mlflow-00002-") {
		t.Errorf("serving URL = %q", got)
	}
}

func TestRunSecretReferences(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	sm := StartSecretManager(t, tokens, WithProject("my-project", "111"))
	sm.AddSecret("my-project", "db-url", []byte("postgresql://"))
	r := StartRun(t, tokens, WithProject("my-project", "111"), WithSecretManager(sm))
	c, err := run.NewServicesClient(context.Background(), option.WithGRPCConn(dial(t, r.Addr(), serviceAccount(t, tokens))))
	if err != nil {
		t.Fatal(err)
	}
	env := func(secret string) *runpb.Service {
		svc := mlflowService("img")
		svc.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "DB", Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{
			SecretKeyRef: &runpb.SecretKeySelector{Secret: secret, Version: "latest"}}}}}
		return svc
	}
	if _, err := create(t, c, env("db-url")); err != nil {
		t.Fatalf("a revision reading an existing secret: %v", err)
	}
	missing := get(t, c)
	missing.Template = env("projects/my-project/secrets/absent").Template
	_, err = update(t, c, missing)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "secret_key_ref.name: Secret projects/my-project/secrets/absent/versions/latest was not found") {
		t.Fatalf("a revision reading a missing secret: %v", err)
	}
	revs := r.Revisions("my-project", "us-central1", "mlflow")
	if got := revs[len(revs)-1].Conditions[0].GetReason(); got != runpb.Condition_SECRETS_ACCESS_CHECK_FAILED {
		t.Errorf("reason = %v, want SECRETS_ACCESS_CHECK_FAILED", got)
	}
}

func TestRunIAMPolicy(t *testing.T) {
	t.Parallel()
	invoker := func(etag []byte, members ...string) *iampb.SetIamPolicyRequest {
		return &iampb.SetIamPolicyRequest{Resource: testService, Policy: &iampb.Policy{Etag: etag, Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: members}}}}
	}
	t.Run("read-modify-write", func(t *testing.T) {
		t.Parallel()
		r, c, _ := runClients(t)
		ctx := waitCtx(t)
		if _, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testService}); status.Code(err) != codes.NotFound {
			t.Errorf("GetIamPolicy before the service exists = %v, want NotFound", err)
		}
		if _, err := create(t, c, mlflowService("img")); err != nil {
			t.Fatal(err)
		}
		p, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testService})
		if err != nil || len(p.Etag) == 0 || len(p.Bindings) != 0 {
			t.Fatalf("initial policy = %v, %v", p, err)
		}
		set, err := c.SetIamPolicy(ctx, invoker(p.Etag, "allUsers"))
		if err != nil {
			t.Fatal(err)
		}
		if string(set.Etag) == string(p.Etag) {
			t.Error("the policy etag did not change")
		}
		if _, err := c.SetIamPolicy(ctx, invoker(p.Etag, "user:a@example.com")); status.Code(err) != codes.Aborted {
			t.Errorf("SetIamPolicy with a stale etag = %v, want Aborted", err)
		}
		if _, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: testService, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/storage.admin", Members: []string{"allUsers"}}}}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("SetIamPolicy with a role Cloud Run does not have = %v, want InvalidArgument", err)
		}
		if _, err := c.SetIamPolicy(ctx, invoker(nil, "a@example.com")); status.Code(err) != codes.InvalidArgument {
			t.Errorf("SetIamPolicy with a member without type = %v, want InvalidArgument", err)
		}
		stored, _ := r.Policy("my-project", "us-central1", "mlflow")
		if len(stored.Bindings) != 1 || stored.Bindings[0].Members[0] != "allUsers" {
			t.Errorf("stored policy = %v", stored)
		}
		perms, err := c.TestIamPermissions(ctx, &iampb.TestIamPermissionsRequest{Resource: testService, Permissions: []string{"run.services.setIamPolicy", "storage.objects.get"}})
		if err != nil || len(perms.Permissions) != 1 {
			t.Errorf("TestIamPermissions = %v, %v", perms, err)
		}
	})
	t.Run("domain restricted sharing", func(t *testing.T) {
		t.Parallel()
		_, c, _ := runClients(t, WithDomainRestrictedSharing())
		if _, err := create(t, c, mlflowService("img")); err != nil {
			t.Fatal(err)
		}
		_, err := c.SetIamPolicy(waitCtx(t), invoker(nil, "allUsers"))
		var apiErr *apierror.APIError
		if !errors.As(err, &apiErr) || apiErr.GRPCStatus().Code() != codes.FailedPrecondition || !strings.Contains(err.Error(), "do not belong to a permitted customer") {
			t.Fatalf("SetIamPolicy(allUsers) = %v, want FAILED_PRECONDITION from the org policy", err)
		}
		var pf *errdetails.PreconditionFailure
		for _, d := range apiErr.GRPCStatus().Details() {
			if p, ok := d.(*errdetails.PreconditionFailure); ok {
				pf = p
			}
		}
		if pf == nil || pf.Violations[0].Type != "constraints/iam.allowedPolicyMemberDomains" {
			t.Errorf("details = %v, want a PreconditionFailure naming the constraint", apiErr.GRPCStatus().Details())
		}
		if _, err := c.SetIamPolicy(waitCtx(t), invoker(nil, "serviceAccount:ci@my-project.iam.gserviceaccount.com")); err != nil {
			t.Errorf("a member of the organization: %v", err)
		}
	})
}

func TestRunListDeleteAndTraffic(t *testing.T) {
	t.Parallel()
	r, c, revs := runClients(t)
	ctx := waitCtx(t)
	first, err := create(t, c, mlflowService("img:1"))
	if err != nil {
		t.Fatal(err)
	}
	next := get(t, c)
	next.Template.Containers[0].Image = "img:2"
	if _, err := update(t, c, next); err != nil {
		t.Fatal(err)
	}

	// Pin all traffic to the first revision, by its short name, with an update mask.
	pinned := &runpb.Service{Name: testService, Traffic: []*runpb.TrafficTarget{{
		Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, Revision: path.Base(first.LatestReadyRevision), Percent: 100}}}
	op, err := c.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: pinned, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"traffic"}}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := op.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if svc.TrafficStatuses[0].Revision != path.Base(first.LatestReadyRevision) || svc.Template.Containers[0].Image != "img:2" {
		t.Errorf("traffic %v, image %s; want traffic pinned and the template kept", svc.TrafficStatuses, svc.Template.Containers[0].Image)
	}

	var names []string
	it := revs.ListRevisions(ctx, &runpb.ListRevisionsRequest{Parent: testService, PageSize: 1})
	for {
		rev, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, path.Base(rev.Name)[:len("mlflow-00001")])
	}
	if strings.Join(names, ",") != "mlflow-00002,mlflow-00001" {
		t.Errorf("revisions = %v, want newest first", names)
	}
	sit := c.ListServices(ctx, &runpb.ListServicesRequest{Parent: testParent})
	if s, err := sit.Next(); err != nil || s.Name != testService {
		t.Errorf("ListServices = %v, %v", s, err)
	}

	dop, err := c.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: testService})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := dop.Wait(ctx)
	if err != nil || deleted.DeleteTime == nil {
		t.Errorf("DeleteService = %v, %v", deleted, err)
	}
	if _, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: testService}); status.Code(err) != codes.NotFound {
		t.Errorf("GetService after delete = %v, want NotFound", err)
	}
	if r.Writes() != 4 {
		t.Errorf("writes = %d, want 4 (create, update, update, delete)", r.Writes())
	}
}

func TestRunNeedsCredentials(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	r := StartRun(t, tokens)
	c, err := run.NewServicesClient(context.Background(), option.WithGRPCConn(dial(t, r.Addr(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateService(waitCtx(t), &runpb.CreateServiceRequest{Parent: "projects/test-project/locations/us-central1", ServiceId: "mlflow", Service: mlflowService("img")})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("CreateService without a token = %v, want Unauthenticated", err)
	}
	if r.Writes() != 0 {
		t.Errorf("an unauthenticated call counted as a write")
	}
}

func TestRunWaitAndListOperations(t *testing.T) {
	t.Parallel()
	_, c, _ := runClients(t, WithOperationPolls(50))
	ctx := waitCtx(t)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img")})
	if err != nil {
		t.Fatal(err)
	}
	// WaitOperation waits for the revision, however many polls a GetOperation would need.
	done, err := c.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: op.Name()})
	if err != nil || !done.Done || done.GetResponse() == nil {
		t.Fatalf("WaitOperation = %v, %v", done, err)
	}
	it := c.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: testParent})
	got, err := it.Next()
	if err != nil || got.Name != op.Name() || !strings.HasPrefix(got.Name, testParent+"/operations/") {
		t.Errorf("ListOperations = %v, %v", got, err)
	}
	if _, err := c.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: testParent + "/operations/none"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetOperation(unknown) = %v, want NotFound", err)
	}
}

func TestRunDeleteDuringRollout(t *testing.T) {
	t.Parallel()
	rt := &blockingRuntime{release: make(chan struct{})}
	_, c, _ := runClients(t, WithRuntime(rt))
	ctx := waitCtx(t)
	op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img")})
	if err != nil {
		t.Fatal(err)
	}
	dop, err := c.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: testService})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dop.Wait(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
	close(rt.release)
	if _, err := op.Wait(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("the creation of a service deleted meanwhile = %v, want NotFound", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rt.mu.Lock()
		n := len(rt.stopped)
		rt.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revision that started after its service was deleted was never stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
