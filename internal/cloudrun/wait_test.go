package cloudrun

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

const logsURL = "https://console.cloud.google.com/run/detail/us-central1/mlflow/logs?project=" + project

// TestDeployNoticesTheEndOfARolloutPromptly makes Cloud Run take 20 s over a rollout, as real rollouts take
// tens of seconds, and checks that the deploy ends within 2 s of it: the client's op.Wait pauses up to 16 s,
// then 32 s, between polls by then.
func TestDeployNoticesTheEndOfARolloutPromptly(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 20 s of real time")
	}
	t.Parallel()
	const rollout, promptly = 20 * time.Second, 2 * time.Second
	w := newWorld(t, gcptest.WithOperationDelay(rollout))
	var mu sync.Mutex
	var sent, returned time.Time // of the CreateService call, which starts the rollout
	d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		if method == "/google.cloud.run.v2.Services/CreateService" {
			mu.Lock()
			sent, returned = start, time.Now()
			mu.Unlock()
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := d.Deploy(ctx, desiredFor(t, nil, testImage), 10*time.Minute)
	end := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if sent.IsZero() {
		t.Fatal("the deploy sent no CreateService")
	}
	if res.Revision == "" || res.Service.GetUri() == "" {
		t.Errorf("the deploy reported no revision or URL: %+v", res)
	}
	if end.Before(sent.Add(rollout)) {
		t.Errorf("the deploy returned %s after CreateService was sent, before the %s rollout could have finished", end.Sub(sent), rollout)
	}
	late := end.Sub(returned.Add(rollout))
	t.Logf("the deploy returned %s after the rollout finished (%d GetOperation calls)", late.Round(time.Millisecond), w.run.Calls("GetOperation"))
	if late > promptly {
		t.Errorf("the deploy returned %s after the rollout finished, want at most %s", late.Round(time.Millisecond), promptly)
	}
	// Prompt by polling often, not by chance (a rollout that ends just as a poll comes is noticed at once
	// however far apart polls are), and without hammering the API: one poll every second or two.
	n, least, most := w.run.Calls("GetOperation"), int(rollout/(2*time.Second)), int(rollout/time.Second)+3
	if n < least || n > most {
		t.Errorf("the deploy polled the operation %d times in %s, want between %d and %d (one poll every second or two)", n, rollout, least, most)
	}
}

// TestDeployWaitsUpToWaitTimeout checks both sides of wait_timeout: a rollout that ends a little before it
// succeeds, one that ends after it fails as soon as it has passed, saying the revision may still become
// ready and where its logs are.
func TestDeployWaitsUpToWaitTimeout(t *testing.T) {
	t.Parallel()
	const margin = 500 * time.Millisecond // for a busy machine
	for _, tc := range []struct {
		name          string
		rollout, wait time.Duration
		wantErr       bool
	}{
		{name: "rollout ends before wait_timeout", rollout: 2 * time.Second, wait: 4 * time.Second},
		{name: "rollout ends after wait_timeout", rollout: time.Hour, wait: 3 * time.Second, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, gcptest.WithOperationDelay(tc.rollout))
			w.d.PollInterval = DefaultPollInterval
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a wait that ignores wait_timeout fails here
			defer cancel()

			start := time.Now()
			res, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), tc.wait)
			took := time.Since(start)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("a rollout of %s with wait_timeout %s failed after %s: %v", tc.rollout, tc.wait, took, err)
				}
				if res.Revision == "" {
					t.Errorf("no revision reported: %+v", res)
				}
				if most := tc.rollout + w.d.PollInterval + margin; took > most {
					t.Errorf("a rollout of %s took %s to notice, want at most %s", tc.rollout, took, most)
				}
				return
			}
			if err == nil {
				t.Fatalf("a rollout of %s with wait_timeout %s succeeded", tc.rollout, tc.wait)
			}
			for _, want := range []string{"not ready within wait_timeout (3s)", "may still become ready", logsURL} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the timeout error does not say %q: %v", want, err)
				}
			}
			if took < tc.wait || took > tc.wait+margin {
				t.Errorf("the deploy gave up after %s, want between wait_timeout %s and %s", took, tc.wait, tc.wait+margin)
			}
		})
	}
}

// TestDeployStopsWaitingWhenCancelled cancels a deploy in the middle of a long rollout, between two polls
// far apart, and checks that it stops at once, saying it was cancelled and that the rollout goes on.
func TestDeployStopsWaitingWhenCancelled(t *testing.T) {
	t.Parallel()
	const promptly = 500 * time.Millisecond
	w := newWorld(t, gcptest.WithOperationDelay(time.Hour))
	w.d.PollInterval = time.Minute // so that only the cancellation can end the wait soon
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var cancelled time.Time
	time.AfterFunc(time.Second, func() {
		mu.Lock()
		cancelled = time.Now()
		mu.Unlock()
		cancel()
	})
	guard := time.AfterFunc(30*time.Second, func() { t.Error("the deploy was still waiting 29 s after it was cancelled") })
	defer guard.Stop()

	_, err := w.d.Deploy(ctx, desiredFor(t, nil, testImage), 10*time.Minute)
	end := time.Now()
	mu.Lock()
	defer mu.Unlock()
	if cancelled.IsZero() {
		t.Fatalf("the deploy returned before it was cancelled: %v", err)
	}
	if took := end.Sub(cancelled); took > promptly {
		t.Errorf("the deploy returned %s after it was cancelled, want at most %s", took, promptly)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the error does not wrap context.Canceled: %v", err)
	}
	for _, want := range []string{"cancelled", "mlflow", logsURL} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}

// TestDeployReportsTheServiceAsReadAfterTheRollout makes the operation's response differ from the service
// (a snapshot: Cloud Run documents the URL, traffic and latest revisions as transient until reconciliation
// is over) and checks that the deploy reports the service as read after the operation, on create and on
// update.
func TestDeployReportsTheServiceAsReadAfterTheRollout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, gcptest.WithOperationPolls(2))
	stale := func(op *longrunningpb.Operation) error {
		res, ok := op.GetResult().(*longrunningpb.Operation_Response)
		if !ok {
			return nil
		}
		svc := &runpb.Service{}
		if err := res.Response.UnmarshalTo(svc); err != nil {
			return err
		}
		svc.Uri, svc.TrafficStatuses, svc.LatestReadyRevision = "https://stale.invalid", nil, "stale"
		svc.TerminalCondition = &runpb.Condition{Type: "Ready", State: runpb.Condition_CONDITION_RECONCILING}
		a, err := anypb.New(svc)
		res.Response = a
		return err
	}
	d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		if op, ok := reply.(*longrunningpb.Operation); ok {
			return stale(op)
		}
		return nil
	})
	d.PollInterval = 10 * time.Millisecond

	for _, image := range []string{testImage, strings.Replace(testImage, "0001", "0002", 1)} {
		res, err := d.Deploy(ctx, desiredFor(t, nil, image), time.Minute)
		if err != nil {
			t.Fatalf("deploy of %s: %v", image, err)
		}
		live, _ := w.run.Service(project, "us-central1", "mlflow")
		if diff := cmp.Diff(live, res.Service, protocmp.Transform()); diff != "" {
			t.Errorf("deploy of %s reported a service other than the one read after the rollout (-read +reported):\n%s", image, diff)
		}
		if res.Revision != path.Base(live.LatestReadyRevision) {
			t.Errorf("deploy of %s reported revision %s, the service's latest ready is %s", image, res.Revision, live.LatestReadyRevision)
		}
	}
	if w.run.Calls("GetOperation") == 0 {
		t.Error("no operation was polled, so none was made stale: the test shows nothing")
	}
}

// TestDeployStopsWhenItCannotPoll refuses the deployer's GetOperation calls and checks that the deploy says
// so at once, naming the operation, instead of polling in vain until wait_timeout.
func TestDeployStopsWhenItCannotPoll(t *testing.T) {
	t.Parallel()
	w := newWorld(t, gcptest.WithOperationPolls(2))
	d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == "/google.longrunning.Operations/GetOperation" {
			return status.Error(codes.PermissionDenied, "Permission 'run.operations.get' denied")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.Deploy(ctx, desiredFor(t, nil, testImage), time.Minute)
	if status.Code(errors.Unwrap(errors.Unwrap(err))) != codes.PermissionDenied {
		t.Errorf("want the refusal, wrapped, got %v", err)
	}
	for _, want := range []string{"polling Cloud Run operation projects/" + project + "/locations/us-central1/operations/", "run.operations.get", "roles/run.admin"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}
