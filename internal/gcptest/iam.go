package gcptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"slices"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// GetIamPolicy and SetIamPolicy read and write a service's policy, with its etag (read-modify-write).
func (a runAPI) GetIamPolicy(_ context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.r.begin("GetIamPolicy")()
	rs, _, err := a.r.service(req.GetResource(), "run.services.getIamPolicy")
	if err != nil {
		return nil, err
	}
	return proto.Clone(rs.policy).(*iampb.Policy), nil
}

// Member forms IAM accepts in a binding.
var memberPrefixes = []string{"user:", "serviceAccount:", "group:", "domain:", "principal:", "principalSet:", "deleted:"}

// SetIamPolicy accepts Cloud Run's roles and IAM's member forms. It refuses allUsers and
// allAuthenticatedUsers as the domain-restricted-sharing organization policy does, unless a test lifts
// that policy with WithoutDomainRestrictedSharing.
func (a runAPI) SetIamPolicy(_ context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.r.begin("SetIamPolicy")()
	r := a.r
	r.writes["SetIamPolicy"]++
	rs, _, err := r.service(req.GetResource(), "run.services.setIamPolicy")
	if err != nil {
		return nil, err
	}
	policy := req.GetPolicy()
	if policy == nil {
		return nil, invalid("policy: field is required.")
	}
	if len(policy.GetEtag()) > 0 && !bytes.Equal(policy.GetEtag(), rs.policy.GetEtag()) {
		return nil, refuse(codes.Aborted, "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.")
	}
	for _, b := range policy.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/run.") && !slices.Contains([]string{"roles/owner", "roles/editor", "roles/viewer"}, b.GetRole()) {
			return nil, invalid("Role %s is not supported for this resource.", b.GetRole())
		}
		for _, m := range b.GetMembers() {
			public := m == "allUsers" || m == "allAuthenticatedUsers"
			if !public && !slices.ContainsFunc(memberPrefixes, func(p string) bool { return strings.HasPrefix(m, p) && len(m) > len(p) }) {
				return nil, invalid("Invalid member %q: members are allUsers, allAuthenticatedUsers or TYPE:ID (user:, serviceAccount:, group:, domain:, principal:, principalSet:).", m)
			}
			if public && r.cfg.domainRestricted {
				refused := refuse(codes.FailedPrecondition, "One or more users named in the policy do not belong to a permitted customer,  perhaps due to an organization policy.")
				refused.details = append(refused.details, &errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
					Type:        "constraints/iam.allowedPolicyMemberDomains",
					Subject:     "orgpolicy:" + serviceKey(rs.ref) + "?configvalue=" + m,
					Description: "User " + m + " is not in permitted organization.",
				}}})
				return nil, refused
			}
		}
	}
	stored := proto.Clone(policy).(*iampb.Policy)
	stored.Version = max(stored.Version, 1)
	stored.Etag = make([]byte, 8)
	_, _ = rand.Read(stored.Etag[2:])
	stored.Etag[0], stored.Etag[1] = 0x07, 0x06
	rs.policy = stored
	return proto.Clone(stored).(*iampb.Policy), nil
}
