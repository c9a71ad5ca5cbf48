package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// fakePolicies answers from maps; a missing entry is a policy the caller may not read.
type fakePolicies struct {
	secrets  map[string][]Binding // project/secret -> bindings
	projects map[string][]Binding
	calls    int
}

func (f *fakePolicies) SecretPolicy(_ context.Context, project, secret string) ([]Binding, error) {
	f.calls++
	b, ok := f.secrets[project+"/"+secret]
	if !ok {
		return nil, &UnreadableError{Resource: "secret " + secret, Permission: "secretmanager.secrets.getIamPolicy", Err: errors.New("denied")}
	}
	return b, nil
}

func (f *fakePolicies) ProjectPolicy(_ context.Context, project string) ([]Binding, error) {
	f.calls++
	b, ok := f.projects[project]
	if !ok {
		return nil, &UnreadableError{Resource: "project " + project, Permission: "resourcemanager.projects.getIamPolicy", Err: errors.New("denied")}
	}
	return b, nil
}

func TestCheckAccess(t *testing.T) {
	t.Parallel()
	const account = "42-compute@developer.gserviceaccount.com"
	const member = "serviceAccount:" + account
	ref := config.SecretRef{Project: "p", Secret: "DB_url", Version: "latest", Input: "backend_store_secret"}
	accessor := func(members ...string) []Binding {
		return []Binding{{Role: "roles/secretmanager.secretAccessor", Members: members}}
	}
	cases := []struct {
		name     string
		secret   []Binding // nil: unreadable
		project  []Binding // nil: unreadable
		fails    bool
		warnings int
		warnHas  string
	}{
		{name: "granted on the secret", secret: accessor(member), project: []Binding{}},
		{name: "granted on the project", secret: []Binding{}, project: accessor(member)},
		{name: "owner of the project", secret: []Binding{}, project: []Binding{{Role: "roles/owner", Members: []string{member}}}},
		{name: "granted nowhere", secret: []Binding{}, project: []Binding{}, fails: true},
		{name: "editor does not read payloads", secret: []Binding{}, project: []Binding{{Role: "roles/editor", Members: []string{member}}}, fails: true},
		{name: "another account granted", secret: accessor("serviceAccount:other@p.iam.gserviceaccount.com"), project: []Binding{}, fails: true},
		{name: "secret policy unreadable", project: []Binding{}, warnings: 1, warnHas: "secretmanager.secrets.getIamPolicy"},
		{name: "project policy unreadable", secret: []Binding{}, warnings: 1, warnHas: "resourcemanager.projects.getIamPolicy"},
		{name: "unreadable secret, granted on the project", project: accessor(member)},
		{name: "through a group", secret: accessor("group:ml@example.com"), project: []Binding{}, warnings: 1, warnHas: "through group:ml@example.com"},
		{name: "with a condition", secret: []Binding{{Role: "roles/secretmanager.secretAccessor", Members: []string{member}, Conditional: true}}, project: []Binding{},
			warnings: 1, warnHas: "with a condition"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakePolicies{secrets: map[string][]Binding{}, projects: map[string][]Binding{}}
			if tc.secret != nil {
				f.secrets["p/DB_url"] = tc.secret
			}
			if tc.project != nil {
				f.projects["p"] = tc.project
			}
			warnings, err := CheckAccess(context.Background(), f, account, []config.SecretRef{ref, ref})
			var ae *AccessError
			if got := errors.As(err, &ae); got != tc.fails {
				t.Fatalf("error %v, want failure %v", err, tc.fails)
			}
			cmd := "gcloud secrets add-iam-policy-binding DB_url --project=p --member=serviceAccount:" + account + " --role=roles/secretmanager.secretAccessor"
			if tc.fails && (!strings.Contains(err.Error(), cmd) || !strings.Contains(err.Error(), "backend_store_secret") || !strings.Contains(err.Error(), account)) {
				t.Errorf("the error does not name the account, the input and the command %q: %v", cmd, err)
			}
			if len(warnings) != tc.warnings || (tc.warnings > 0 && (!strings.Contains(warnings[0], tc.warnHas) || !strings.Contains(warnings[0], cmd))) {
				t.Errorf("warnings %q, want %d mentioning %q and the command", warnings, tc.warnings, tc.warnHas)
			}
		})
	}
}

func TestCheckAccessReadsEachPolicyOnce(t *testing.T) {
	t.Parallel()
	f := &fakePolicies{secrets: map[string][]Binding{"p/a": {}, "p/b": {}}, projects: map[string][]Binding{"p": {{Role: "roles/secretmanager.secretAccessor", Members: []string{"serviceAccount:x"}}}}}
	refs := []config.SecretRef{{Project: "p", Secret: "a"}, {Project: "p", Secret: "b"}, {Project: "p", Secret: "a", Version: "2"}}
	if _, err := CheckAccess(context.Background(), f, "x", refs); err != nil {
		t.Fatal(err)
	}
	if f.calls != 3 {
		t.Errorf("%d policy reads, want 3: each secret's once and the project's once", f.calls)
	}
}
