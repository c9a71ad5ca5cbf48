package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

const project = gcptest.DefaultProjectID

// world is a Run stand-in and a Deployer that reaches it with real credentials.
type world struct {
	tokens *gcptest.TokenServer
	run    *gcptest.Run
	d      *Deployer
	log    *strings.Builder
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
	w := &world{tokens: tokens, run: r, log: &strings.Builder{}}
	// Polls far apart only slow tests whose operations take several polls; those about timing set their own.
	w.d = &Deployer{Services: services, Revisions: revisions, PollInterval: 10 * time.Millisecond, Logf: func(f string, a ...any) {
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
		t.Errorf("%d revisions, want 2 with the latest %s", len(revs), res.Revision)
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
	res, err = w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatalf("a run after a successful retry failed: %v", err)
	}
	if res.Updated || w.run.Writes() != writes {
		t.Errorf("a run after a successful retry wrote: changes %v, writes %d, want none", res.Changes, w.run.Writes()-writes)
	}
}

// TestDeployRetriesAFailedRevisionWhileAnOlderServes: good deploy, then a deploy whose revision fails
// (the older revision keeps serving), then the cause is fixed outside the spec (a permission, a database)
// and the job re-run: the re-run rolls a new revision of the same spec, which serves.
func TestDeployRetriesAFailedRevisionWhileAnOlderServes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newImage := strings.Replace(testImage, "0001", "0004", 1)
	var mu sync.Mutex
	fail := false
	w := newWorld(t, gcptest.WithRuntime(gcptest.RuntimeFunc(func(context.Context, *runpb.Service, *runpb.Revision) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return "", gcptest.ContainerFailedToStart(8080)
		}
		return "", nil
	})))
	good, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, newImage), time.Minute); err == nil {
		t.Fatal("a deploy whose revision fails reported success")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	res, err := w.d.Deploy(ctx, desiredFor(t, nil, newImage), time.Minute)
	if err != nil {
		t.Fatalf("a re-run after the cause was fixed still fails: %v", err)
	}
	if !res.Updated || res.Revision == good.Revision || len(w.run.Revisions(project, "us-central1", "mlflow")) != 3 {
		t.Errorf("the re-run did not roll a new revision: %+v", res)
	}
	svc, _ := w.run.Service(project, "us-central1", "mlflow")
	if !strings.HasSuffix(svc.GetLatestReadyRevision(), res.Revision) || svc.GetTemplate().GetContainers()[0].GetImage() != newImage {
		t.Errorf("serving %s with %s, want the re-run's revision %s with %s", svc.GetLatestReadyRevision(),
			svc.GetTemplate().GetContainers()[0].GetImage(), res.Revision, newImage)
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

// TestDeployRerunAfterFailedDeployDoesNotReportTheOldRevision checks the sequence good deploy, failed
// deploy, re-run: the failed revision's spec is what was asked for, but the old revision still serves,
// so the re-run must not report success (here the new image still fails, so it must fail again).
func TestDeployRerunAfterFailedDeployDoesNotReportTheOldRevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	badImage := strings.Replace(testImage, "0001", "0003", 1)
	w := newWorld(t, gcptest.WithRuntime(gcptest.RuntimeFunc(func(_ context.Context, _ *runpb.Service, rev *runpb.Revision) (string, error) {
		if rev.GetContainers()[0].GetImage() == badImage {
			return "", gcptest.ContainerFailedToStart(8080)
		}
		return "", nil
	})))
	good, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, badImage), time.Minute); err == nil {
		t.Fatal("a deploy whose revision fails reported success")
	}
	res, err := w.d.Deploy(ctx, desiredFor(t, nil, badImage), time.Minute)
	var re *RevisionError
	if !errors.As(err, &re) {
		served := ""
		if res != nil {
			served = res.Revision
		}
		t.Fatalf("the re-run reported revision %q, error %v; want a *RevisionError, since the image it asks for cannot serve (the old revision %s still does)",
			served, err, good.Revision)
	}
	if re.Revision == good.Revision {
		t.Errorf("the error names the old revision %s, not the failed one", re.Revision)
	}
}

// TestDeployRetriesWriteConflicts makes another writer change the service (which changes its etag) just
// before each of the first n updates the deployer sends, so that Cloud Run refuses them with ABORTED. The
// deploy reads the service again after each conflict, up to three attempts in all.
func TestDeployRetriesWriteConflicts(t *testing.T) {
	t.Parallel()
	const attempts = 3
	for _, n := range []int{1, 2, attempts} {
		t.Run(fmt.Sprintf("%d conflicts", n), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			w := newWorld(t)
			if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
				t.Fatal(err)
			}
			var updates, conflicts int
			other := func() error { // the other writer, on a connection of its own
				conflicts++
				live, err := w.d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: Name(project, "us-central1", "mlflow")})
				if err != nil {
					return err
				}
				live.Labels[fmt.Sprintf("other-writer-%d", conflicts)] = "was-here"
				op, err := w.d.Services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: live})
				if err == nil {
					_, err = op.Wait(ctx)
				}
				return err
			}
			d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				if method == "/google.cloud.run.v2.Services/UpdateService" {
					updates++
					if conflicts < n {
						if err := other(); err != nil {
							return fmt.Errorf("the other writer failed: %w", err)
						}
					}
				}
				return invoker(ctx, method, req, reply, cc, opts...)
			})

			newImage := strings.Replace(testImage, "0001", "0002", 1)
			_, err := d.Deploy(ctx, desiredFor(t, nil, newImage), time.Minute)
			live, _ := w.run.Service(project, "us-central1", "mlflow")
			if n >= attempts {
				if err == nil || !strings.Contains(err.Error(), "service mlflow was changed by someone else") || !strings.Contains(err.Error(), "after 3 attempts") ||
					status.Code(errors.Unwrap(err)) != codes.Aborted {
					t.Errorf("after %d conflicts: want an error saying someone else changed service mlflow and the deploy gave up after 3 attempts, got %v", n, err)
				}
				if updates != attempts {
					t.Errorf("sent %d updates, want %d (one per attempt)", updates, attempts)
				}
				if live.Template.Containers[0].Image == newImage {
					t.Error("the failed deploy changed the image")
				}
				return
			}
			if err != nil {
				t.Fatalf("after %d conflicts the deploy failed: %v", n, err)
			}
			if updates != n+1 {
				t.Errorf("sent %d updates, want %d", updates, n+1)
			}
			// The deploy re-read the service each time: nothing the other writer set was lost.
			for i := 1; i <= n; i++ {
				if k := fmt.Sprintf("other-writer-%d", i); live.Labels[k] != "was-here" {
					t.Errorf("the other writer's label %s was overwritten: labels %v", k, live.Labels)
				}
			}
			if live.Template.Containers[0].Image != newImage {
				t.Errorf("live image = %s, want %s", live.Template.Containers[0].Image, newImage)
			}
		})
	}
}

// deployerWith is a Deployer for w's Cloud Run whose calls pass through intercept.
func (w *world) deployerWith(t *testing.T, intercept grpc.UnaryClientInterceptor) *Deployer {
	t.Helper()
	ts, err := w.tokens.TokenSource(context.Background(), project, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(w.run.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer{ts}), grpc.WithUnaryInterceptor(intercept))
	if err != nil {
		t.Fatal(err)
	}
	services, err := run.NewServicesClient(context.Background(), option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	revisions, err := run.NewRevisionsClient(context.Background(), option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { services.Close(); revisions.Close(); conn.Close() })
	return &Deployer{Services: services, Revisions: revisions}
}

// bearer sends an access token over the plaintext loopback connection.
type bearer struct{ ts oauth2.TokenSource }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := b.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// TestDeployWriteAnswerLost: a create or update whose answer is lost (DEADLINE_EXCEEDED) may or may not
// have been done. The deploy reads the service and goes on from what it finds: it waits for the rollout its
// write started, or writes again; never a second revision for one spec.
func TestDeployWriteAnswerLost(t *testing.T) {
	t.Parallel()
	newImage := strings.Replace(testImage, "0001", "0005", 1)
	for _, tc := range []struct {
		name   string
		update bool // else the service is created
		done   bool // Cloud Run did the write before the answer was lost
	}{
		{"create done", false, true},
		{"create not done", false, false},
		{"update done", true, true},
		{"update not done", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			w := newWorld(t)
			image, method, revs := testImage, "CreateService", 1
			if tc.update {
				if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
					t.Fatal(err)
				}
				image, method, revs = newImage, "UpdateService", 2
			}
			if tc.done {
				w.run.FailAfter(method, codes.DeadlineExceeded, 1)
			} else {
				w.run.Fail(method, codes.DeadlineExceeded, 1)
			}
			res, err := w.d.Deploy(ctx, desiredFor(t, nil, image), time.Minute)
			if err != nil {
				t.Fatalf("deploy after a lost answer: %v\n%s", err, w.log)
			}
			if w.run.Failed(method) != 1 {
				t.Fatalf("%d %s calls failed, want 1", w.run.Failed(method), method)
			}
			if got := len(w.run.Revisions(project, "us-central1", "mlflow")); got != revs {
				t.Errorf("%d revisions, want %d\n%s", got, revs, w.log)
			}
			if !res.Updated || res.Created == tc.update || len(res.Changes) == 0 {
				t.Errorf("result %+v does not say the service was written", res)
			}
			svc, _ := w.run.Service(project, "us-central1", "mlflow")
			if svc.GetTemplate().GetContainers()[0].GetImage() != image || !strings.HasSuffix(svc.GetLatestReadyRevision(), res.Revision) {
				t.Errorf("serving %s with %s, want %s with %s", svc.GetLatestReadyRevision(), svc.GetTemplate().GetContainers()[0].GetImage(), res.Revision, image)
			}
			if !strings.Contains(w.log.String(), "reading the service to see whether Cloud Run did it") {
				t.Errorf("the log does not say the service is read again:\n%s", w.log)
			}
		})
	}
	t.Run("lost every time", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		w.run.Fail("CreateService", codes.DeadlineExceeded, maxConflicts)
		_, err := w.d.Deploy(context.Background(), desiredFor(t, nil, testImage), time.Minute)
		if err == nil || !strings.Contains(err.Error(), "run the deploy again") || w.run.Failed("CreateService") != maxConflicts {
			t.Errorf("got %v after %d lost creates, want an error saying to run the deploy again after %d", err, w.run.Failed("CreateService"), maxConflicts)
		}
	})
}

// TestDeployWaitsForARolloutInProgress: a run that stopped waiting (wait_timeout, or the job cancelled)
// leaves Cloud Run rolling out its spec; a re-run of the same spec waits for that rollout instead of
// starting another revision behind it.
func TestDeployWaitsForARolloutInProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newImage := strings.Replace(testImage, "0001", "0006", 1)
	w := newWorld(t, gcptest.WithOperationDelay(3*time.Second))
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := w.d.Deploy(ctx, desiredFor(t, nil, newImage), 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready within wait_timeout") {
		t.Fatalf("a deploy given 100 ms for a 3 s rollout: %v", err)
	}
	writes := w.run.Writes()
	res, err := w.d.Deploy(ctx, desiredFor(t, nil, newImage), time.Minute)
	if err != nil {
		t.Fatalf("the re-run: %v\n%s", err, w.log)
	}
	if w.run.Writes() != writes || len(w.run.Revisions(project, "us-central1", "mlflow")) != 2 {
		t.Errorf("the re-run wrote %d times and left %d revisions, want no write and 2\n%s", w.run.Writes()-writes,
			len(w.run.Revisions(project, "us-central1", "mlflow")), w.log)
	}
	svc, _ := w.run.Service(project, "us-central1", "mlflow")
	if !strings.HasSuffix(svc.GetLatestReadyRevision(), res.Revision) || svc.GetTemplate().GetContainers()[0].GetImage() != newImage {
		t.Errorf("serving %s, want the rolled-out %s with %s", svc.GetLatestReadyRevision(), res.Revision, newImage)
	}
}
