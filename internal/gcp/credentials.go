package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// Scope covers Cloud Run, Secret Manager and Artifact Registry.
const Scope = "https://www.googleapis.com/auth/cloud-platform"

// CredentialsEnv names the credentials file, as google-github-actions/auth sets it.
const CredentialsEnv = "GOOGLE_APPLICATION_CREDENTIALS"

const authHint = "run google-github-actions/auth before this step, after actions/checkout (checkout empties the " +
	"workspace the credentials file is written to) and without create_credentials_file: false"

// CredentialsError is a credentials file that is missing, unreadable or refused.
type CredentialsError struct {
	Path string
	Err  error
}

func (e *CredentialsError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s is not set: %s", CredentialsEnv, authHint)
	}
	return fmt.Sprintf("credentials file %s (%s): %v", e.Path, CredentialsEnv, e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// Credentials loads Application Default Credentials from the file that GOOGLE_APPLICATION_CREDENTIALS
// names: a service-account key, or a Workload Identity Federation (external_account) configuration. It
// fetches a first token, so that a credential that cannot work fails here, before anything is built.
func Credentials(ctx context.Context, getenv func(string) string) (oauth2.TokenSource, error) {
	path := getenv(CredentialsEnv)
	if path == "" {
		return nil, &CredentialsError{}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &CredentialsError{Path: path, Err: fmt.Errorf("cannot read it (%w): %s", err, authHint)}
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, &CredentialsError{Path: path, Err: fmt.Errorf("is not a JSON credentials file (%v): %s", err, authHint)}
	}
	kind := google.CredentialsType(head.Type)
	switch kind {
	case google.ServiceAccount, google.ExternalAccount, google.ImpersonatedServiceAccount, google.AuthorizedUser:
	default:
		return nil, &CredentialsError{Path: path, Err: fmt.Errorf("has type %q; use a service-account key (service_account) or Workload Identity Federation (external_account)", head.Type)}
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, data, kind, Scope)
	if err != nil {
		return nil, &CredentialsError{Path: path, Err: fmt.Errorf("is not usable %s credentials: %w", kind, err)}
	}
	ts := oauth2.ReuseTokenSource(nil, creds.TokenSource)
	if _, err := ts.Token(); err != nil {
		return nil, &CredentialsError{Path: path, Err: fmt.Errorf("could not get an access token with these %s credentials: %w", kind, tokenHint(err))}
	}
	return ts, nil
}

// tokenHint keeps the token endpoint's own words, which say what is wrong (a disabled key, a
// Workload Identity provider that refuses this repository, ...).
func tokenHint(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorDescription != "" {
		return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
	}
	return err
}
