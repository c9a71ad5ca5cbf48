package gcptest

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
	waitFor(t, "the first revision to be stopped once the second serves", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return strings.Join(rt.stopped, ",") == path.Base(first.LatestReadyRevision)
	})
	if got := r.ServingURL("my-project", "us-central1", "mlflow"); !strings.Contains(got, "mlflow-00002-") {
		t.Errorf("serving URL = %q", got)
	}
}

func TestRunSecretReferences(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	sm := StartSecretManager(t, tokens, WithProject("my-project", "111"))
	sm.AddSecret("my-project", "db-url", []byte("postgresql://"))
	sm.GrantSecretRole("my-project", "db-url", "serviceAccount:111-compute@developer.gserviceaccount.com", "roles/secretmanager.secretAccessor")
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

// TestRunSecretAccessCheck checks that a revision runs only if its service account (the template's, or
// the default compute account) holds a role that can read each secret it references, on the secret or on
// its project, and otherwise fails with Cloud Run's message.
func TestRunSecretAccessCheck(t *testing.T) {
	t.Parallel()
	const (
		compute   = "serviceAccount:111-compute@developer.gserviceaccount.com"
		dedicated = "mlflow@my-project.iam.gserviceaccount.com"
		accessor  = "roles/secretmanager.secretAccessor"
	)
	cases := []struct {
		name    string
		account string // the template's service account; empty for the default
		grant   func(sm *SecretManager, rm *ResourceManager)
		denied  string // the account named in the refusal; empty when the revision runs
	}{
		{name: "nobody granted anything", denied: "111-compute@developer.gserviceaccount.com",
			grant: func(*SecretManager, *ResourceManager) {}},
		{name: "accessor on the secret", grant: func(sm *SecretManager, _ *ResourceManager) {
			sm.GrantSecretRole("my-project", "db-url", compute, accessor)
		}},
		{name: "accessor on the project", grant: func(_ *SecretManager, rm *ResourceManager) {
			rm.GrantProjectRole("my-project", compute, accessor)
		}},
		{name: "owner of the project", grant: func(_ *SecretManager, rm *ResourceManager) {
			rm.GrantProjectRole("111", compute, "roles/owner")
		}},
		{name: "editor cannot read secret payloads", denied: "111-compute@developer.gserviceaccount.com", grant: func(_ *SecretManager, rm *ResourceManager) {
			rm.GrantProjectRole("my-project", compute, "roles/editor")
		}},
		{name: "accessor on another secret", denied: "111-compute@developer.gserviceaccount.com", grant: func(sm *SecretManager, _ *ResourceManager) {
			sm.AddSecret("my-project", "other", []byte("x"))
			sm.GrantSecretRole("my-project", "other", compute, accessor)
		}},
		{name: "the grant is to the default account, the revision runs as another", account: dedicated, denied: dedicated,
			grant: func(sm *SecretManager, _ *ResourceManager) {
				sm.GrantSecretRole("my-project", "db-url", compute, accessor)
			}},
		{name: "dedicated account granted", account: dedicated, grant: func(sm *SecretManager, _ *ResourceManager) {
			sm.GrantSecretRole("my-project", "db-url", "serviceAccount:"+dedicated, accessor)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tokens := StartTokenServer(t)
			opts := []Option{WithProject("my-project", "111")}
			sm := StartSecretManager(t, tokens, opts...)
			rm := StartResourceManager(t, tokens, opts...)
			sm.AddSecret("my-project", "db-url", []byte("postgresql://"))
			tc.grant(sm, rm)
			r := StartRun(t, tokens, append(opts, WithSecretManager(sm), WithResourceManager(rm))...)
			c, err := run.NewServicesClient(context.Background(), option.WithGRPCConn(dial(t, r.Addr(), serviceAccount(t, tokens))))
			if err != nil {
				t.Fatal(err)
			}
			svc := mlflowService("img")
			svc.Template.ServiceAccount = tc.account
			svc.Template.Volumes = []*runpb.Volume{{Name: "db", VolumeType: &runpb.Volume_Secret{Secret: &runpb.SecretVolumeSource{Secret: "db-url"}}}}
			svc.Template.Containers[0].VolumeMounts = []*runpb.VolumeMount{{Name: "db", MountPath: "/secrets"}}
			_, err = create(t, c, svc)
			if tc.denied == "" {
				if err != nil {
					t.Fatalf("the revision failed: %v", err)
				}
				return
			}
			want := "spec.template.spec.volumes[0].secret.secret_name: Permission denied on secret: projects/111/secrets/db-url/versions/latest for Revision service account " +
				tc.denied + ". The service account used must be granted the 'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, project or higher level."
			if status.Code(err) != codes.FailedPrecondition || !strings.HasSuffix(status.Convert(err).Message(), "cannot serve traffic. "+want) {
				t.Fatalf("got %v\nwant the refusal %q", err, want)
			}
			revs := r.Revisions("my-project", "us-central1", "mlflow")
			if got := revs[len(revs)-1].Conditions[0]; got.GetReason() != runpb.Condition_SECRETS_ACCESS_CHECK_FAILED || got.GetMessage() != want {
				t.Errorf("Ready condition = %v, want SECRETS_ACCESS_CHECK_FAILED with %q", got, want)
			}
		})
	}
}
