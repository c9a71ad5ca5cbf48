package cloudrun

import (
	"context"
	"fmt"
	"path"
	"slices"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	invokerRole = "roles/run.invoker"
	allUsers    = "allUsers"
)

// publicMembers are the members that open a service to anyone.
var publicMembers = []string{allUsers, "allAuthenticatedUsers"}

// Invokers makes the service public (allUsers may invoke it) or not, as asked. A private service
// also loses any public binding it had, so that switching to auth: iam really closes it. It writes
// the policy only when it changes, with the read policy's etag. It reports whether it wrote.
func (d *Deployer) Invokers(ctx context.Context, name string, public bool) (bool, error) {
	// Version 3 keeps conditional bindings intact when the policy is written back.
	policy, err := d.Services.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: name,
		Options: &iampb.GetPolicyOptions{RequestedPolicyVersion: 3}})
	if err != nil {
		return false, explain(err, name, "read the IAM policy of")
	}
	next, changed := invokerPolicy(policy, public)
	if !changed {
		return false, nil
	}
	if _, err := d.Services.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: name, Policy: next}); err != nil {
		if status.Code(err) == codes.FailedPrecondition && public {
			return false, fmt.Errorf("Cloud Run refused to let allUsers invoke %s: %s. An organization policy "+
				"(constraints/iam.allowedPolicyMemberDomains, domain restricted sharing) likely forbids public services: "+
				"ask an administrator for an exception for this project, or set allow_unauthenticated: false and grant "+
				"roles/run.invoker to the people and service accounts that use MLflow", path.Base(name), status.Convert(err).Message())
		}
		if status.Code(err) == codes.PermissionDenied {
			return false, fmt.Errorf("Cloud Run refused to change who may invoke %s (%s): the deploying identity needs "+
				"run.services.setIamPolicy, which roles/run.admin has and roles/run.developer lacks", path.Base(name), status.Convert(err).Message())
		}
		return false, explain(err, name, "set the IAM policy of")
	}
	if public {
		d.logf("granted %s to allUsers on %s", invokerRole, path.Base(name))
	} else {
		d.logf("removed public %s bindings from %s", invokerRole, path.Base(name))
	}
	return true, nil
}

// invokerPolicy is the policy with allUsers bound to, or every public member removed from, the invoker
// role, and whether that differs from policy. The etag is kept, so a concurrent change is refused.
func invokerPolicy(policy *iampb.Policy, public bool) (*iampb.Policy, bool) {
	next := proto.Clone(policy).(*iampb.Policy)
	var invoker *iampb.Binding
	for _, b := range next.Bindings {
		if b.Role == invokerRole && b.Condition == nil {
			invoker = b
		}
	}
	if public {
		if invoker != nil && slices.Contains(invoker.Members, allUsers) {
			return policy, false
		}
		if invoker == nil {
			invoker = &iampb.Binding{Role: invokerRole}
			next.Bindings = append(next.Bindings, invoker)
		}
		invoker.Members = append(invoker.Members, allUsers)
		return next, true
	}
	changed := false
	for _, b := range next.Bindings {
		if b.Role != invokerRole {
			continue
		}
		kept := slices.DeleteFunc(b.Members, func(m string) bool { return slices.Contains(publicMembers, m) })
		if len(kept) != len(b.Members) {
			changed = true
		}
		b.Members = kept
	}
	next.Bindings = slices.DeleteFunc(next.Bindings, func(b *iampb.Binding) bool { return len(b.Members) == 0 })
	return next, changed
}
