package gcptest

import (
	"errors"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRunIAMPolicy(t *testing.T) {
	t.Parallel()
	invoker := func(etag []byte, members ...string) *iampb.SetIamPolicyRequest {
		return &iampb.SetIamPolicyRequest{Resource: testService, Policy: &iampb.Policy{Etag: etag, Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: members}}}}
	}
	t.Run("read-modify-write", func(t *testing.T) {
		t.Parallel()
		r, c, _ := runClients(t, WithoutDomainRestrictedSharing())
		ctx := waitCtx(t)
		if _, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testService}); status.Code(err) != codes.NotFound {
			t.Errorf("GetIamPolicy before the service exists = %v, want NotFound", err)
		}
		if _, err := create(t, c, mlflowService("img")); err != nil {
			t.Fatal(err)
		}
		p, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: testService})
		if err != nil || len(p.Etag) == 0 || len(p.Bindings) != 0 {
			t.Fatalf("initial policy = %v, %v", p, err)
		}
		set, err := c.SetIamPolicy(ctx, invoker(p.Etag, "allUsers"))
		if err != nil {
			t.Fatal(err)
		}
		if string(set.Etag) == string(p.Etag) {
			t.Error("the policy etag did not change")
		}
		if _, err := c.SetIamPolicy(ctx, invoker(p.Etag, "user:a@example.com")); status.Code(err) != codes.Aborted {
			t.Errorf("SetIamPolicy with a stale etag = %v, want Aborted", err)
		}
		if _, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: testService, Policy: &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/storage.admin", Members: []string{"allUsers"}}}}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("SetIamPolicy with a role Cloud Run does not have = %v, want InvalidArgument", err)
		}
		if _, err := c.SetIamPolicy(ctx, invoker(nil, "a@example.com")); status.Code(err) != codes.InvalidArgument {
			t.Errorf("SetIamPolicy with a member without type = %v, want InvalidArgument", err)
		}
		stored, _ := r.Policy("my-project", "us-central1", "mlflow")
		if len(stored.Bindings) != 1 || stored.Bindings[0].Members[0] != "allUsers" {
			t.Errorf("stored policy = %v", stored)
		}
	})
	// Secure-by-default organizations (created since May 2024) enforce domain-restricted sharing, so the
	// stand-in does unless a test lifts it.
	t.Run("domain restricted sharing by default", func(t *testing.T) {
		t.Parallel()
		r, c, _ := runClients(t)
		if _, err := create(t, c, mlflowService("img")); err != nil {
			t.Fatal(err)
		}
		for _, member := range []string{"allUsers", "allAuthenticatedUsers"} {
			_, err := c.SetIamPolicy(waitCtx(t), invoker(nil, "user:a@example.com", member))
			var apiErr *apierror.APIError
			if !errors.As(err, &apiErr) || apiErr.GRPCStatus().Code() != codes.FailedPrecondition || !strings.Contains(err.Error(), "do not belong to a permitted customer") {
				t.Fatalf("SetIamPolicy(%s) = %v, want FAILED_PRECONDITION from the org policy", member, err)
			}
			var pf *errdetails.PreconditionFailure
			for _, d := range apiErr.GRPCStatus().Details() {
				if p, ok := d.(*errdetails.PreconditionFailure); ok {
					pf = p
				}
			}
			if pf == nil || pf.Violations[0].Type != "constraints/iam.allowedPolicyMemberDomains" || !strings.Contains(pf.Violations[0].Subject, member) {
				t.Errorf("details = %v, want a PreconditionFailure naming the constraint and %s", apiErr.GRPCStatus().Details(), member)
			}
		}
		if p, _ := r.Policy("my-project", "us-central1", "mlflow"); len(p.GetBindings()) != 0 {
			t.Errorf("a refused policy was stored: %v", p)
		}
		if _, err := c.SetIamPolicy(waitCtx(t), invoker(nil, "serviceAccount:ci@my-project.iam.gserviceaccount.com")); err != nil {
			t.Errorf("a member of the organization: %v", err)
		}
	})
}

// TestRunInvokerIAMDisabled checks that the service field invoker_iam_disabled, Cloud Run's way to make
// a service public without an allUsers binding, is stored and returned, and that changing it alone is an
// update of the service that starts no new revision (it is not part of the revision template).
func TestRunInvokerIAMDisabled(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t)
	svc := mlflowService("img")
	svc.InvokerIamDisabled = true
	created, err := create(t, c, svc)
	if err != nil {
		t.Fatal(err)
	}
	if !created.InvokerIamDisabled || !get(t, c).InvokerIamDisabled {
		t.Fatal("invoker_iam_disabled was not kept")
	}
	created.InvokerIamDisabled = false
	updated, err := update(t, c, created)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := r.Service("my-project", "us-central1", "mlflow")
	if updated.InvokerIamDisabled || stored.InvokerIamDisabled {
		t.Error("invoker_iam_disabled is still true after an update that cleared it")
	}
	if updated.Generation != created.Generation+1 || len(r.Revisions("my-project", "us-central1", "mlflow")) != 1 {
		t.Errorf("generation %d -> %d, %d revisions: want a new generation and no new revision",
			created.Generation, updated.Generation, len(r.Revisions("my-project", "us-central1", "mlflow")))
	}
}

// TestRunAllowsUnauthenticated checks what the local front end asks: Cloud Run lets a request without an
// identity token through when invoker_iam_disabled is set or allUsers may invoke the service.
func TestRunAllowsUnauthenticated(t *testing.T) {
	t.Parallel()
	r, c, _ := runClients(t)
	if r.AllowsUnauthenticated("my-project", "us-central1", "mlflow") {
		t.Error("a service that does not exist lets requests through")
	}
	if _, err := create(t, c, mlflowService("img")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		disabled bool
		bindings []*iampb.Binding
		want     bool
	}{
		{"private by default", false, nil, false},
		{"invoker IAM check disabled", true, nil, true},
		{"allUsers invoker binding", false, []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}, true},
		{"allAuthenticatedUsers needs a token", false, []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allAuthenticatedUsers"}}}, false},
		{"conditional allUsers binding", false, []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"},
			Condition: &expr.Expr{Expression: "request.time < timestamp('2000-01-01T00:00:00Z')"}}}, false},
		{"allUsers in another role", false, []*iampb.Binding{{Role: "roles/run.viewer", Members: []string{"allUsers"}}}, false},
		{"named invokers only", false, []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{"user:a@example.com"}}}, false},
	} {
		svc := get(t, c)
		svc.InvokerIamDisabled = tc.disabled
		if _, err := update(t, c, svc); err != nil {
			t.Fatal(err)
		}
		r.SetPolicy("my-project", "us-central1", "mlflow", &iampb.Policy{Bindings: tc.bindings})
		// The project may be named by its number too.
		for _, project := range []string{"my-project", "111"} {
			if got := r.AllowsUnauthenticated(project, "us-central1", "mlflow"); got != tc.want {
				t.Errorf("%s (%s): AllowsUnauthenticated = %v, want %v", tc.name, project, got, tc.want)
			}
		}
	}
}
