package gcptest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// registryTokenPath is Artifact Registry's token endpoint, the realm of its challenge on the registry's own host.
const registryTokenPath = "/v2/token"

// registryTokenLifetime is the expires_in the token endpoint reports. Artifact Registry does not document
// its own; the front holds a registry token good for as long as the access token it was exchanged for.
const registryTokenLifetime = 3600

// Users Artifact Registry accepts with an OAuth access token as password: google.NewTokenSourceAuthenticator
// sends _token; docker login documentation uses oauth2accesstoken.
var tokenUsers = []string{"_token", "oauth2accesstoken"}

// A grant is what a registry token stands for: the access token it was exchanged for, and the actions
// (pull, push) on each repository that its scope named.
type grant struct {
	accessToken string
	actions     map[string][]string // image name -> actions
}

func (g grant) allows(name, action string) bool {
	return slices.Contains(g.actions[name], action)
}

// serveToken is the token endpoint (the distribution token protocol): GET with basic auth and the scopes
// wanted (scope=repository:NAME:pull,push, repeated); it answers {"token", "access_token", "expires_in"}.
func (a *ArtifactRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	scopes := parseScopes(r.URL.Query()["scope"])
	token, refused := a.exchange(r, scopes)
	if refused != nil {
		a.count(func(c *RegistryCounts) { c.Refused++ })
		refused.write(w)
		return
	}
	a.count(func(c *RegistryCounts) { c.TokenExchanges++ })
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "access_token": token, "expires_in": registryTokenLifetime})
}

// exchange checks the credentials of a token request and issues a registry token for scopes.
func (a *ArtifactRegistry) exchange(r *http.Request, scopes map[string][]string) (string, *registryRefusal) {
	if r.Method != http.MethodGet {
		return "", &registryRefusal{err: registryError(http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.")}
	}
	permission, resource := permissionFor(r.Host, scopes)
	user, accessToken, ok := r.BasicAuth()
	switch {
	case r.Header.Get("Authorization") == "":
		return "", &registryRefusal{err: registryError(http.StatusForbidden, "DENIED",
			`Unauthenticated request. Unauthenticated requests do not have permission "`+permission+`" on resource "`+resource+`" (or it may not exist)`)}
	case !ok:
		return "", &registryRefusal{err: registryError(http.StatusUnauthorized, "UNAUTHORIZED",
			"Not authorized: the token endpoint wants basic auth with user _token or oauth2accesstoken and an OAuth access token as password.")}
	case !slices.Contains(tokenUsers, user):
		return "", &registryRefusal{err: registryError(http.StatusUnauthorized, "UNAUTHORIZED",
			"Not authorized: user "+user+" is not _token or oauth2accesstoken, and the password must be an OAuth access token.")}
	}
	_, err := a.auth.Authenticate(accessToken)
	switch {
	case errors.Is(err, ErrInsufficientScope):
		return "", &registryRefusal{err: registryError(http.StatusForbidden, "DENIED", `Permission "`+permission+`" denied: `+msgScope)}
	case err != nil:
		return "", &registryRefusal{err: registryError(http.StatusUnauthorized, "UNAUTHORIZED", "The access token is invalid or has expired.")}
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	token := "ar." + hex.EncodeToString(b)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.grants[token] = grant{accessToken: accessToken, actions: scopes}
	return token, nil
}

// authorize checks a registry request's credentials: a registry token from the token endpoint whose scope
// covers the request, or an OAuth access token sent as Bearer, which Artifact Registry's Docker API page
// documents for curl. Anything else gets the challenge that sends clients to the token endpoint.
func (a *ArtifactRegistry) authorize(r *http.Request, name string) *registryRefusal {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case scheme == "":
		return challenge(r, "", "Unauthenticated request. Unauthenticated requests do not have permission \"artifactregistry.repositories.downloadArtifacts\" on this resource.")
	case !strings.EqualFold(scheme, "Bearer"):
		return challenge(r, "", "Not authorized: registry requests take a Bearer token; exchange the credentials for one at "+realm(r)+".")
	}
	a.mu.Lock()
	g, isGrant := a.grants[cred]
	a.mu.Unlock()
	if !isGrant {
		g.accessToken = cred
	}
	_, err := a.auth.Authenticate(g.accessToken)
	switch {
	case errors.Is(err, ErrInsufficientScope):
		return &registryRefusal{err: registryError(http.StatusForbidden, "DENIED", `Permission "artifactregistry.repositories.downloadArtifacts" denied: `+msgScope)}
	case err != nil:
		return challenge(r, "", "The access token is invalid or has expired.")
	}
	if !isGrant || name == "" {
		return nil
	}
	action := "push"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		action = "pull"
	}
	if !g.allows(name, action) {
		scope := "repository:" + name + ":" + action
		return challenge(r, scope, "The registry token does not grant "+scope+"; ask the token endpoint for that scope.")
	}
	return nil
}

// realm is the token endpoint on the host the request came to.
func realm(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + registryTokenPath
}

// challenge is a 401 with Artifact Registry's challenge: a Bearer realm and no service parameter. A scope
// the token lacked is named as the distribution token protocol names it.
func challenge(r *http.Request, scope, msg string) *registryRefusal {
	c := `Bearer realm="` + realm(r) + `"`
	if scope != "" {
		c += `,scope="` + scope + `",error="insufficient_scope"`
	}
	return &registryRefusal{err: registryError(http.StatusUnauthorized, "UNAUTHORIZED", msg), challenge: c}
}

// parseScopes reads repository:NAME:ACTIONS scopes (one per parameter, or several separated by spaces);
// other resource types grant nothing here.
func parseScopes(values []string) map[string][]string {
	out := map[string][]string{}
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			rest, ok := strings.CutPrefix(s, "repository:")
			i := strings.LastIndex(rest, ":")
			if !ok || i < 0 {
				continue
			}
			name := rest[:i]
			out[name] = append(out[name], strings.Split(rest[i+1:], ",")...)
		}
	}
	return out
}

// permissionFor names the permission and resource a token request is about, for Artifact Registry's
// refusals: uploadArtifacts when a scope asks for push, on the repository of the first scope's image.
func permissionFor(host string, scopes map[string][]string) (permission, resource string) {
	permission = "artifactregistry.repositories.downloadArtifacts"
	names := make([]string, 0, len(scopes))
	for name, actions := range scopes {
		names = append(names, name)
		if slices.Contains(actions, "push") {
			permission = "artifactregistry.repositories.uploadArtifacts"
		}
	}
	slices.Sort(names)
	resource = "projects/-/locations/-/repositories/-"
	if len(names) > 0 {
		if project, repository, ok := splitImage(names[0]); ok {
			location := "-"
			if loc, ok := strings.CutSuffix(strings.Split(host, ":")[0], "-docker.pkg.dev"); ok {
				location = loc
			}
			resource = "projects/" + project + "/locations/" + location + "/repositories/" + repository
		}
	}
	return permission, resource
}
