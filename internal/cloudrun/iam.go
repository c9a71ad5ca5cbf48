package cloudrun

import (
	"context"
	"fmt"
	"path"
	"slices"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

const (
	invokerRole = "roles/run.invoker"
	allUsers    = "allUsers"
	// policyVersion 3 keeps conditional bindings intact when the policy is written back.
	policyVersion = 3
)

// publicMembers are the members that open a service to anyone.
var publicMembers = []string{allUsers, "allAuthenticatedUsers"}

// Public tells whether the service is open to requests without a Google identity: only with auth: basic
// (the server's basic auth guards it) and allow_unauthenticated. Desired sets invoker_iam_disabled from it.
func Public(c *config.Config) bool {
	return c.Auth != serverenv.AuthIAM && c.AllowUnauthed
}

// Invokers removes allUsers and allAuthenticatedUsers from the service's invoker role, and reports
// whether it wrote the policy. A public service is public through its invoker_iam_disabled field (see
// Desired), which works where the domain-restricted-sharing organization policy refuses an allUsers
// binding; earlier versions of the action made services public with that binding instead, and a private
// service must not keep it. public only says, in the log, why the binding goes. It writes only when
// something changes, with policy version 3 and the read policy's etag, so a concurrent change is refused.
// A service that does not exist has no binding to remove.
func (d *Deployer) Invokers(ctx context.Context, name string, public bool) (bool, error) {
	policy, err := d.Services.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name,
		Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: policyVersion}})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	if err != nil {
		return false, explain(err, name, "read the IAM policy of")
	}
	next, removed := withoutPublicInvokers(policy)
	if len(removed) == 0 {
		return false, nil
	}
	if _, err := d.Services.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: next}); err != nil {
		if status.Code(err) == codes.PermissionDenied {
			return false, &apiError{err: err, msg: fmt.Sprintf("Cloud Run refused to remove %v from %s on service %s (%s): the deploying identity "+
				"needs run.services.setIamPolicy, which roles/run.admin has and roles/run.developer lacks; or remove the binding yourself: "+
				"gcloud run services remove-iam-policy-binding %s --region %s --member %s --role %s",
				removed, invokerRole, path.Base(name), status.Convert(err).Message(), path.Base(name), region(name), removed[0], invokerRole)}
		}
		return false, explain(err, name, "set the IAM policy of")
	}
	if public {
		d.logf("removed %v from %s on %s: an earlier version made the service public so; it is public through invoker_iam_disabled instead",
			removed, invokerRole, path.Base(name))
	} else {
		d.logf("removed %v from %s on %s: the service is private", removed, invokerRole, path.Base(name))
	}
	return true, nil
}

// withoutPublicInvokers is the policy without any public member in an invoker binding (bindings left
// empty are dropped), as version 3 with the read etag, and the public members it removed (none: no change).
func withoutPublicInvokers(policy *iampb.Policy) (*iampb.Policy, []string) {
	next := proto.Clone(policy).(*iampb.Policy)
	next.Version = policyVersion
	var removed []string
	for _, b := range next.Bindings {
		if b.Role != invokerRole {
			continue
		}
		b.Members = slices.DeleteFunc(b.Members, func(m string) bool {
			if !slices.Contains(publicMembers, m) {
				return false
			}
			if !slices.Contains(removed, m) {
				removed = append(removed, m)
			}
			return true
		})
	}
	next.Bindings = slices.DeleteFunc(next.Bindings, func(b *iampb.Binding) bool { return len(b.Members) == 0 })
	return next, removed
}

// ExplainPublicAccess adds to a deploy that Cloud Run refused for want of permission what a public
// service needs besides a deploy: disabling the invoker IAM check (invoker_iam_disabled) takes
// run.services.setIamPolicy. Other errors, and those of a private service, are returned as they are.
func ExplainPublicAccess(err error, desired *runpb.Service) error {
	if err == nil || !desired.GetInvokerIamDisabled() || status.Code(err) != codes.PermissionDenied {
		return err
	}
	return fmt.Errorf("%w. A public service (auth: basic with allow_unauthenticated: true) has Cloud Run's invoker IAM check "+
		"disabled (invoker_iam_disabled), which needs run.services.setIamPolicy as well as run.services.create and "+
		"run.services.update: roles/run.admin has them all, roles/run.developer lacks setIamPolicy. Grant the deploying "+
		"identity roles/run.admin, or set auth: iam to keep the service private", err)
}

// region is the location in a service name projects/P/locations/R/services/S.
func region(name string) string {
	parent, _ := splitName(name)
	return path.Base(parent)
}
