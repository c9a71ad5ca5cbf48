package gcptest

import (
	"context"
	"hash/crc32"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
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
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: "projects/my-project/secrets/password/versions/2"}); err != nil {
		t.Fatal(err)
	}
	// A secret without versions, as `gcloud secrets create` without data leaves it.
	sm.mu.Lock()
	sm.secrets["projects/111/secrets/empty"] = &storedSecret{pb: &secretmanagerpb.Secret{Name: "projects/111/secrets/empty"}}
	sm.mu.Unlock()

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
}

func TestSecretManagerMetadata(t *testing.T) {
	t.Parallel()
	sm, c := secretManagerClient(t)
	ctx := context.Background()
	for _, data := range []string{"a", "b", "c"} {
		sm.AddSecret("my-project", "token", []byte(data))
	}
	sec, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: "projects/my-project/secrets/token"})
	if err != nil || sec.Name != "projects/111/secrets/token" || sec.CreateTime == nil || sec.Etag == "" || sec.GetReplication().GetAutomatic() == nil {
		t.Errorf("GetSecret = %v, %v", sec, err)
	}
	if _, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: "projects/my-project/secrets/absent"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetSecret(absent) = %v, want NotFound", err)
	}

	v2, err := c.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: "projects/my-project/secrets/token/versions/2"})
	if err != nil || v2.State != secretmanagerpb.SecretVersion_ENABLED {
		t.Fatalf("GetSecretVersion = %v, %v", v2, err)
	}
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.Name, Etag: `"stale"`}); status.Code(err) != codes.Aborted {
		t.Errorf("DisableSecretVersion with a stale etag = %v, want Aborted", err)
	}
	disabled, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v2.Name, Etag: v2.Etag})
	if err != nil || disabled.State != secretmanagerpb.SecretVersion_DISABLED || disabled.Etag == v2.Etag {
		t.Errorf("DisableSecretVersion with the current etag = %v, %v", disabled, err)
	}
	if got, err := c.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: v2.Name}); err != nil || got.State != secretmanagerpb.SecretVersion_DISABLED {
		t.Errorf("GetSecretVersion after disabling = %v, %v", got, err)
	}
	if got := sm.CallCounts()["GetSecretVersion"]; got != 2 {
		t.Errorf("GetSecretVersion calls = %d, want 2", got)
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

// TestSecretManagerIAMPolicy checks a secret's policy: empty until set, replaced whole with an etag for
// read-modify-write, GrantSecretRole adding to it, and PERMISSION_DENIED for a caller without
// secretmanager.secrets.getIamPolicy.
func TestSecretManagerIAMPolicy(t *testing.T) {
	t.Parallel()
	sm, c := secretManagerClient(t)
	ctx := context.Background()
	sm.AddSecret("my-project", "db-url", []byte("x"))
	const resource = "projects/my-project/secrets/db-url"
	const member = "serviceAccount:mlflow@my-project.iam.gserviceaccount.com"

	empty, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: resource})
	if err != nil || len(empty.GetBindings()) != 0 {
		t.Fatalf("a new secret's policy = %v, %v; want an empty policy: nobody holds a role on it", empty, err)
	}
	sm.GrantSecretRole("my-project", "db-url", member, "roles/secretmanager.secretAccessor")
	read, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: "projects/111/secrets/db-url"})
	if err != nil || len(read.GetBindings()) != 1 || read.Bindings[0].Members[0] != member {
		t.Fatalf("after GrantSecretRole the policy is %v, %v", read, err)
	}
	read.Bindings[0].Members = append(read.Bindings[0].Members, "group:ml@example.com")
	written, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: resource, Policy: read})
	if err != nil || len(written.Bindings[0].Members) != 2 || string(written.Etag) == string(read.Etag) {
		t.Fatalf("SetIamPolicy = %v, %v; want both members and a new etag", written, err)
	}
	if _, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: resource, Policy: read}); status.Code(err) != codes.Aborted {
		t.Errorf("a write with the stale etag: %v, want ABORTED", err)
	}
	bad := &iampb.Policy{Bindings: []*iampb.Binding{{Role: "roles/run.invoker", Members: []string{member}}}}
	if _, err := c.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: resource, Policy: bad}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a Cloud Run role on a secret: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := c.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: "projects/my-project/secrets/absent"}); status.Code(err) != codes.NotFound {
		t.Errorf("the policy of a missing secret: %v, want NOT_FOUND", err)
	}

	tokens := StartTokenServer(t)
	narrow := StartSecretManager(t, tokens, WithProject("my-project", "111"), WithDeniedPermissions("secretmanager.secrets.getIamPolicy"))
	narrow.AddSecret("my-project", "db-url", []byte("x"))
	nc, err := secretmanager.NewClient(ctx, option.WithGRPCConn(dial(t, narrow.Addr(), serviceAccount(t, tokens))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: resource})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "Permission 'secretmanager.secrets.getIamPolicy' denied for resource 'projects/my-project/secrets/db-url'") {
		t.Errorf("a caller without getIamPolicy: %v, want PERMISSION_DENIED naming the permission", err)
	}
}
