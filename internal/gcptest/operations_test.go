package gcptest

import (
	"cmp"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRunOperationFinishesLater checks that an operation stays not done for as many polls, or as long on
// the stand-in's clock, as configured, and is done on the poll after that.
func TestRunOperationFinishesLater(t *testing.T) {
	t.Parallel()
	clock, defaultClock := newFakeClock(), newFakeClock()
	tests := []struct {
		name    string
		opts    []Option
		polls   int           // GetOperation calls that see it not done
		advance time.Duration // how far the clock moves before the final poll
		clock   *fakeClock    // the clock to move, if not the shared one
	}{
		{name: "after three polls", opts: []Option{WithOperationPolls(3), WithOperationDelay(0)}, polls: 2},
		{name: "after a delay", opts: []Option{WithOperationPolls(1), WithOperationDelay(300 * time.Millisecond), withClock(clock)}, polls: 5, advance: 300 * time.Millisecond},
		// By default, as a Cloud Run rollout: never on the first polls, nor before two seconds.
		{name: "by default, not before two seconds", opts: []Option{withClock(defaultClock)}, polls: 5, advance: 2 * time.Second, clock: defaultClock},
		{name: "instant", opts: []Option{WithInstantOperations()}, polls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, c, _ := runClients(t, tt.opts...)
			ctx := waitCtx(t)
			op, err := c.CreateService(ctx, &runpb.CreateServiceRequest{Parent: testParent, ServiceId: "mlflow", Service: mlflowService("img")})
			if err != nil {
				t.Fatal(err)
			}
			// The operation can finish only once its revision has started, which happens in the background.
			waitFor(t, "the revision to start", func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				return r.ops[0].runtimeDone
			})
			poll := func() *longrunningpb.Operation {
				got, err := c.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: op.Name()})
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			for i := range tt.polls {
				if poll().Done {
					t.Fatalf("poll %d: done, want not done yet", i+1)
				}
			}
			cmp.Or(tt.clock, clock).advance(tt.advance)
			if got := poll(); !got.Done || got.GetResponse() == nil {
				t.Fatalf("final poll: %v; want done with a response", got)
			}
			svc, err := c.CreateServiceOperation(op.Name()).Wait(ctx)
			if err != nil || svc.LatestReadyRevision == "" {
				t.Errorf("Wait after done = %v, %v", svc, err)
			}
		})
	}
}

func TestRunUnknownOperation(t *testing.T) {
	t.Parallel()
	_, c, _ := runClients(t)
	_, err := c.GetOperation(waitCtx(t), &longrunningpb.GetOperationRequest{Name: testParent + "/operations/none"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetOperation(unknown) = %v, want NotFound", err)
	}
}
