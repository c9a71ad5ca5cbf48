package gcptest

import (
	"context"
	"sync"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
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

// waitFor polls cond until it holds, failing the test if it does not within 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after 10s waiting for %s", what)
		}
	}
}

// fakeClock is a clock for the stand-ins' settings that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(c *fakeClock) Option { return func(s *settings) { s.now = c.now } }
