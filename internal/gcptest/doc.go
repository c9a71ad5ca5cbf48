// Package gcptest holds stand-ins for the Google Cloud APIs the action talks to, for its unit tests, its
// end-to-end test and the local demo: an OAuth token endpoint with STS and IAM Credentials
// (TokenServer), Secret Manager (SecretManager), the Cloud Run Admin API v2 with its long-running
// operations (Run) and an Artifact Registry front for a Docker registry (ArtifactRegistry).
//
// Each stand-in serves on 127.0.0.1 and is reached by the real Google client libraries: the gRPC ones
// through option.WithGRPCConn over plaintext loopback with per-RPC bearer credentials, the token server
// through golang.org/x/oauth2/google reading the credential files it writes. They behave as Google's APIs
// document, not as a mock that accepts anything: every call must carry an access token the token server
// issued, missing resources are NOT_FOUND, duplicates ALREADY_EXISTS, stale etags ABORTED, Cloud Run
// operations finish later and revisions can fail. Each records what it saw (calls per method, writes,
// token grants, uploads) so that tests can assert on the traffic, not only on the outcome.
//
// Every stand-in has a constructor that returns a value with Close, for use outside tests (the demo), and a
// Start helper that takes a testing.TB and closes it at the end of the test. Start builds all of them,
// wired to one another.
//
// Where the stand-ins follow Google's observable behaviour rather than a document:
//   - Secret Manager returns names with the project number where the caller used the project ID.
//   - Cloud Run returns a Service's own name and its latest revisions in the form the caller used, and
//     Revision resources with the project number; compare names by their last segments.
//   - A failed revision fails its operation with FAILED_PRECONDITION and the message
//     "Revision 'NAME' is not ready and cannot serve traffic. ..." (the error Cloud Run's clients report).
package gcptest
