package action

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
)

// The package's tests retry quickly: 5 tries, 5 to 40 ms apart. Set before any client is built.
func init() {
	gcp.Retry = gcp.Policy{Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond, Multiplier: 2, Attempts: gcp.Retry.Attempts}
}

// A fault is a failure injected into one call of a deploy: inject makes its next n calls fail, failed
// says how many did.
type faultCase struct {
	name   string
	create bool // the call is made by the first deploy (the service is created); else by an update
	inject func(c *cloud, n int)
	failed func(c *cloud) int
	calls  int          // distinct calls the deploy makes (one per secret for GetSecretVersion); 0 is 1
	setup  func(*cloud) // before the deploys, if set
}

func (fc faultCase) distinct() int { return max(fc.calls, 1) }

// viaProject makes the runtime account's access to one secret come from a project-level grant, so that
// the deploy reads the project's IAM policy.
func viaProject(fc faultCase) faultCase {
	fc.setup = func(c *cloud) {
		c.secrets.AddSecret(project, "mlflow_pass2", []byte("s3cret-Pa55"))
		c.projects.GrantProjectRole(project, runtimeMember, accessor)
		c.env["INPUT_PASSWORD_SECRET"] = "mlflow_pass2"
	}
	return fc
}

func grpcFault(name string, create bool, standIn func(*cloud) *gcptest.Run, method string, code codes.Code) faultCase {
	return faultCase{name: name, create: create,
		inject: func(c *cloud, n int) { standIn(c).Fail(method, code, n) },
		failed: func(c *cloud) int { return standIn(c).Failed(method) }}
}

// secretFault fails calls about the four secrets of newCloud, each looked up once.
func secretFault(name, method string, code codes.Code) faultCase {
	return faultCase{name: name, create: true, calls: 4,
		inject: func(c *cloud, n int) { c.secrets.Fail(method, code, n) },
		failed: func(c *cloud) int { return c.secrets.Failed(method) }}
}

type httpStandIn interface {
	FailHTTP(method, pathPart string, status, n int)
	DropHTTP(method, pathPart string, n int)
	FailedHTTP(method, pathPart string) int
}

func httpFault(name string, standIn func(*cloud) httpStandIn, method, pathPart string, status int) faultCase {
	return faultCase{name: name, create: true,
		inject: func(c *cloud, n int) {
			if status == 0 {
				standIn(c).DropHTTP(method, pathPart, n)
				return
			}
			standIn(c).FailHTTP(method, pathPart, status, n)
		},
		failed: func(c *cloud) int { return standIn(c).FailedHTTP(method, pathPart) }}
}

var (
	runOf      = func(c *cloud) *gcptest.Run { return c.run }
	tokensOf   = func(c *cloud) httpStandIn { return c.tokens }
	projectsOf = func(c *cloud) httpStandIn { return c.projects }
	registryOf = func(c *cloud) httpStandIn { return c.registry }
)

// deployWith deploys as fc needs: a new service, or (after a first, clean deploy) an update of a service
// that also carries an allUsers binding to remove, so that UpdateService and SetIamPolicy are called.
// Faults go in just before the deploy they concern.
func deployWith(t *testing.T, c *cloud, fc faultCase, n int) error {
	t.Helper()
	ctx := context.Background()
	if fc.setup != nil {
		fc.setup(c)
	}
	if !fc.create {
		if _, err := c.action(ctx); err != nil {
			t.Fatalf("first deploy, without faults: %v\n%s", err, c.out)
		}
		c.run.SetPolicy(project, "us-central1", "mlflow", &iampb.Policy{Bindings: []*iampb.Binding{
			{Role: "roles/run.invoker", Members: []string{"allUsers"}}}})
		c.env["GITHUB_SHA"] = sha2
	}
	fc.inject(c, n)
	_, err := c.action(ctx)
	return err
}

// TestRunSurvivesTransientFaults injects one to three UNAVAILABLE (or 503, or a dropped connection) into
// each call of a deploy in turn: each is retried and the deploy succeeds.
func TestRunSurvivesTransientFaults(t *testing.T) {
	t.Parallel()
	cases := []faultCase{
		httpFault("token endpoint 503", tokensOf, http.MethodPost, "/token", http.StatusServiceUnavailable),
		httpFault("token endpoint 429", tokensOf, http.MethodPost, "/token", http.StatusTooManyRequests),
		secretFault("GetSecretVersion", "GetSecretVersion", codes.Unavailable),
		secretFault("secret GetIamPolicy", "GetIamPolicy", codes.Unavailable),
		secretFault("GetSecretVersion exhausted", "GetSecretVersion", codes.ResourceExhausted),
		secretFault("secret GetIamPolicy deadline", "GetIamPolicy", codes.DeadlineExceeded),
		viaProject(httpFault("project getIamPolicy 503", projectsOf, http.MethodPost, ":getIamPolicy", http.StatusServiceUnavailable)),
		httpFault("registry ping 503", registryOf, http.MethodGet, "/v2/", http.StatusServiceUnavailable),
		httpFault("registry token 502", registryOf, "", "/v2/token", http.StatusBadGateway),
		httpFault("blob HEAD 503", registryOf, http.MethodHead, "/blobs/", http.StatusServiceUnavailable),
		httpFault("upload POST 503", registryOf, http.MethodPost, "/blobs/uploads/", http.StatusServiceUnavailable),
		httpFault("upload PATCH 500", registryOf, http.MethodPatch, "/blobs/uploads/", http.StatusInternalServerError),
		httpFault("upload PATCH dropped mid-body", registryOf, http.MethodPatch, "/blobs/uploads/", 0),
		httpFault("upload PUT 503", registryOf, http.MethodPut, "/blobs/uploads/", http.StatusServiceUnavailable),
		httpFault("manifest PUT 429", registryOf, http.MethodPut, "/manifests/", http.StatusTooManyRequests),
		grpcFault("GetService", true, runOf, "GetService", codes.Unavailable),
		grpcFault("GetService deadline", true, runOf, "GetService", codes.DeadlineExceeded),
		grpcFault("CreateService", true, runOf, "CreateService", codes.Unavailable),
		grpcFault("GetOperation", true, runOf, "GetOperation", codes.Unavailable),
		grpcFault("run GetIamPolicy", true, runOf, "GetIamPolicy", codes.Unavailable),
		grpcFault("UpdateService", false, runOf, "UpdateService", codes.Unavailable),
		grpcFault("UpdateService exhausted", false, runOf, "UpdateService", codes.ResourceExhausted),
		grpcFault("SetIamPolicy", false, runOf, "SetIamPolicy", codes.Unavailable),
		grpcFault("GetOperation of update", false, runOf, "GetOperation", codes.Unavailable),
		// A write's DEADLINE_EXCEEDED is not retried blindly: the service is read, and the write made again
		// only when it was not done (cloudrun's TestDeployWriteAnswerLost has the case where it was).
		grpcFault("UpdateService deadline", false, runOf, "UpdateService", codes.DeadlineExceeded),
	}
	for i, fc := range cases {
		n := 1 + i%3
		t.Run(fmt.Sprintf("%s x%d", fc.name, n), func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, gcptest.WithInstantOperations())
			if err := deployWith(t, c, fc, n); err != nil {
				t.Fatalf("deploy with %d faults: %v\n%s", n, err, c.out)
			}
			if got := fc.failed(c); got != n {
				t.Errorf("%d of %d faults were hit: the call was not made as often as the test thinks", got, n)
			}
			if _, ok := c.run.Service(project, "us-central1", "mlflow"); !ok {
				t.Error("no service after the deploy")
			}
		})
	}
}

// TestRunGivesUpOnPermanentFaults: a call that keeps failing fails the deploy after a few tries, soon,
// with an error that names the call.
func TestRunGivesUpOnPermanentFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fc   faultCase
		want string // in the error
	}{
		{grpcFault("GetService", true, runOf, "GetService", codes.Unavailable), "GetService failed 5 times"},
		{grpcFault("UpdateService", false, runOf, "UpdateService", codes.Unavailable), "UpdateService failed 5 times"},
		{secretFault("GetSecretVersion", "GetSecretVersion", codes.Unavailable), "GetSecretVersion failed 5 times"},
		{httpFault("manifest PUT", registryOf, http.MethodPut, "/manifests/", http.StatusServiceUnavailable), "/manifests/"},
		{httpFault("token endpoint", tokensOf, http.MethodPost, "/token", http.StatusServiceUnavailable), "access token"},
	} {
		t.Run(tc.fc.name, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, gcptest.WithInstantOperations())
			start := time.Now()
			err := deployWith(t, c, tc.fc, 100)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("the deploy succeeded through 100 faults:\n%s", c.out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			// gcp.Retry.Attempts tries; go-containerregistry may redo a whole upload, whose requests are
			// retried in turn, so allow some more, but far fewer than the faults.
			lo, hi := gcp.Retry.Attempts, 3*gcp.Retry.Attempts*tc.fc.distinct()
			if got := tc.fc.failed(c); got < lo || got > hi {
				t.Errorf("the call was tried %d times, want %d to %d", got, lo, hi)
			}
			// A guard against a retry loop that does not end, not a measure of speed: the tries are
			// counted below, and a loaded machine under the race detector is slow.
			if took > 3*time.Minute {
				t.Errorf("giving up took %s", took)
			}
		})
	}
}

// TestRunDoesNotRetryRefusals: an answer that asking again cannot change is not asked again.
func TestRunDoesNotRetryRefusals(t *testing.T) {
	t.Parallel()
	for _, fc := range []faultCase{
		grpcFault("GetService PERMISSION_DENIED", true, runOf, "GetService", codes.PermissionDenied),
		grpcFault("UpdateService INVALID_ARGUMENT", false, runOf, "UpdateService", codes.InvalidArgument),
		secretFault("GetSecretVersion PERMISSION_DENIED", "GetSecretVersion", codes.PermissionDenied),
		httpFault("manifest PUT 403", registryOf, http.MethodPut, "/manifests/", http.StatusForbidden),
		httpFault("token endpoint 401", tokensOf, http.MethodPost, "/token", http.StatusUnauthorized),
		viaProject(httpFault("project getIamPolicy 404", projectsOf, http.MethodPost, ":getIamPolicy", http.StatusNotFound)),
	} {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, gcptest.WithInstantOperations())
			// Twice as many faults as calls: a client that asked again would hit more of them.
			err := deployWith(t, c, fc, 2*fc.distinct())
			if err == nil {
				t.Errorf("the deploy succeeded through %d refusals:\n%s", 2*fc.distinct(), c.out)
			}
			if got := fc.failed(c); got != fc.distinct() {
				t.Errorf("the refused call was made %d times, want %d (deploy error: %v)", got, fc.distinct(), err)
			}
		})
	}
}
