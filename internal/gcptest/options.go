package gcptest

import (
	"net/http"
	"time"
)

// Option configures a stand-in. Each stand-in reads the options that concern it and ignores the rest, so
// one list can configure them all (see Start).
type Option func(*settings)

type settings struct {
	projects      map[string]string // project ID -> project number
	now           func() time.Time  // the clock of token expiry and of WithOperationDelay
	tokenLifetime time.Duration

	runtime          Runtime
	opPolls          int
	opDelay          time.Duration
	serviceURL       func(ServiceRef) string
	domainRestricted bool
	secrets          *SecretManager
	resourceManager  *ResourceManager
	denied           map[string]bool // IAM permissions every caller lacks (WithDeniedPermissions)

	registry http.Handler
}

func newSettings(opts []Option) *settings {
	// Domain-restricted sharing is on by default, as in every organization created since May 2024.
	s := &settings{projects: map[string]string{}, now: time.Now, tokenLifetime: time.Hour,
		opPolls: defaultOperationPolls, opDelay: defaultOperationDelay, serviceURL: DefaultServiceURL,
		domainRestricted: true}
	for _, o := range opts {
		o(s)
	}
	if len(s.projects) == 0 {
		s.projects[DefaultProjectID] = DefaultProjectNumber
	}
	return s
}

// WithProject makes a project known to the stand-ins (Secret Manager and Cloud Run), by its ID and number.
// Requests naming an unknown project are refused as Google refuses them. Without any WithProject,
// DefaultProjectID (DefaultProjectNumber) is the only project.
func WithProject(id, number string) Option {
	return func(s *settings) { s.projects[id] = number }
}

// WithTokenLifetime sets how long the token server's access tokens last (default an hour).
func WithTokenLifetime(d time.Duration) Option {
	return func(s *settings) { s.tokenLifetime = d }
}

// WithRuntime sets the Runtime that starts Cloud Run revisions.
func WithRuntime(rt Runtime) Option { return func(s *settings) { s.runtime = rt } }

// A Cloud Run rollout takes tens of seconds, so a client never sees its operation done on the first poll.
// By default an operation here is done only once it has been polled defaultOperationPolls times and
// defaultOperationDelay has passed, which a client that treats the first answer as final, or that
// stops polling early, fails on; the delay is kept short so that a test with a few deploys stays quick.
const (
	defaultOperationPolls = 3
	defaultOperationDelay = 2 * time.Second
)

// WithOperationPolls makes a Cloud Run operation done no earlier than its n-th GetOperation, once its
// revision has started (default 3).
func WithOperationPolls(n int) Option { return func(s *settings) { s.opPolls = max(n, 1) } }

// WithOperationDelay makes a Cloud Run operation done no earlier than d after it began, on the settings'
// clock, once its revision has started (default 2 s). Both this and WithOperationPolls must be met.
func WithOperationDelay(d time.Duration) Option { return func(s *settings) { s.opDelay = max(d, 0) } }

// WithInstantOperations makes every Cloud Run operation done on its first poll after its revision has
// started: WithOperationPolls(1) and WithOperationDelay(0), for tests about something else.
func WithInstantOperations() Option {
	return func(s *settings) { s.opPolls, s.opDelay = 1, 0 }
}

// WithServiceURL sets the URL Cloud Run services get (default DefaultServiceURL).
func WithServiceURL(fn func(ServiceRef) string) Option {
	return func(s *settings) {
		if fn != nil {
			s.serviceURL = fn
		}
	}
}

// WithDomainRestrictedSharing simulates the organization policy constraints/iam.allowedPolicyMemberDomains:
// SetIamPolicy refuses allUsers and allAuthenticatedUsers. It is the default (secure-by-default
// organizations enforce it); the option remains for tests that want to say so.
func WithDomainRestrictedSharing() Option { return func(s *settings) { s.domainRestricted = true } }

// WithoutDomainRestrictedSharing lifts that organization policy, as in a project outside an organization
// or one with an exception: SetIamPolicy then accepts allUsers and allAuthenticatedUsers.
func WithoutDomainRestrictedSharing() Option { return func(s *settings) { s.domainRestricted = false } }

// WithSecretManager makes Cloud Run check a revision's secret references against sm, as it does before
// starting a revision: a missing or unusable secret version fails the revision.
func WithSecretManager(sm *SecretManager) Option { return func(s *settings) { s.secrets = sm } }

// WithRegistryBackend sets the registry behind the Artifact Registry front of NewCloud and Start (default
// go-containerregistry's in-memory registry), e.g. a reverse proxy to a real registry.
func WithRegistryBackend(h http.Handler) Option { return func(s *settings) { s.registry = h } }

// WithResourceManager makes Cloud Run count project-level grants in rm when it checks that a revision's
// service account may read the secrets it references.
func WithResourceManager(rm *ResourceManager) Option {
	return func(s *settings) { s.resourceManager = rm }
}

// WithDeniedPermissions makes every caller lack the given IAM permissions, as a deployer with narrow
// roles does: a call that needs one is refused PERMISSION_DENIED in Google's words. The permissions the
// stand-ins check this way are secretmanager.secrets.getIamPolicy and resourcemanager.projects.getIamPolicy.
func WithDeniedPermissions(permissions ...string) Option {
	return func(s *settings) {
		if s.denied == nil {
			s.denied = map[string]bool{}
		}
		for _, p := range permissions {
			s.denied[p] = true
		}
	}
}
