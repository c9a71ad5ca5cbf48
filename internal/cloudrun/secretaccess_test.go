package cloudrun

import (
	"errors"
	"strings"
	"testing"
)

func TestExplainSecretAccess(t *testing.T) {
	t.Parallel()
	denied := "spec.template.spec.containers[0].env[3].value_from.secret_key_ref.name: Permission denied on secret: projects/376382502266/secrets/DB_url/versions/latest " +
		"for Revision service account mlflow@p.iam.gserviceaccount.com. The service account used must be granted the 'Secret Manager Secret Accessor' role " +
		"(roles/secretmanager.secretAccessor) at the secret, project or higher level. (SECRETS_ACCESS_CHECK_FAILED)"
	cases := []struct {
		name    string
		err     error
		numbers ProjectNumbers
		want    string // the command in the error; empty when the error comes back unchanged
	}{
		{name: "project number known", err: &RevisionError{Revision: "r", Reason: denied}, numbers: ProjectNumbers{"my-project": "376382502266"},
			want: "gcloud secrets add-iam-policy-binding DB_url --project=my-project --member=serviceAccount:mlflow@p.iam.gserviceaccount.com --role=roles/secretmanager.secretAccessor"},
		{name: "project number unknown", err: &RevisionError{Revision: "r", Reason: denied},
			want: "gcloud secrets add-iam-policy-binding DB_url --project=376382502266 --member=serviceAccount:mlflow@p.iam.gserviceaccount.com --role=roles/secretmanager.secretAccessor"},
		{name: "a missing secret", err: &RevisionError{Reason: "spec.template.spec.volumes[0].secret.secret_name: Secret projects/1/secrets/x/versions/latest was not found (SECRETS_ACCESS_CHECK_FAILED)"}},
		{name: "another failure", err: &RevisionError{Reason: "The user-provided container failed to start (HEALTH_CHECK_CONTAINER_ERROR)"}},
		{name: "not a revision", err: errors.New("Permission denied on secret: projects/1/secrets/x/versions/1 for Revision service account a@b. ")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ExplainSecretAccess(tc.err, tc.numbers)
			var se *SecretAccessError
			if tc.want == "" {
				if got != tc.err {
					t.Fatalf("got %v, want the error unchanged", got)
				}
				return
			}
			var re *RevisionError
			if !errors.As(got, &se) || !errors.As(got, &re) || !strings.Contains(got.Error(), tc.want) || se.Account != "mlflow@p.iam.gserviceaccount.com" || se.Secret != "DB_url" {
				t.Fatalf("got %v (%+v), want a SecretAccessError with %q that unwraps to the RevisionError", got, se, tc.want)
			}
		})
	}
}
