package secrets

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"cloud.google.com/go/iam/apiv1/iampb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// APIPolicies reads policies from Secret Manager (a secret's) and Cloud Resource Manager (a project's).
type APIPolicies struct {
	Secrets  *secretmanager.Client
	Projects *cloudresourcemanager.Service
}

var _ Policies = APIPolicies{}

// policyVersion 3 is the version that shows conditional bindings as such.
const policyVersion = 3

func (a APIPolicies) SecretPolicy(ctx context.Context, project, secret string) ([]Binding, error) {
	p, err := a.Secrets.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{
		Resource: fmt.Sprintf("projects/%s/secrets/%s", project, secret),
		Options:  &iampb.GetPolicyOptions{RequestedPolicyVersion: policyVersion},
	})
	if status.Code(err) == codes.PermissionDenied {
		return nil, &UnreadableError{Resource: fmt.Sprintf("secret %s of project %s", secret, project), Permission: "secretmanager.secrets.getIamPolicy", Err: err}
	}
	if err != nil {
		return nil, err
	}
	var out []Binding
	for _, b := range p.GetBindings() {
		out = append(out, Binding{Role: b.GetRole(), Members: b.GetMembers(), Conditional: b.GetCondition() != nil})
	}
	return out, nil
}

func (a APIPolicies) ProjectPolicy(ctx context.Context, project string) ([]Binding, error) {
	p, err := a.Projects.Projects.GetIamPolicy("projects/"+project, &cloudresourcemanager.GetIamPolicyRequest{
		Options: &cloudresourcemanager.GetPolicyOptions{RequestedPolicyVersion: policyVersion},
	}).Context(ctx).Do()
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusForbidden {
		return nil, &UnreadableError{Resource: "project " + project, Permission: "resourcemanager.projects.getIamPolicy", Err: err}
	}
	if err != nil {
		return nil, err
	}
	var out []Binding
	for _, b := range p.Bindings {
		out = append(out, Binding{Role: b.Role, Members: b.Members, Conditional: b.Condition != nil})
	}
	return out, nil
}
