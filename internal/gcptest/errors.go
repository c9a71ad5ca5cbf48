package gcptest

import (
	"encoding/json"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// A refusal is a stand-in's "no" in Google's words: a gRPC code, a message and, rarely, error details.
// gRPC handlers return it as their error (grpc reads it through GRPCStatus); HTTP handlers write it as
// the JSON error of Google's REST APIs (googleError). Every refusal of the gRPC stand-ins is made by
// refuse or one of the helpers below it, so that Google's wording lives here.
type refusal struct {
	code    codes.Code
	msg     string
	details []protoadapt.MessageV1
}

func refuse(code codes.Code, format string, args ...any) *refusal {
	return &refusal{code: code, msg: fmt.Sprintf(format, args...)}
}

func (r *refusal) Error() string { return r.code.String() + ": " + r.msg }

// GRPCStatus makes a refusal a gRPC status error.
func (r *refusal) GRPCStatus() *status.Status {
	st := status.New(r.code, r.msg)
	if withDetails, err := st.WithDetails(r.details...); err == nil {
		st = withDetails
	}
	return st
}

// invalid is INVALID_ARGUMENT, Google's answer to a request it cannot accept as written.
func invalid(format string, args ...any) *refusal {
	return refuse(codes.InvalidArgument, format, args...)
}

// The two wordings Google uses for a project the caller cannot see (or that does not exist).
func runPermissionDenied(permission, resource string) *refusal {
	return refuse(codes.PermissionDenied, "Permission '%s' denied on resource '%s' (or resource may not exist).", permission, resource)
}

func secretPermissionDenied(permission, resource string) *refusal {
	return refuse(codes.PermissionDenied, "Permission '%s' denied for resource '%s' (or it may not exist).", permission, resource)
}

// runNotFound is Cloud Run's NOT_FOUND for a service or revision, naming the project as the caller did.
func runNotFound(kind, id, region, project string) *refusal {
	return refuse(codes.NotFound, "Resource '%s' of kind '%s' in region '%s' in project '%s' does not exist.", id, kind, region, project)
}

// badSecretName is Secret Manager's answer to a name it cannot parse.
func badSecretName(name string) *refusal {
	return invalid("Resource ID [%s] is not in a valid format.", name)
}

// An httpError is how an HTTP stand-in says no: the status and the JSON body the real endpoint sends.
type httpError struct {
	status int
	body   any
}

func (e *httpError) write(w http.ResponseWriter) { writeJSON(w, e.status, e.body) }

// restStatus gives the HTTP status and status name that Google's REST APIs use for a gRPC code.
var restStatus = map[codes.Code]struct {
	http int
	name string
}{
	codes.InvalidArgument:    {http.StatusBadRequest, "INVALID_ARGUMENT"},
	codes.FailedPrecondition: {http.StatusBadRequest, "FAILED_PRECONDITION"},
	codes.Unauthenticated:    {http.StatusUnauthorized, "UNAUTHENTICATED"},
	codes.PermissionDenied:   {http.StatusForbidden, "PERMISSION_DENIED"},
	codes.NotFound:           {http.StatusNotFound, "NOT_FOUND"},
	codes.AlreadyExists:      {http.StatusConflict, "ALREADY_EXISTS"},
	codes.Aborted:            {http.StatusConflict, "ABORTED"},
	codes.Internal:           {http.StatusInternalServerError, "INTERNAL"},
}

// googleError is a refusal as Google's REST APIs write it: {"error": {"code", "message", "status"}}.
func googleError(r *refusal) *httpError {
	st, ok := restStatus[r.code]
	if !ok {
		st = restStatus[codes.Internal]
	}
	return &httpError{st.http, map[string]any{"error": map[string]any{"code": st.http, "message": r.msg, "status": st.name}}}
}

// oauthError is an OAuth 2.0 token endpoint's error (RFC 6749 section 5.2), as Google's and STS's are.
func oauthError(status int, code, description string) *httpError {
	return &httpError{status, map[string]string{"error": code, "error_description": description}}
}

// registryError is the Docker registry API's error, as Artifact Registry writes it.
func registryError(status int, code, msg string) *httpError {
	return &httpError{status, map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}}}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
