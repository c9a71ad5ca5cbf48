package secrets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// Cloud Run checks, when it deploys a revision, that the revision's service account may read every
// secret the revision references (https://cloud.google.com/run/docs/configuring/services/secrets), and
// fails the revision if not. CheckAccess does the same check before anything is built, as far as the
// deploying identity may read the IAM policies involved.

// DefaultComputeAccount is the account Cloud Run runs a revision as when the service names none: the
// Compute Engine default service account of the service's project.
func DefaultComputeAccount(projectNumber string) string {
	return projectNumber + "-compute@developer.gserviceaccount.com"
}

// GrantCommand is the gcloud command that lets account read secret of project.
func GrantCommand(project, secret, account string) string {
	return fmt.Sprintf("gcloud secrets add-iam-policy-binding %s --project=%s --member=serviceAccount:%s --role=roles/secretmanager.secretAccessor",
		secret, project, account)
}

// AccessError is a secret that the runtime service account may not read, and the command that fixes it.
type AccessError struct {
	Account string
	Ref     config.SecretRef
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("the service's runtime account %s may not read secret %s (input %s), so Cloud Run would refuse the revision; "+
		"grant it access with: %s (a grant on a folder or the organization is invisible to this check; the grant on the secret is harmless alongside it)",
		e.Account, e.Ref.Secret, e.Ref.Input, GrantCommand(e.Ref.Project, e.Ref.Secret, e.Account))
}

// A Binding is one role and its members in an IAM policy, whichever API returned the policy.
type Binding struct {
	Role        string
	Members     []string
	Conditional bool // the binding has a condition, which only IAM evaluates
}

// UnreadableError is a policy the deploying identity may not read (PERMISSION_DENIED).
type UnreadableError struct {
	Resource   string // e.g. secret DB_url of project p
	Permission string // the permission it would need
	Err        error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("may not read the IAM policy of %s (needs %s): %v", e.Resource, e.Permission, e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// Policies reads the IAM policies that can let an account read a secret: the secret's own and its
// project's. A policy the caller may not read is an *UnreadableError.
type Policies interface {
	SecretPolicy(ctx context.Context, project, secret string) ([]Binding, error)
	ProjectPolicy(ctx context.Context, project string) ([]Binding, error)
}

// accessRoles are the predefined roles with secretmanager.versions.access, the permission Cloud Run
// checks (https://cloud.google.com/iam/docs/roles-permissions/secretmanager): Editor does not have it.
var accessRoles = []string{"roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"}

// verdict is what one policy says of an account's access to a secret.
type verdict int

const (
	notGranted verdict = iota
	unclear            // through a group, a domain, a workforce set or a condition: IAM alone can tell
	granted
)

// judge tells whether bindings give member (serviceAccount:EMAIL) a role that reads secrets; for an
// unclear verdict it names the binding that might.
func judge(bindings []Binding, member string) (verdict, string) {
	v, why := notGranted, ""
	for _, b := range bindings {
		if !slices.Contains(accessRoles, b.Role) {
			continue
		}
		for _, m := range b.Members {
			direct := m == member || m == "allUsers" || m == "allAuthenticatedUsers"
			switch {
			case direct && !b.Conditional:
				return granted, ""
			case direct:
				v, why = unclear, fmt.Sprintf("%s with a condition", b.Role)
			case strings.HasPrefix(m, "group:") || strings.HasPrefix(m, "domain:") || strings.HasPrefix(m, "principalSet:"):
				v, why = unclear, fmt.Sprintf("%s through %s", b.Role, m)
			}
		}
	}
	return v, why
}

// CheckAccess checks that account may read every referenced secret through a grant on the secret or
// on its project. It returns one *AccessError per secret the account may certainly not read, joined,
// and a warning for each secret it could not decide on (a policy it may not read, a grant through a
// group or a condition). Grants on folders and the organization are not visible here.
func CheckAccess(ctx context.Context, p Policies, account string, refs []config.SecretRef) (warnings []string, err error) {
	member := "serviceAccount:" + account
	type projectPolicy struct {
		bindings []Binding
		err      error
	}
	projects := map[string]projectPolicy{}
	var errs []error
	seen := map[string]bool{}
	for _, ref := range refs {
		key := ref.Project + "/" + ref.Secret
		if seen[key] {
			continue
		}
		seen[key] = true
		bindings, serr := p.SecretPolicy(ctx, ref.Project, ref.Secret)
		sv, swhy := judge(bindings, member)
		if serr == nil && sv == granted {
			continue
		}
		pp, ok := projects[ref.Project]
		if !ok {
			pp.bindings, pp.err = p.ProjectPolicy(ctx, ref.Project)
			projects[ref.Project] = pp
		}
		pv, pwhy := judge(pp.bindings, member)
		if pp.err == nil && pv == granted {
			continue
		}
		var unsure []string
		for _, e := range []error{serr, pp.err} {
			var ue *UnreadableError
			switch {
			case e == nil:
			case errors.As(e, &ue):
				unsure = append(unsure, ue.Error())
			default:
				return nil, fmt.Errorf("checking that %s may read secret %s (input %s): %w", account, ref.Secret, ref.Input, e)
			}
		}
		for _, why := range []string{swhy, pwhy} {
			if why != "" {
				unsure = append(unsure, "it may have "+why)
			}
		}
		if len(unsure) == 0 {
			errs = append(errs, &AccessError{Account: account, Ref: ref})
			continue
		}
		warnings = append(warnings, fmt.Sprintf("could not check that %s may read secret %s (input %s): %s; going on, Cloud Run checks it when it deploys. If it is refused: %s",
			account, ref.Secret, ref.Input, strings.Join(unsure, "; "), GrantCommand(ref.Project, ref.Secret, account)))
	}
	return warnings, errors.Join(errs...)
}
