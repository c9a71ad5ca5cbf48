package cloudrun

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestWithoutPublicInvokers(t *testing.T) {
	t.Parallel()
	viewer := &iampb.Binding{Role: "roles/run.viewer", Members: []string{"user:a@example.com"}}
	invoker := func(members ...string) *iampb.Binding { return &iampb.Binding{Role: invokerRole, Members: members} }
	cases := []struct {
		name        string
		in          *iampb.Policy
		removed     []string
		wantInvoker []string
	}{
		{"empty", &iampb.Policy{Etag: []byte("e")}, nil, nil},
		{"private stays", &iampb.Policy{Bindings: []*iampb.Binding{viewer, invoker("user:b@example.com")}}, nil, []string{"user:b@example.com"}},
		{"legacy public binding", &iampb.Policy{Etag: []byte("e"), Bindings: []*iampb.Binding{invoker("allUsers")}}, []string{"allUsers"}, nil},
		{"public members among others", &iampb.Policy{Bindings: []*iampb.Binding{viewer, invoker("allUsers", "user:b@example.com", "allAuthenticatedUsers")}},
			[]string{"allUsers", "allAuthenticatedUsers"}, []string{"user:b@example.com"}},
		{"conditional binding too", &iampb.Policy{Version: 3, Bindings: []*iampb.Binding{
			{Role: invokerRole, Members: []string{"allAuthenticatedUsers"}, Condition: &expr.Expr{Expression: "request.time < timestamp('2030-01-01T00:00:00Z')"}}}},
			[]string{"allAuthenticatedUsers"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := proto.Clone(tc.in)
			out, removed := withoutPublicInvokers(tc.in)
			if diff := cmp.Diff(tc.removed, removed); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			var got []string
			for _, b := range out.Bindings {
				if b.Role == invokerRole {
					got = append(got, b.Members...)
				}
				if len(b.Members) == 0 {
					t.Errorf("empty binding left in policy: %v", b)
				}
				if b.Role == "roles/run.viewer" && !slices.Equal(b.Members, viewer.Members) {
					t.Errorf("another role's binding changed: %v", b)
				}
			}
			if diff := cmp.Diff(tc.wantInvoker, got); diff != "" {
				t.Errorf("invokers (-want +got):\n%s", diff)
			}
			if string(out.Etag) != string(tc.in.Etag) {
				t.Error("the etag must be kept so a concurrent change is refused")
			}
			if out.Version != 3 {
				t.Errorf("version = %d, want 3 so that conditional bindings are written back intact", out.Version)
			}
			if diff := cmp.Diff(before, tc.in, protocmp.Transform()); diff != "" {
				t.Errorf("the read policy was changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestDesiredPublicAccess checks that a public service is public through invoker_iam_disabled and a
// private one (auth: iam) has the invoker IAM check on.
func TestDesiredPublicAccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inputs map[string]string
		want   bool
	}{
		{"basic auth, public by default", nil, true},
		{"basic auth, allow_unauthenticated true", map[string]string{"INPUT_ALLOW_UNAUTHENTICATED": "true"}, true},
		{"iam auth", map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": ""}, false},
		{"mlflow auth, public by default", map[string]string{"INPUT_AUTH": "mlflow"}, true},
	} {
		c := testConfig(t, tc.inputs)
		if got := Desired(c, testImage).InvokerIamDisabled; got != tc.want || Public(c) != tc.want {
			t.Errorf("%s: invoker_iam_disabled = %v, Public = %v, want %v", tc.name, got, Public(c), tc.want)
		}
	}
}

// TestInvokersRemoveLegacyPublicBinding deploys a public service under the domain-restricted-sharing
// policy (the stand-in's default), where an allUsers binding cannot be written: the service is public
// through invoker_iam_disabled, and a binding that an earlier version granted (before the policy) goes.
func TestInvokersRemoveLegacyPublicBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, public := range []bool{true, false} {
		w := newWorld(t)
		inputs := map[string]string{}
		if !public {
			inputs = map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": ""}
		}
		desired := desiredFor(t, inputs, testImage)
		if wrote, err := w.d.Invokers(ctx, desired.Name, public); wrote || err != nil {
			t.Fatalf("public=%v: Invokers before the service exists = %v, %v; want nothing to do", public, wrote, err)
		}
		if _, err := w.d.Deploy(ctx, desired, time.Minute); err != nil {
			t.Fatal(err)
		}
		svc, _ := w.run.Service(project, "us-central1", "mlflow")
		if svc.InvokerIamDisabled != public {
			t.Errorf("public=%v: the service has invoker_iam_disabled = %v", public, svc.InvokerIamDisabled)
		}
		w.run.SetPolicy(project, "us-central1", "mlflow", &iampb.Policy{Version: 1, Bindings: []*iampb.Binding{
			{Role: invokerRole, Members: []string{"allUsers", "user:kept@example.com"}},
			{Role: invokerRole, Members: []string{"allAuthenticatedUsers"}},
		}})
		read, _ := w.run.Policy(project, "us-central1", "mlflow")
		var sent *iampb.SetIamPolicyRequest
		d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if r, ok := req.(*iampb.SetIamPolicyRequest); ok {
				sent = r
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		})
		d.Logf = w.d.Logf
		writes := w.run.Writes()
		wrote, err := d.Invokers(ctx, desired.Name, public)
		if err != nil || !wrote {
			t.Fatalf("public=%v: Invokers = %v, %v; want the legacy binding removed", public, wrote, err)
		}
		policy, _ := w.run.Policy(project, "us-central1", "mlflow")
		want := []*iampb.Binding{{Role: invokerRole, Members: []string{"user:kept@example.com"}}}
		if diff := cmp.Diff(want, policy.Bindings, protocmp.Transform()); diff != "" {
			t.Errorf("public=%v: bindings after (-want +got):\n%s", public, diff)
		}
		if sent.GetPolicy().GetVersion() != 3 || string(sent.GetPolicy().GetEtag()) != string(read.Etag) {
			t.Errorf("public=%v: wrote version %d with etag %q, want version 3 with the read etag %q", public, sent.GetPolicy().GetVersion(), sent.GetPolicy().GetEtag(), read.Etag)
		}
		why := map[bool]string{true: "public through invoker_iam_disabled", false: "the service is private"}[public]
		if !strings.Contains(w.log.String(), why) {
			t.Errorf("public=%v: the log does not say %q:\n%s", public, why, w.log)
		}
		// Nothing left to remove: no write.
		if wrote, err := w.d.Invokers(ctx, desired.Name, public); wrote || err != nil || w.run.Writes() != writes+1 {
			t.Errorf("public=%v: a second Invokers = %v, %v, %d writes; want no write", public, wrote, err, w.run.Writes()-writes)
		}
	}
}

// TestPublicAccessRefused checks the errors a deployer without run.services.setIamPolicy
// (roles/run.developer) gets: when Cloud Run refuses invoker_iam_disabled, and when it refuses the
// removal of a legacy binding.
func TestPublicAccessRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	denied := status.Error(codes.PermissionDenied, "Permission 'run.services.setIamPolicy' denied on resource 'projects/my-project/locations/us-central1/services/mlflow' (or resource may not exist).")
	d := w.deployerWith(t, func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/CreateService") && req.(*runpb.CreateServiceRequest).GetService().GetInvokerIamDisabled() ||
			strings.HasSuffix(method, "/SetIamPolicy") {
			return denied
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})

	public := desiredFor(t, nil, testImage)
	_, err := d.Deploy(ctx, public, time.Minute)
	err = ExplainPublicAccess(err, public)
	for _, want := range []string{"invoker_iam_disabled", "run.services.setIamPolicy", "roles/run.admin", "roles/run.developer", "auth: iam"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("refused invoker_iam_disabled: error %v does not mention %q", err, want)
		}
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("the explained error lost its code: %v", status.Code(err))
	}
	// A private service's refusal is not about public access.
	private := desiredFor(t, map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": ""}, testImage)
	if err := ExplainPublicAccess(denied, private); !errors.Is(err, denied) || strings.Contains(err.Error(), "invoker_iam_disabled") {
		t.Errorf("a private service's refusal was changed: %v", err)
	}

	if _, err := d.Deploy(ctx, private, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.run.SetPolicy(project, "us-central1", "mlflow", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers"}}}})
	_, err = d.Invokers(ctx, private.Name, false)
	for _, want := range []string{"allUsers", "run.services.setIamPolicy", "roles/run.admin",
		"gcloud run services remove-iam-policy-binding mlflow --region us-central1 --member allUsers --role roles/run.invoker"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("refused removal: error %v does not mention %q", err, want)
		}
	}
}
