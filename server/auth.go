package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// wwwAuthenticate asks browsers and clients for basic credentials (RFC 7617), in UTF-8.
const wwwAuthenticate = `Basic realm="mlflow", charset="UTF-8"`

// basicAuth checks HTTP basic credentials against the configured pair.
type basicAuth struct {
	user, pass [sha256.Size]byte
}

func newBasicAuth(user, pass string) *basicAuth {
	return &basicAuth{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(pass))}
}

// allowed reports whether the Authorization header value carries the configured credentials. It compares
// fixed-length digests in constant time and evaluates both before deciding, so that neither the timing nor
// the outcome tells which of user and password was wrong, or how long they are.
func (b *basicAuth) allowed(header string) bool {
	user, pass, ok := parseBasicAuth(header)
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	match := subtle.ConstantTimeCompare(u[:], b.user[:]) & subtle.ConstantTimeCompare(p[:], b.pass[:])
	return ok && match == 1
}

// parseBasicAuth decodes an Authorization header value of the Basic scheme (case-insensitive, RFC 7617):
// base64 of user ":" password.
func parseBasicAuth(header string) (user, pass string, ok bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", false
	}
	return user, pass, true
}

// unauthorized answers 401 with the challenge that makes browsers prompt and clients retry with credentials.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	http.Error(w, "Unauthorized: this MLflow server needs HTTP basic auth; MLflow clients take it from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.", http.StatusUnauthorized)
}
