package gcptest

import (
	"context"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

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

// TestRunTrafficWithUpdateMask pins traffic to an older revision with an update mask: only the masked
// field changes.
func TestRunTrafficWithUpdateMask(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t)
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

	if r.Writes() != 3 {
		t.Errorf("writes = %d, want 3 (create, update, update)", r.Writes())
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
