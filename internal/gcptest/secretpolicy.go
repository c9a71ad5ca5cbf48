package gcptest

import (
	"bytes"
	"context"
	"slices"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// A secret's IAM policy, as Secret Manager keeps it: GetIamPolicy returns an empty policy for a secret
// that has none (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/getIamPolicy),
// and SetIamPolicy replaces it whole, with an etag for read-modify-write. Nobody holds a role on a new
// secret: access comes from a grant on the secret or on its project (ResourceManager).

// GrantSecretRole adds member (e.g. serviceAccount:EMAIL) to role in the IAM policy of the secret name
// of project (an ID or number), as `gcloud secrets add-iam-policy-binding` does. It panics for a secret
// the stand-in does not hold.
func (s *SecretManager) GrantSecretRole(project, name, member, role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.resolveSecret("projects/"+project+"/secrets/"+name, "secretmanager.secrets.setIamPolicy")
	if err != nil {
		panic("gcptest: GrantSecretRole: " + err.Error())
	}
	if sec.policy == nil {
		sec.policy = &iampb.Policy{Version: 1}
	}
	addBinding(sec.policy, role, member)
}

// secretGrantsAccess tells whether member may read secret (its ID in project, or its full name) through
// a grant on the secret itself, and returns the number of the secret's project, where a project-level
// grant would count instead.
func (s *SecretManager) secretGrantsAccess(project, secret, member string) (granted bool, projectNumber string) {
	name := secret
	if !strings.HasPrefix(secret, "projects/") {
		name = "projects/" + project + "/secrets/" + secret
	}
	key, err := s.secretKey(name, "secretmanager.versions.access")
	if err != nil {
		return false, ""
	}
	projectNumber = strings.Split(key, "/")[1]
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[key]
	return sec != nil && grantsSecretAccess(sec.policy, member), projectNumber
}

func (a secretManagerAPI) GetIamPolicy(_ context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.begin("GetIamPolicy")()
	const permission = "secretmanager.secrets.getIamPolicy"
	sec, err := a.s.resolveSecret(req.GetResource(), permission)
	if err != nil {
		return nil, err
	}
	if a.s.cfg.denied[permission] {
		return nil, secretPermissionDenied(permission, req.GetResource())
	}
	if sec.policy == nil {
		return &iampb.Policy{}, nil
	}
	return proto.Clone(sec.policy).(*iampb.Policy), nil
}

// SetIamPolicy accepts Secret Manager's roles and the basic ones, and IAM's member forms.
func (a secretManagerAPI) SetIamPolicy(_ context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	defer a.begin("SetIamPolicy")()
	const permission = "secretmanager.secrets.setIamPolicy"
	sec, err := a.s.resolveSecret(req.GetResource(), permission)
	if err != nil {
		return nil, err
	}
	if a.s.cfg.denied[permission] {
		return nil, secretPermissionDenied(permission, req.GetResource())
	}
	policy := req.GetPolicy()
	if policy == nil {
		return nil, invalid("policy: field is required.")
	}
	if len(policy.GetEtag()) > 0 && !bytes.Equal(policy.GetEtag(), sec.policy.GetEtag()) {
		return nil, refuse(codes.Aborted, "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.")
	}
	for _, b := range policy.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/secretmanager.") && !slices.Contains([]string{"roles/owner", "roles/editor", "roles/viewer"}, b.GetRole()) {
			return nil, invalid("Role %s is not supported for this resource.", b.GetRole())
		}
		for _, m := range b.GetMembers() {
			public := m == "allUsers" || m == "allAuthenticatedUsers"
			if !public && !slices.ContainsFunc(memberPrefixes, func(p string) bool { return strings.HasPrefix(m, p) && len(m) > len(p) }) {
				return nil, invalid("Invalid member %q: members are allUsers, allAuthenticatedUsers or TYPE:ID (user:, serviceAccount:, group:, domain:, principal:, principalSet:).", m)
			}
		}
	}
	stored := proto.Clone(policy).(*iampb.Policy)
	stored.Version = max(stored.Version, 1)
	stored.Etag = []byte(newEtag())
	sec.policy = stored
	return proto.Clone(stored).(*iampb.Policy), nil
}
