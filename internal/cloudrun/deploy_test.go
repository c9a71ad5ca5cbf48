package cloudrun

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

const project = gcptest.DefaultProjectID

// world is a Run stand-in and a Deployer that reaches it with real credentials.
type world struct {
	run *gcptest.Run
	d   *Deployer
	log *strings.Builder
}

func newWorld(t *testing.T, opts ...gcptest.Option) *world {
	t.Helper()
	ctx := context.Background()
	tokens := gcptest.StartTokenServer(t)
	r := gcptest.StartRun(t, tokens, opts...)
	ts, err := tokens.TokenSource(ctx, project, "")
	if err != nil {
		t.Fatal(err)
	}
	copts, err := gcp.ClientOptions(r.Addr(), ts)
	if err != nil {
		t.Fatal(err)
	}
	services, err := run.NewServicesClient(ctx, copts...)
	if err != nil {
		t.Fatal(err)
	}
	revisions, err := run.NewRevisionsClient(ctx, copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { services.Close(); revisions.Close() })
	w := &world{run: r, log: &strings.Builder{}}
	w.d = &Deployer{Services: services, Revisions: revisions, Logf: func(f string, a ...any) {
		w.log.WriteString(strings.TrimSpace(strings.ReplaceAll(f, "%", "")) + "\n")
	}}
	return w
}

func desiredFor(t *testing.T, extra map[string]string, image string) *runpb.Service {
	t.Helper()
	env := map[string]string{"INPUT_PROJECT_ID": project}
	for k, v := range extra {
		env[k] = v
	}
	return Desired(testConfig(t, env), image)
}

func TestDeployCreatesThenWritesNothingThenUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Operations finish only on their third poll, as real ones finish later.
	w := newWorld(t, gcptest.WithOperationPolls(3))

	first := desiredFor(t, nil, testImage)
	res, err := w.d.Deploy(ctx, first, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Revision == "" || !strings.HasPrefix(res.Service.Uri, "https://mlflow-") {
		t.Errorf("first deploy: %+v", res)
	}
	if got := w.run.Writes(); got != 1 {
		t.Errorf("first deploy made %d writes, want 1 (create)", got)
	}

	// Nothing changed: no write at all.
	res, err = w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated || w.run.Writes() != 1 {
		t.Errorf("an unchanged deploy wrote: updated=%v writes=%d", res.Updated, w.run.Writes())
	}

	// A new image rolls a new revision through an update.
	newImage := strings.Replace(testImage, "0001", "0002", 1)
	res, err = w.d.Deploy(ctx, desiredFor(t, nil, newImage), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated || res.Created || len(res.Changes) != 1 || res.Changes[0] != "image" {
		t.Errorf("second deploy: %+v", res)
	}
	revs := w.run.Revisions(project, "us-central1", "mlflow")
	if len(revs) != 2 || !strings.HasSuffix(revs[1].Name, res.Revision) {
		t.Errorf("revisions = %v, want 2 with the latest %s", revs, res.Revision)
	}
	live, _ := w.run.Service(project, "us-central1", "mlflow")
	if live.Template.Containers[0].Image != newImage {
		t.Errorf("live image = %s", live.Template.Containers[0].Image)
	}
	if w.run.Writes() != 2 {
		t.Errorf("writes = %d, want 2", w.run.Writes())
	}
}

func TestDeployKeepsFieldsItDoesNotManage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Someone sets an annotation by hand; the next deploy must keep it.
	live, _ := w.run.Service(project, "us-central1", "mlflow")
	live.Annotations = map[string]string{"team-note": "keep me"}
	op, err := w.d.Services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: live})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Deploy(ctx, desiredFor(t, map[string]string{"INPUT_MEMORY": "4Gi"}, testImage), time.Minute); err != nil {
		t.Fatal(err)
	}
	live, _ = w.run.Service(project, "us-central1", "mlflow")
	if live.Annotations["team-note"] != "keep me" || live.Template.Containers[0].Resources.Limits["memory"] != "4Gi" {
		t.Errorf("live after update: annotations %v, limits %v", live.Annotations, live.Template.Containers[0].Resources.Limits)
	}
}

func TestDeployFailedRevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var fail bool
	w := newWorld(t, gcptest.WithRuntime(gcptest.RuntimeFunc(func(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (string, error) {
		if fail {
			return "", gcptest.ContainerFailedToStart(8080)
		}
		return "", nil
	})))
	good, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	fail = true
	_, err = w.d.Deploy(ctx, desiredFor(t, nil, strings.Replace(testImage, "0001", "0003", 1)), time.Minute)
	var re *RevisionError
	if !errors.As(err, &re) {
		t.Fatalf("a failed revision gave %v, want a *RevisionError", err)
	}
	if !strings.Contains(err.Error(), "failed to start and listen on the port") ||
		!strings.Contains(err.Error(), "https://console.cloud.google.com/run/detail/us-central1/mlflow/logs?project="+project) ||
		re.Revision == good.Revision {
		t.Errorf("error does not give Cloud Run's reason, the new revision and the logs link: %v", err)
	}
	// The previous revision still serves.
	live, _ := w.run.Service(project, "us-central1", "mlflow")
	if !strings.HasSuffix(live.LatestReadyRevision, good.Revision) {
		t.Errorf("latest ready = %s, want the earlier %s", live.LatestReadyRevision, good.Revision)
	}
}

// TestDeployRetriesAFailedRevision checks that re-running a deploy whose revision failed, with nothing
// changed in the spec (the fix was outside it: a permission, the database), rolls a new revision.
func TestDeployRetriesAFailedRevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fail := true
	w := newWorld(t, gcptest.WithRuntime(gcptest.RuntimeFunc(func(context.Context, *runpb.Service, *runpb.Revision) (string, error) {
		if fail {
			return "", gcptest.ContainerFailedToStart(8080)
		}
		return "", nil
	})))
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err == nil {
		t.Fatal("the first deploy should fail")
	}
	fail = false
	res, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatalf("a re-run after the cause was fixed still fails: %v", err)
	}
	if !res.Updated || len(w.run.Revisions(project, "us-central1", "mlflow")) != 2 {
		t.Errorf("the re-run did not roll a new revision: %+v", res)
	}
	// Now it serves, so the next run writes nothing.
	writes := w.run.Writes()
	if res, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil || res.Updated || w.run.Writes() != writes {
		t.Errorf("a run after a successful retry wrote: %+v, %v", res, err)
	}
}

func TestDeployWaitTimeout(t *testing.T) {
	t.Parallel()
	w := newWorld(t, gcptest.WithOperationDelay(time.Hour))
	_, err := w.d.Deploy(context.Background(), desiredFor(t, nil, testImage), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "wait_timeout") {
		t.Errorf("want a wait_timeout error, got %v", err)
	}
}

func TestInvokers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	name := Name(project, "us-central1", "mlflow")
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
		t.Fatal(err)
	}
	writes := w.run.Writes()
	for i, step := range []struct {
		public, wrote bool
	}{{true, true}, {true, false}, {false, true}, {false, false}} {
		wrote, err := w.d.Invokers(ctx, name, step.public)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != step.wrote {
			t.Errorf("step %d (public=%v): wrote=%v, want %v", i, step.public, wrote, step.wrote)
		}
		policy, _ := w.run.Policy(project, "us-central1", "mlflow")
		public := false
		for _, b := range policy.GetBindings() {
			for _, m := range b.Members {
				public = public || (b.Role == "roles/run.invoker" && m == "allUsers")
			}
		}
		if public != step.public {
			t.Errorf("step %d: policy public=%v, want %v: %v", i, public, step.public, policy)
		}
	}
	if got := w.run.Writes() - writes; got != 2 {
		t.Errorf("IAM steps made %d writes, want 2", got)
	}
}

func TestInvokersRefusedByOrgPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, gcptest.WithDomainRestrictedSharing())
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err := w.d.Invokers(ctx, Name(project, "us-central1", "mlflow"), true)
	if err == nil || !strings.Contains(err.Error(), "allowedPolicyMemberDomains") || !strings.Contains(err.Error(), "allow_unauthenticated: false") {
		t.Errorf("want the org policy explained, got %v", err)
	}
}

func TestDeployUnknownProject(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	d := desiredFor(t, map[string]string{"INPUT_PROJECT_ID": "not-my-project"}, testImage)
	_, err := w.d.Deploy(context.Background(), d, time.Minute)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "service mlflow") || w.run.Writes() != 0 {
		t.Errorf("want an error naming the service and no write, got %v", err)
	}
}
