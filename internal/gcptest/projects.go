package gcptest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ResourceManager stands in for the part of the Cloud Resource Manager API v3 that the action reads: a
// project's IAM policy, over REST (POST /v3/projects/PROJECT:getIamPolicy). Tests grant project-level
// roles with GrantProjectRole, as `gcloud projects add-iam-policy-binding` does; Cloud Run's secret
// access check counts those grants. Every project starts with an empty policy: secure by default, no
// account holds a role that a test did not grant.
// Reach it with cloudresourcemanager.NewService(ctx, option.WithEndpoint(URL()), option.WithTokenSource(ts)).
type ResourceManager struct {
	cfg *settings
	srv *httpServer

	callLog

	mu       sync.Mutex
	policies map[string]*iampb.Policy // project number -> policy
}

// NewResourceManager starts a Resource Manager on a loopback port; auth decides which tokens may call it.
// Close stops it.
func NewResourceManager(auth Authenticator, opts ...Option) (*ResourceManager, error) {
	rm := &ResourceManager{cfg: newSettings(opts), policies: map[string]*iampb.Policy{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/projects/{resource}", rm.serveProject)
	srv, err := serveHTTP(RequireBearer(auth, mux))
	if err != nil {
		return nil, err
	}
	rm.srv = srv
	return rm, nil
}

// StartResourceManager starts a Resource Manager that is closed when the test ends.
func StartResourceManager(t testing.TB, auth Authenticator, opts ...Option) *ResourceManager {
	t.Helper()
	rm, err := NewResourceManager(auth, opts...)
	return started(t, rm, err)
}

// URL is the base URL of the REST API, http://127.0.0.1:PORT/.
func (rm *ResourceManager) URL() string { return rm.srv.url + "/" }

// Addr is the host:port the server listens on.
func (rm *ResourceManager) Addr() string { return strings.TrimPrefix(rm.srv.url, "http://") }

// Close stops the server.
func (rm *ResourceManager) Close() { rm.srv.close() }

// GrantProjectRole adds member (e.g. serviceAccount:EMAIL) to role in the IAM policy of project (an ID
// or number). It panics for a project the stand-in does not know.
func (rm *ResourceManager) GrantProjectRole(project, member, role string) {
	p, ok := rm.cfg.lookupProject(project)
	if !ok {
		panic("gcptest: GrantProjectRole: unknown project " + project + " (configure it with WithProject)")
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	policy := rm.policies[p.number]
	if policy == nil {
		policy = &iampb.Policy{Version: 1}
		rm.policies[p.number] = policy
	}
	addBinding(policy, role, member)
}

// projectGrantsAccess tells whether member may read the secrets of the project numbered number through
// a project-level grant.
func (rm *ResourceManager) projectGrantsAccess(number, member string) bool {
	if rm == nil {
		return false
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return grantsSecretAccess(rm.policies[number], member)
}

// serveProject answers projects.getIamPolicy, the only project method served.
func (rm *ResourceManager) serveProject(w http.ResponseWriter, r *http.Request) {
	id, method, ok := strings.Cut(r.PathValue("resource"), ":")
	if !ok || method != "getIamPolicy" {
		googleError(refuse(codes.NotFound, "Method %q is not served by the stand-in.", method)).write(w)
		return
	}
	rm.count("GetIamPolicy")
	// Resource Manager answers a project one may not see, or that does not exist, with this 403.
	denied := googleError(refuse(codes.PermissionDenied, "The caller does not have permission"))
	p, known := rm.cfg.lookupProject(id)
	if !known || rm.cfg.denied["resourcemanager.projects.getIamPolicy"] {
		denied.write(w)
		return
	}
	var req struct {
		Options struct {
			RequestedPolicyVersion int `json:"requestedPolicyVersion"`
		} `json:"options"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			googleError(invalid("Invalid JSON payload received. %v", err)).write(w)
			return
		}
	}
	rm.mu.Lock()
	policy := proto.Clone(rm.policies[p.number]).(*iampb.Policy)
	rm.mu.Unlock()
	if policy == nil {
		policy = &iampb.Policy{}
	}
	b, err := protojson.Marshal(policy)
	if err != nil {
		googleError(refuse(codes.Internal, "%v", err)).write(w)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// addBinding adds member to role's binding (without a condition) in policy, once.
func addBinding(policy *iampb.Policy, role, member string) {
	for _, b := range policy.Bindings {
		if b.Role == role && b.Condition == nil {
			if !slices.Contains(b.Members, member) {
				b.Members = append(b.Members, member)
			}
			return
		}
	}
	policy.Bindings = append(policy.Bindings, &iampb.Binding{Role: role, Members: []string{member}})
	policy.Etag = []byte(newEtag())
}

// secretAccessRoles are the predefined roles that carry secretmanager.versions.access, the permission
// Cloud Run checks for a revision's service account: Secret Accessor, Secret Manager Admin and Owner
// (https://cloud.google.com/iam/docs/roles-permissions/secretmanager). Editor and Viewer do not carry it.
var secretAccessRoles = []string{"roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"}

// grantsSecretAccess tells whether policy gives member one of secretAccessRoles. A binding with a
// condition does not count: the stand-in does not evaluate conditions, and Cloud Run could not either
// at deploy time for conditions on request attributes. Groups and domains are not modelled: an account
// reaches a role only by being named, or through allUsers/allAuthenticatedUsers.
func grantsSecretAccess(policy *iampb.Policy, member string) bool {
	for _, b := range policy.GetBindings() {
		if !slices.Contains(secretAccessRoles, b.GetRole()) || b.GetCondition() != nil {
			continue
		}
		for _, m := range b.GetMembers() {
			if m == member || m == "allUsers" || m == "allAuthenticatedUsers" {
				return true
			}
		}
	}
	return false
}
