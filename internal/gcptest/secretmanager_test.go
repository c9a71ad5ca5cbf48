package gcptest

import (
	"context"
	"hash/crc32"
	"strings"
	"testing"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// secretManagerClient starts a token server and a Secret Manager knowing my-project (number 111) and
// returns the real client, authenticated with a service-account key.
func secretManagerClient(t *testing.T) (*SecretManager, *secretmanager.Client) {
	t.Helper()
	tokens := StartTokenServer(t)
	sm := StartSecretManager(t, tokens, WithProject("my-project", "111"))
	c, err := secretmanager.NewClient(context.Background(), option.WithGRPCConn(dial(t, sm.Addr(), serviceAccount(t, tokens))))
	if err != nil {
		t.Fatal(err)
	}
	return sm, c
}

func TestSecretManagerAccess(t *testing.T) {
	t.Parallel()
	sm, c := secretManagerClient(t)
	ctx := context.Background()

	if got := sm.AddSecret("my-project", "db-url", []byte("postgresql://old")); got != "projects/111/secrets/db-url/versions/1" {
		t.Errorf("AddSecret = %q, want the version name with the project number", got)
	}
	sm.AddSecret("111", "db-url", []byte("postgresql://new"))

	resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db-url/versions/latest"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Name != "projects/111/secrets/db-url/versions/2" || string(resp.Payload.Data) != "postgresql://new" {
		t.Errorf("latest = %s %q, want version 2 under the project number", resp.Name, resp.Payload.Data)
	}
	if want := int64(crc32.Checksum(resp.Payload.Data, crc32.MakeTable(crc32.Castagnoli))); resp.Payload.GetDataCrc32C() != want {
		t.Errorf("data_crc32c = %d, want %d", resp.Payload.GetDataCrc32C(), want)
	}
	v1, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/db-url/versions/1"})
	if err != nil || string(v1.Payload.Data) != "postgresql://old" {
		t.Errorf("version 1 = %v, %v", v1, err)
	}
	if got := sm.Calls("AccessSecretVersion"); got != 2 {
		t.Errorf("Calls(AccessSecretVersion) = %d, want 2", got)
	}
}

func TestSecretManagerErrors(t *testing.T) {
	t.Parallel()
	sm, c := secretManagerClient(t)
	ctx := context.Background()
	sm.AddSecret("my-project", "password", []byte("v1"))
	sm.AddSecret("my-project", "password", []byte("v2"))
	sm.AddSecret("my-project", "gone", []byte("x"))
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: "projects/my-project/secrets/password/versions/2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: "projects/my-project/secrets/gone/versions/1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/my-project", SecretId: "empty", Secret: &secretmanagerpb.Secret{}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		version  string
		wantCode codes.Code
		wantMsg  string
	}{
		{"missing secret", "projects/my-project/secrets/nope/versions/latest", codes.NotFound, "Secret [projects/111/secrets/nope] not found or has no versions."},
		{"secret without versions", "projects/my-project/secrets/empty/versions/latest", codes.NotFound, "not found or has no versions"},
		{"missing version", "projects/my-project/secrets/password/versions/9", codes.NotFound, "Secret Version [projects/111/secrets/password/versions/9] not found."},
		{"latest is disabled", "projects/my-project/secrets/password/versions/latest", codes.FailedPrecondition, "Secret Version [projects/111/secrets/password/versions/2] is in DISABLED state."},
		{"destroyed", "projects/my-project/secrets/gone/versions/1", codes.FailedPrecondition, "is in DESTROYED state"},
		{"unknown project", "projects/other/secrets/password/versions/1", codes.PermissionDenied, "Permission 'secretmanager.versions.access' denied"},
		{"malformed name", "my-project/password", codes.InvalidArgument, "is not in a valid format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: tt.version})
			if status.Code(err) != tt.wantCode || !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("AccessSecretVersion(%s) = %v, want %v containing %q", tt.version, err, tt.wantCode, tt.wantMsg)
			}
		})
	}

	if v, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/my-project/secrets/password/versions/1"}); err != nil || string(v.Payload.Data) != "v1" {
		t.Errorf("the enabled older version = %v, %v", v, err)
	}
	if _, err := c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: "projects/my-project/secrets/gone/versions/1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("enabling a destroyed version = %v, want FailedPrecondition", err)
	}
}

func TestSecretManagerSecrets(t *testing.T) {
	t.Parallel()
	sm, c := secretManagerClient(t)
	ctx := context.Background()

	sec, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent:   "projects/my-project",
		SecretId: "token",
		Secret:   &secretmanagerpb.Secret{Replication: automaticReplication()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Name != "projects/111/secrets/token" || sec.CreateTime == nil || sec.Etag == "" {
		t.Errorf("created secret = %v", sec)
	}
	_, err = c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/my-project", SecretId: "token", Secret: &secretmanagerpb.Secret{}})
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("second CreateSecret = %v, want AlreadyExists", err)
	}
	if _, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/my-project", SecretId: "bad name!"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CreateSecret with an invalid ID = %v, want InvalidArgument", err)
	}
	if _, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: "projects/my-project/secrets/absent"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetSecret(absent) = %v, want NotFound", err)
	}

	for _, data := range []string{"a", "b", "c"} {
		if _, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/my-project/secrets/token", Payload: &secretmanagerpb.SecretPayload{Data: []byte(data)}}); err != nil {
			t.Fatal(err)
		}
	}
	wrong := int64(1)
	_, err = c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/my-project/secrets/token", Payload: &secretmanagerpb.SecretPayload{Data: []byte("d"), DataCrc32C: &wrong}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("AddSecretVersion with a wrong checksum = %v, want InvalidArgument", err)
	}

	v2, err := c.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: "projects/my-project/secrets/token/versions/2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.Name, Etag: `"stale"`}); status.Code(err) != codes.Aborted {
		t.Errorf("DisableSecretVersion with a stale etag = %v, want Aborted", err)
	}
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.Name, Etag: v2.Etag}); err != nil {
		t.Errorf("DisableSecretVersion with the current etag: %v", err)
	}

	var all, enabled []string
	for filter, into := range map[string]*[]string{"": &all, "state:ENABLED": &enabled} {
		it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: "projects/my-project/secrets/token", Filter: filter, PageSize: 2})
		for {
			v, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			*into = append(*into, v.Name[strings.LastIndex(v.Name, "/")+1:])
		}
	}
	if strings.Join(all, ",") != "3,2,1" || strings.Join(enabled, ",") != "3,1" {
		t.Errorf("versions = %v, enabled = %v; want newest first", all, enabled)
	}
	if got := sm.CallCounts()["ListSecretVersions"]; got != 3 {
		t.Errorf("ListSecretVersions calls = %d, want 3 (two pages, one page)", got)
	}
}

func TestSecretManagerNeedsCredentials(t *testing.T) {
	t.Parallel()
	tokens := StartTokenServer(t)
	sm := StartSecretManager(t, tokens)
	sm.AddSecret(DefaultProjectID, "s", []byte("x"))
	c, err := secretmanager.NewClient(context.Background(), option.WithGRPCConn(dial(t, sm.Addr(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AccessSecretVersion(context.Background(), &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/test-project/secrets/s/versions/1"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("call without a token = %v, want Unauthenticated", err)
	}
	if got := sm.Calls("AccessSecretVersion"); got != 0 {
		t.Errorf("an unauthenticated call was counted: %d", got)
	}
}
