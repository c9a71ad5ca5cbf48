package gcptest

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// TestResourceManagerProjectPolicy reads project policies with the real REST client: empty until a grant,
// the grant once GrantProjectRole made it, and Resource Manager's 403 for an unknown project or a caller
// without resourcemanager.projects.getIamPolicy.
func TestResourceManagerProjectPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := StartTokenServer(t)
	client := func(rm *ResourceManager) *cloudresourcemanager.Service {
		svc, err := cloudresourcemanager.NewService(ctx, option.WithEndpoint(rm.URL()), option.WithTokenSource(serviceAccount(t, tokens)))
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	read := func(svc *cloudresourcemanager.Service, project string) (*cloudresourcemanager.Policy, error) {
		return svc.Projects.GetIamPolicy("projects/"+project, &cloudresourcemanager.GetIamPolicyRequest{
			Options: &cloudresourcemanager.GetPolicyOptions{RequestedPolicyVersion: 3}}).Context(ctx).Do()
	}
	rm := StartResourceManager(t, tokens, WithProject("my-project", "111"))
	svc := client(rm)

	if p, err := read(svc, "my-project"); err != nil || len(p.Bindings) != 0 {
		t.Fatalf("a new project's policy = %+v, %v; want no bindings", p, err)
	}
	rm.GrantProjectRole("my-project", "serviceAccount:a@my-project.iam.gserviceaccount.com", "roles/secretmanager.secretAccessor")
	p, err := read(svc, "111")
	if err != nil || len(p.Bindings) != 1 || p.Bindings[0].Role != "roles/secretmanager.secretAccessor" || p.Bindings[0].Members[0] != "serviceAccount:a@my-project.iam.gserviceaccount.com" {
		t.Fatalf("after GrantProjectRole the policy (read by number) is %+v, %v", p, err)
	}
	var gerr *googleapi.Error
	if _, err := read(svc, "nobodys-project"); !errors.As(err, &gerr) || gerr.Code != http.StatusForbidden {
		t.Errorf("an unknown project: %v, want 403", err)
	}
	narrow := StartResourceManager(t, tokens, WithProject("my-project", "111"), WithDeniedPermissions("resourcemanager.projects.getIamPolicy"))
	if _, err := read(client(narrow), "my-project"); !errors.As(err, &gerr) || gerr.Code != http.StatusForbidden || gerr.Message != "The caller does not have permission" {
		t.Errorf("a caller without getIamPolicy: %v, want 403 The caller does not have permission", err)
	}
	if got := rm.Calls("GetIamPolicy"); got != 3 {
		t.Errorf("Calls(GetIamPolicy) = %d, want 3", got)
	}
}
