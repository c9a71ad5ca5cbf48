package gcptest

import (
	"context"
	"fmt"
	"hash/crc32"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// SecretManager stands in for the Secret Manager API (google.cloud.secretmanager.v1) over gRPC: secrets
// and their versions, with `latest` and aliases, the ENABLED and DISABLED states and Google's errors.
// Tests add secrets with AddSecret; the API reads them and disables versions.
// Reach it with secretmanager.NewClient(ctx, option.WithGRPCConn(conn)) for a connection to Addr that
// sends an access token its Authenticator accepts.
type SecretManager struct {
	cfg  *settings
	grpc *grpcServer

	callLog // Calls and CallCounts

	mu      sync.Mutex
	secrets map[string]*storedSecret // projects/NUMBER/secrets/ID -> secret
}

type storedSecret struct {
	pb       *secretmanagerpb.Secret
	versions []*storedVersion // versions[i] is version i+1
	policy   *iampb.Policy    // nil until set: nobody holds a role on the secret itself
}

type storedVersion struct {
	pb      *secretmanagerpb.SecretVersion
	payload []byte
}

var secretIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// NewSecretManager starts a Secret Manager on a loopback port; auth decides which tokens may call it.
// Close stops it.
func NewSecretManager(auth Authenticator, opts ...Option) (*SecretManager, error) {
	s := &SecretManager{cfg: newSettings(opts), secrets: map[string]*storedSecret{}}
	srv, err := serveGRPC(auth, func(g *grpc.Server) {
		secretmanagerpb.RegisterSecretManagerServiceServer(g, secretManagerAPI{s: s})
	})
	if err != nil {
		return nil, err
	}
	s.grpc = srv
	return s, nil
}

// StartSecretManager starts a Secret Manager that is closed when the test ends.
func StartSecretManager(t testing.TB, auth Authenticator, opts ...Option) *SecretManager {
	t.Helper()
	s, err := NewSecretManager(auth, opts...)
	return started(t, s, err)
}

// Addr is the host:port the gRPC server listens on.
func (s *SecretManager) Addr() string { return s.grpc.addr }

// Close stops the server.
func (s *SecretManager) Close() { s.grpc.close() }

// AddSecret adds a version holding payload to the secret name of project (an ID or number), creating the
// secret with automatic replication if it does not exist. It returns the version's full name, with the
// project number. It panics for a project the stand-in does not know.
func (s *SecretManager) AddSecret(project, name string, payload []byte) string {
	p, ok := s.cfg.lookupProject(project)
	if !ok {
		panic(fmt.Sprintf("gcptest: AddSecret: unknown project %q (configure it with WithProject)", project))
	}
	if !secretIDPattern.MatchString(name) {
		panic(fmt.Sprintf("gcptest: AddSecret: invalid secret ID %q", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "projects/" + p.number + "/secrets/" + name
	sec, ok := s.secrets[key]
	if !ok {
		sec = &storedSecret{pb: &secretmanagerpb.Secret{Name: key, CreateTime: timestamppb.Now(), Etag: newEtag(),
			Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}}}
		s.secrets[key] = sec
	}
	v := &storedVersion{
		pb: &secretmanagerpb.SecretVersion{
			Name:       key + "/versions/" + strconv.Itoa(len(sec.versions)+1),
			CreateTime: timestamppb.Now(),
			State:      secretmanagerpb.SecretVersion_ENABLED,
			Etag:       newEtag(),
			ReplicationStatus: &secretmanagerpb.ReplicationStatus{ReplicationStatus: &secretmanagerpb.ReplicationStatus_Automatic{
				Automatic: &secretmanagerpb.ReplicationStatus_AutomaticStatus{},
			}},
		},
		payload: slices.Clone(payload),
	}
	sec.versions = append(sec.versions, v)
	return v.pb.Name
}

// secretKey checks a secret's name and returns it as stored, projects/NUMBER/secrets/ID; permission is
// the IAM permission the call needs, for the refusal of an unknown project.
func (s *SecretManager) secretKey(name, permission string) (string, error) {
	parts, ok := splitName(name, "projects", "secrets")
	if !ok || !secretIDPattern.MatchString(parts[3]) {
		return "", badSecretName(name)
	}
	p, ok := s.cfg.lookupProject(parts[1])
	if !ok {
		return "", secretPermissionDenied(permission, name)
	}
	return "projects/" + p.number + "/secrets/" + parts[3], nil
}

// resolveSecret finds the secret a request names. s.mu is held.
func (s *SecretManager) resolveSecret(name, permission string) (*storedSecret, error) {
	key, err := s.secretKey(name, permission)
	if err != nil {
		return nil, err
	}
	sec, ok := s.secrets[key]
	if !ok {
		return nil, refuse(codes.NotFound, "Secret [%s] not found.", key)
	}
	return sec, nil
}

// resolveVersion finds the version a request names: a number, `latest` (the newest version, whatever its
// state) or an alias. s.mu is held.
func (s *SecretManager) resolveVersion(name, permission string) (*storedVersion, error) {
	parts, ok := splitName(name, "projects", "secrets", "versions")
	if !ok {
		return nil, badSecretName(name)
	}
	key, err := s.secretKey(strings.Join(parts[:4], "/"), permission)
	if err != nil {
		return nil, err
	}
	sec, ref := s.secrets[key], parts[5]
	switch {
	case ref == "latest" && (sec == nil || len(sec.versions) == 0):
		return nil, refuse(codes.NotFound, "Secret [%s] not found or has no versions.", key)
	case sec == nil:
		return nil, refuse(codes.NotFound, "Secret [%s] not found.", key)
	}
	n, err := strconv.Atoi(ref)
	switch {
	case ref == "latest":
		n = len(sec.versions)
	case err == nil:
		if n < 1 {
			return nil, badSecretName(name)
		}
	default:
		alias, ok := sec.pb.GetVersionAliases()[ref]
		if !ok {
			return nil, refuse(codes.NotFound, "Secret Version [%s/versions/%s] not found.", key, ref)
		}
		n = int(alias)
	}
	if n > len(sec.versions) {
		return nil, refuse(codes.NotFound, "Secret Version [%s/versions/%d] not found.", key, n)
	}
	return sec.versions[n-1], nil
}

// checkAccess reports why a workload could not read version (a number, latest or alias) of secret, named
// by its ID in project or by its full name, or nil if it could. Cloud Run uses it for secret references.
func (s *SecretManager) checkAccess(project, secret, version string) error {
	if version == "" {
		version = "latest"
	}
	name := secret
	if !strings.HasPrefix(secret, "projects/") {
		name = "projects/" + project + "/secrets/" + secret
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.resolveVersion(name+"/versions/"+version, "secretmanager.versions.access")
	if err != nil {
		return err
	}
	return usable(v)
}

func usable(v *storedVersion) error {
	if v.pb.State != secretmanagerpb.SecretVersion_ENABLED {
		return refuse(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", v.pb.Name, v.pb.State)
	}
	return nil
}

// secretManagerAPI is the gRPC face of a SecretManager: the methods the action and its tests call. The
// others answer UNIMPLEMENTED.
type secretManagerAPI struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	s *SecretManager
}

var _ secretmanagerpb.SecretManagerServiceServer = secretManagerAPI{}

// begin counts a call and takes the lock; the caller defers the returned unlock.
func (a secretManagerAPI) begin(method string) func() {
	a.s.count(method)
	a.s.mu.Lock()
	return a.s.mu.Unlock
}

func (a secretManagerAPI) GetSecret(_ context.Context, req *secretmanagerpb.GetSecretRequest) (*secretmanagerpb.Secret, error) {
	defer a.begin("GetSecret")()
	sec, err := a.s.resolveSecret(req.GetName(), "secretmanager.secrets.get")
	if err != nil {
		return nil, err
	}
	return proto.Clone(sec.pb).(*secretmanagerpb.Secret), nil
}

func (a secretManagerAPI) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("GetSecretVersion")()
	v, err := a.s.resolveVersion(req.GetName(), "secretmanager.versions.get")
	if err != nil {
		return nil, err
	}
	return proto.Clone(v.pb).(*secretmanagerpb.SecretVersion), nil
}

func (a secretManagerAPI) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	defer a.begin("AccessSecretVersion")()
	v, err := a.s.resolveVersion(req.GetName(), "secretmanager.versions.access")
	if err != nil {
		return nil, err
	}
	if err := usable(v); err != nil {
		return nil, err
	}
	sum := int64(crc32.Checksum(v.payload, crc32.MakeTable(crc32.Castagnoli)))
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    v.pb.Name,
		Payload: &secretmanagerpb.SecretPayload{Data: slices.Clone(v.payload), DataCrc32C: &sum},
	}, nil
}

func (a secretManagerAPI) DisableSecretVersion(_ context.Context, req *secretmanagerpb.DisableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("DisableSecretVersion")()
	return a.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DISABLED, "secretmanager.versions.disable")
}

func (a secretManagerAPI) DestroySecretVersion(_ context.Context, req *secretmanagerpb.DestroySecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("DestroySecretVersion")()
	return a.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DESTROYED, "secretmanager.versions.destroy")
}

// setState moves a version to state: DESTROYED is final, and its data is gone. s.mu is held.
func (a secretManagerAPI) setState(name, etag string, state secretmanagerpb.SecretVersion_State, permission string) (*secretmanagerpb.SecretVersion, error) {
	v, err := a.s.resolveVersion(name, permission)
	if err != nil {
		return nil, err
	}
	if etag != "" && etag != v.pb.Etag {
		return nil, refuse(codes.Aborted, "The etag %s does not match the current etag %s of Secret Version [%s].", etag, v.pb.Etag, v.pb.Name)
	}
	if v.pb.State == secretmanagerpb.SecretVersion_DESTROYED {
		return nil, refuse(codes.FailedPrecondition, "Secret Version [%s] is in DESTROYED state.", v.pb.Name)
	}
	if v.pb.State != state {
		v.pb.State = state
		v.pb.Etag = newEtag()
		if state == secretmanagerpb.SecretVersion_DESTROYED {
			v.pb.DestroyTime = timestamppb.New(a.s.cfg.now())
			v.payload = nil
		}
	}
	return proto.Clone(v.pb).(*secretmanagerpb.SecretVersion), nil
}
