package cloudrun

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

// Cloud Run fails a revision whose service account may not read a secret it references with the reason
// SECRETS_ACCESS_CHECK_FAILED and a message such as
//
//	spec.template.spec.containers[0].env[21].value_from.secret_key_ref.name: Permission denied on secret:
//	projects/376382502266/secrets/NAME/versions/latest for Revision service account ACCOUNT. The service
//	account used must be granted the 'Secret Manager Secret Accessor' role ...
//
// (as reported in https://github.com/getsentry/eng-pipes/pull/893).
var secretDenied = regexp.MustCompile(`Permission denied on secret: projects/([^/\s]+)/secrets/([^/\s]+)/versions/\S+ for Revision service account (\S+?)\.(?:\s|$)`)

// SecretAccessError is a revision Cloud Run refused because its service account may not read a secret.
type SecretAccessError struct {
	Account string
	Project string // the secret's project, by ID where it is known
	Secret  string
	Err     *RevisionError
}

func (e *SecretAccessError) Error() string {
	return fmt.Sprintf("Cloud Run refused the revision: its service account %s may not read secret %s of project %s. Grant it access with: %s\n%v",
		e.Account, e.Secret, e.Project, secrets.GrantCommand(e.Project, e.Secret, e.Account), e.Err)
}

func (e *SecretAccessError) Unwrap() error { return e.Err }

// ExplainSecretAccess turns a revision that Cloud Run refused for secret access into a
// *SecretAccessError naming the account, the secret and the command that fixes it; numbers name the
// secret's project by ID where Cloud Run named it by number. Other errors come back unchanged.
func ExplainSecretAccess(err error, numbers ProjectNumbers) error {
	var re *RevisionError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "SECRETS_ACCESS_CHECK_FAILED") {
		return err
	}
	m := secretDenied.FindStringSubmatch(re.Reason)
	if m == nil {
		return err
	}
	project := m[1]
	for id, n := range numbers {
		if n == project {
			project = id
		}
	}
	return &SecretAccessError{Account: m[3], Project: project, Secret: m[2], Err: re}
}
