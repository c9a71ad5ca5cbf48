package action

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

// TestRunConcurrentDeploys runs two deploys of one service at once, at two commits, as two workflow runs
// do: each ends, successfully or with a clear conflict error, and the service ends on the image of one
// that succeeded. Run it with -count to see it hold across interleavings.
func TestRunConcurrentDeploys(t *testing.T) {
	t.Parallel()
	c := newCloud(t, gcptest.WithOperationDelay(300*time.Millisecond), gcptest.WithOperationPolls(2))
	if _, err := c.action(context.Background()); err != nil { // the service exists, at sha1
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	type result struct {
		out *Outputs
		err error
		log string
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i, sha := range []string{sha2, "3333333333333333333333333333333333333333"} {
		env := maps.Clone(c.env)
		env["GITHUB_SHA"] = sha
		env["GITHUB_OUTPUT"], env["GITHUB_STEP_SUMMARY"] = t.TempDir()+"/output", t.TempDir()+"/summary"
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var log bytes.Buffer
			o, err := Run(ctx, func(k string) string { return env[k] }, &log)
			results[i] = result{o, err, log.String()}
		}()
	}
	wg.Wait()

	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	final := svc.Template.Containers[0].Image
	var images []string
	for i, r := range results {
		switch {
		case r.err == nil:
			images = append(images, r.out.Image)
			for _, rev := range c.run.Revisions(project, "us-central1", "mlflow") {
				if strings.HasSuffix(rev.Name, "/"+r.out.Revision) && rev.Containers[0].Image != r.out.Image {
					t.Errorf("deploy %d reports revision %s, which runs %s, not its image %s", i, r.out.Revision, rev.Containers[0].Image, r.out.Image)
				}
			}
		case strings.Contains(r.err.Error(), "changed by someone else") && strings.Contains(r.err.Error(), "run the deploy again"),
			errors.As(r.err, new(*SupersededError)):
			t.Logf("deploy %d lost the race: %v", i, r.err)
		default:
			t.Errorf("deploy %d failed without saying it lost a race: %v\n%s", i, r.err, r.log)
		}
	}
	if len(images) == 0 {
		t.Fatalf("neither deploy succeeded:\n%s\n%s", results[0].log, results[1].log)
	}
	if final != images[0] && (len(images) < 2 || final != images[1]) {
		t.Errorf("the service runs %s, which no successful deploy pushed (%v)", final, images)
	}
	if !strings.HasSuffix(svc.LatestReadyRevision, svc.LatestCreatedRevision[strings.LastIndex(svc.LatestCreatedRevision, "/")+1:]) {
		t.Errorf("the service's latest revision %s is not its ready one %s", svc.LatestCreatedRevision, svc.LatestReadyRevision)
	}
}

// TestRunConflictRereads changes the service between the action's read and its write, as another
// writer would: Cloud Run refuses the stale etag, and the action reads the service again and applies
// its change to what it read, so the other writer's label survives.
func TestRunConflictRereads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t, gcptest.WithInstantOperations())
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	other := otherWriter(t, c)
	var once sync.Once
	log := &hookLog{hook: func(line string) {
		if strings.HasPrefix(line, "updating service mlflow") {
			once.Do(func() { other("team", "data-platform") })
		}
	}}
	c.env["GITHUB_SHA"] = sha2
	o, err := Run(ctx, func(k string) string { return c.env[k] }, log)
	if err != nil {
		t.Fatalf("deploy with a concurrent write: %v\n%s", err, log)
	}
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	if svc.Labels["team"] != "data-platform" || svc.Labels["commit-sha"] != sha2 || svc.Template.Containers[0].Image != o.Image {
		t.Errorf("after the conflict: labels %v, image %s, want the other writer's label and commit %s on %s",
			svc.Labels, svc.Template.Containers[0].Image, sha2, o.Image)
	}
	if got := c.run.CallCounts()["UpdateService"]; got < 3 { // the other writer's, the refused one, the retry
		t.Errorf("%d UpdateService calls, want the refused one and its retry besides the other writer's", got)
	}
	if !strings.Contains(log.String(), "reading it again") {
		t.Errorf("the log does not say the service was read again:\n%s", log)
	}
}

// TestRunConflictGivesUp makes every write of the action lose the race: it stops after a bounded number
// of attempts, saying what happened and what to do.
func TestRunConflictGivesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t, gcptest.WithInstantOperations())
	if _, err := c.action(ctx); err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	other := otherWriter(t, c)
	n := 0
	log := &hookLog{hook: func(line string) {
		if strings.HasPrefix(line, "updating service mlflow") {
			n++
			other("writer", strings.Repeat("x", n))
		}
	}}
	c.env["GITHUB_SHA"] = sha2
	_, err := Run(ctx, func(k string) string { return c.env[k] }, log)
	if err == nil || !strings.Contains(err.Error(), "changed by someone else") || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("want a conflict error that gives up, got %v\n%s", err, log)
	}
	svc, _ := c.run.Service(project, "us-central1", "mlflow")
	if svc.Labels["commit-sha"] != sha1 || svc.Labels["writer"] != strings.Repeat("x", n) || n > 5 {
		t.Errorf("after giving up (%d attempts): labels %v, want the other writer's last label and commit %s", n, svc.Labels, sha1)
	}
}

// otherWriter returns a function that sets a label on the service through the API, as another tool
// (or a person in the console) would.
func otherWriter(t *testing.T, c *cloud) func(key, value string) {
	t.Helper()
	ts, err := c.tokens.TokenSource(context.Background(), project, "someone@"+project+".iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := gcp.ClientOptions(c.run.Addr(), ts)
	if err != nil {
		t.Fatal(err)
	}
	services, err := run.NewServicesClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { services.Close() })
	return func(key, value string) {
		ctx := context.Background()
		name := cloudrun.Name(project, "us-central1", "mlflow")
		svc, err := services.GetService(ctx, &runpb.GetServiceRequest{Name: name})
		if err != nil {
			t.Errorf("the other writer's read: %v", err)
			return
		}
		svc.Labels[key] = value
		op, err := services.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: svc})
		if err == nil {
			_, err = op.Wait(ctx)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the other writer's update: %v", err)
		}
	}
}

// hookLog is the action's log; hook sees each write as it happens, before the action goes on.
type hookLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	hook func(string)
}

func (h *hookLog) Write(p []byte) (int, error) {
	h.hook(string(p))
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.Write(p)
}

func (h *hookLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}
