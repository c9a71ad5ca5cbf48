// Package gcptest holds stand-ins for the Google Cloud APIs the action talks to, for its unit tests, its
// end-to-end test and the local demo: an OAuth token endpoint with STS and IAM Credentials
// (TokenServer), Secret Manager (SecretManager), the Cloud Run Admin API v2 with its long-running
// operations (Run) and an Artifact Registry front for a Docker registry (ArtifactRegistry).
//
// Each stand-in serves on 127.0.0.1 and is reached by the real Google client libraries: the gRPC ones
// through option.WithGRPCConn over plaintext loopback with per-RPC bearer credentials, the token server
// through golang.org/x/oauth2/google reading the credential files it writes, the registry front through
// go-containerregistry, which follows the front's Bearer challenge to its token endpoint. They behave as Google's APIs document, not as a mock that accepts
// anything: every call must carry an access token the token server issued, with the cloud-platform scope.
// Each records what it saw (calls per method, writes, token grants, uploads) so that tests can assert on
// the traffic, not only on the outcome.
//
// Every stand-in has a constructor that returns a value with Close, for use outside tests (the demo), and a
// Start helper that takes a testing.TB and closes it at the end of the test. NewCloud and Start build all
// of them, wired to one another. Each answers only the methods the action and its tests call; the others
// answer UNIMPLEMENTED.
//
// Where things are: cloud.go (the bundle) and options.go (every Option); tokens.go, oauth.go,
// credentials.go and jwt.go (the token server, its endpoints and the credential files it writes);
// auth.go (how every stand-in checks tokens); secrets.go and secretpolicy.go (Secret Manager and its
// secrets' IAM policies); projects.go (Resource Manager's project IAM policies); run.go, services.go,
// revisions.go, reconcile.go, operations.go, iam.go, spec.go and runtime.go (Cloud Run: its resources,
// how a service's status follows its revisions, the spec's validation and defaults, and the Runtime hook
// that decides a revision's fate); registry.go (the Artifact Registry front); baseimage.go (the stand-in
// for the official MLflow image); errors.go (every refusal, in Google's words); servers.go and
// resources.go (loopback servers, projects, names and etags).
//
// The errors, as Google's APIs answer them:
//   - no token or an unknown one: UNAUTHENTICATED (HTTP 401); a token without cloud-platform:
//     PERMISSION_DENIED (403).
//   - a missing resource: NOT_FOUND, with Google's messages ("Secret [projects/N/secrets/S] not found or
//     has no versions.", "Resource 'S' of kind 'SERVICE' in region 'R' in project 'P' does not exist.").
//   - an unknown project: PERMISSION_DENIED naming the IAM permission, as for a project one cannot see.
//   - creating what exists: ALREADY_EXISTS.
//   - a stale etag on a Cloud Run service, a Secret Manager version or an IAM policy: ABORTED (AIP-154;
//     for IAM "There were concurrent policy changes. ...").
//   - accessing a disabled secret version: FAILED_PRECONDITION "Secret Version [...] is in DISABLED
//     state." (latest is the newest version, whatever its state).
//   - a revision that fails: its operation fails with FAILED_PRECONDITION "Revision 'NAME' is not ready
//     and cannot serve traffic. ..." (code 9, as Cloud Run reports it).
//   - allUsers under the domain restricted sharing organization policy: FAILED_PRECONDITION "One or more
//     users named in the policy do not belong to a permitted customer, ..." with a PreconditionFailure.
//   - the registry front: 401 UNAUTHORIZED with a Bearer challenge, 403 DENIED (from the token endpoint for
//     a request without credentials, and for a blob mount from another registry), 404 NAME_UNKNOWN
//     `Repository "R" not found`, and 400 NAME_INVALID for a name without an image (Artifact Registry wants
//     PROJECT/REPOSITORY/IMAGE).
//
// Where the stand-ins follow Google's observable behaviour rather than a document: Secret Manager returns
// names with the project number where the caller used the project ID; Cloud Run returns a Service's own
// name and its latest revisions in the form the caller used, and Revision resources with the project
// number. Compare names by project and ID, normalising the project number.
//
// FIDELITY.md lists each modelled behaviour with its source, and what is not modelled.
package gcptest
