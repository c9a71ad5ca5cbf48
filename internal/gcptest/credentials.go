package gcptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
)

// This file holds the credential files the token server writes: service-account keys, and the
// external_account files of Workload Identity Federation for GitHub Actions.

// ServiceAccountKeyJSON creates a key for the service account email of project and returns its JSON key
// file, whose token_uri is this server. The server verifies the JWTs signed with it. An empty email means
// deployer@PROJECT.iam.gserviceaccount.com.
func (s *TokenServer) ServiceAccountKeyJSON(projectID, email string) ([]byte, error) {
	if email == "" {
		email = "deployer@" + projectID + ".iam.gserviceaccount.com"
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate a key for %s: %w", email, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the key for %s: %w", email, err)
	}
	keyID := randomHex(20)
	clientID, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(21), nil))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[keyID] = serviceAccountKey{email: email, pub: &key.PublicKey}
	s.mu.Unlock()
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              keyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   clientID.String(),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.TokenURL(),
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		"universe_domain":             "googleapis.com",
	}, "", "  ")
}

// ServiceAccountKey is ServiceAccountKeyJSON written to a file in dir; it returns the file's path.
func (s *TokenServer) ServiceAccountKey(dir, projectID, email string) (string, error) {
	b, err := s.ServiceAccountKeyJSON(projectID, email)
	if err != nil {
		return "", err
	}
	return writeCredentials(dir, "sa-key-", b)
}

// WorkloadIdentity describes a Workload Identity Federation provider for GitHub Actions, and the run of a
// workflow that authenticates through it.
type WorkloadIdentity struct {
	ProjectNumber  string // of the pool's project; default DefaultProjectNumber
	Pool           string // workload identity pool ID; default "github"
	Provider       string // provider ID; default "github"
	ServiceAccount string // if set, the credentials impersonate this service account
	Subject        string // the OIDC token's sub; default "repo:octo-org/octo-repo:ref:refs/heads/main"
}

func (w WorkloadIdentity) withDefaults() WorkloadIdentity {
	if w.ProjectNumber == "" {
		w.ProjectNumber = DefaultProjectNumber
	}
	if w.Pool == "" {
		w.Pool = "github"
	}
	if w.Provider == "" {
		w.Provider = "github"
	}
	if w.Subject == "" {
		w.Subject = "repo:octo-org/octo-repo:ref:refs/heads/main"
	}
	return w
}

// providerName is projects/N/locations/global/workloadIdentityPools/P/providers/PR.
func (w WorkloadIdentity) providerName() string {
	return "projects/" + w.ProjectNumber + "/locations/global/workloadIdentityPools/" + w.Pool + "/providers/" + w.Provider
}

// stsAudience is the audience of the STS exchange: //iam.googleapis.com/projects/N/....
func (w WorkloadIdentity) stsAudience() string { return "//iam.googleapis.com/" + w.providerName() }

// oidcAudience is the provider's default allowed audience of OIDC tokens: https://iam.googleapis.com/....
func (w WorkloadIdentity) oidcAudience() string {
	return "https://iam.googleapis.com/" + w.providerName()
}

// ExternalAccountJSON returns an external_account credentials file as google-github-actions/auth writes it
// for Workload Identity Federation, with every URL pointing at this server: the credential source is the
// OIDC endpoint with a fresh request token, token_url the STS endpoint, and, when w names a service
// account, service_account_impersonation_url the generateAccessToken endpoint.
func (s *TokenServer) ExternalAccountJSON(w WorkloadIdentity) ([]byte, error) {
	w = w.withDefaults()
	requestToken := randomToken("")
	s.mu.Lock()
	s.requests[requestToken] = w
	s.providers[w.stsAudience()] = w
	s.mu.Unlock()

	source := url.Values{"api-version": {"2.0"}, "audience": {w.oidcAudience()}}
	creds := map[string]any{
		"type":               "external_account",
		"audience":           w.stsAudience(),
		"subject_token_type": jwtTokenType,
		"token_url":          s.srv.url + stsPath,
		"credential_source": map[string]any{
			"url":     s.srv.url + oidcPath + "?" + source.Encode(),
			"headers": map[string]string{"Authorization": "Bearer " + requestToken},
			"format":  map[string]string{"type": "json", "subject_token_field_name": "value"},
		},
	}
	if w.ServiceAccount != "" {
		creds["service_account_impersonation_url"] = s.srv.url + impersonatePath + w.ServiceAccount + ":generateAccessToken"
	}
	return json.Marshal(creds)
}

// ExternalAccountFile is ExternalAccountJSON written to a gha-creds-*.json file in dir; it returns its path.
func (s *TokenServer) ExternalAccountFile(dir string, w WorkloadIdentity) (string, error) {
	b, err := s.ExternalAccountJSON(w)
	if err != nil {
		return "", err
	}
	return writeCredentials(dir, "gha-creds-", b)
}

func writeCredentials(dir, prefix string, b []byte) (string, error) {
	path := filepath.Join(dir, prefix+randomHex(6)+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write credentials: %w", err)
	}
	return path, nil
}
