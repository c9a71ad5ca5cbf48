package gcptest

import (
	"context"
	"fmt"
	"hash/crc32"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// SecretManager stands in for the Secret Manager API (google.cloud.secretmanager.v1) over gRPC: secrets
// and their versions, with `latest` and aliases, the ENABLED/DISABLED/DESTROYED states and Google's errors.
// Reach it with secretmanager.NewClient(ctx, option.WithGRPCConn(conn)) for a connection to Addr that
// sends an access token its Authenticator accepts.
type SecretManager struct {
	cfg  *settings
	grpc *grpcServer

	mu      sync.Mutex
	secrets map[string]*storedSecret // projects/NUMBER/secrets/ID -> secret
	calls   map[string]int
}

type storedSecret struct {
	pb       *secretmanagerpb.Secret
	versions []*storedVersion // versions[i] is version i+1
}

type storedVersion struct {
	pb      *secretmanagerpb.SecretVersion
	payload []byte
}

var secretIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// maxSecretPayload is Secret Manager's limit on a version's data.
const maxSecretPayload = 64 << 10

// NewSecretManager starts a Secret Manager on a loopback port; auth decides which tokens may call it.
// Close stops it.
func NewSecretManager(auth Authenticator, opts ...Option) (*SecretManager, error) {
	s := &SecretManager{cfg: newSettings(opts), secrets: map[string]*storedSecret{}, calls: map[string]int{}}
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
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is the host:port the gRPC server listens on.
func (s *SecretManager) Addr() string { return s.grpc.addr }

// Close stops the server.
func (s *SecretManager) Close() { s.grpc.close() }

// Calls returns how many authenticated calls of the named method (e.g. "AccessSecretVersion") it answered.
func (s *SecretManager) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// CallCounts returns the authenticated calls per method.
func (s *SecretManager) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

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
		sec = s.newSecret(key, &secretmanagerpb.Secret{Replication: automaticReplication()})
	}
	return s.addVersion(sec, payload).pb.Name
}

func automaticReplication() *secretmanagerpb.Replication {
	return &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}
}

// newSecret stores a secret under its canonical name; s.mu is held.
func (s *SecretManager) newSecret(name string, from *secretmanagerpb.Secret) *storedSecret {
	pb := proto.Clone(from).(*secretmanagerpb.Secret)
	pb.Name = name
	pb.CreateTime = timestamppb.Now()
	pb.Etag = newEtag()
	sec := &storedSecret{pb: pb}
	s.secrets[name] = sec
	return sec
}

// addVersion appends an ENABLED version; s.mu is held.
func (s *SecretManager) addVersion(sec *storedSecret, payload []byte) *storedVersion {
	v := &storedVersion{
		pb: &secretmanagerpb.SecretVersion{
			Name:       sec.pb.Name + "/versions/" + strconv.Itoa(len(sec.versions)+1),
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
	return v
}

var etagCounter struct {
	sync.Mutex
	n int64
}

// newEtag returns a quoted etag that differs from every earlier one.
func newEtag() string {
	etagCounter.Lock()
	defer etagCounter.Unlock()
	etagCounter.n = max(etagCounter.n+1, time.Now().UnixMicro())
	return `"` + strconv.FormatInt(etagCounter.n, 16) + `"`
}

// resolveSecret finds the secret a request names; permission is the IAM permission the call needs, for
// the error about an unknown project. s.mu is held.
func (s *SecretManager) resolveSecret(name, permission string) (*storedSecret, error) {
	parts, ok := splitName(name, "projects", "secrets")
	if !ok || !secretIDPattern.MatchString(parts[3]) {
		return nil, status.Errorf(codes.InvalidArgument, "Resource ID [%s] is not in a valid format.", name)
	}
	p, ok := s.cfg.lookupProject(parts[1])
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "Permission '%s' denied for resource '%s' (or it may not exist).", permission, name)
	}
	canonical := "projects/" + p.number + "/secrets/" + parts[3]
	sec, ok := s.secrets[canonical]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret [%s] not found.", canonical)
	}
	return sec, nil
}

// resolveVersion finds the version a request names: a number, `latest` (the newest version, whatever its
// state) or an alias. s.mu is held.
func (s *SecretManager) resolveVersion(name, permission string) (*storedSecret, *storedVersion, error) {
	parts, ok := splitName(name, "projects", "secrets", "versions")
	if !ok {
		return nil, nil, status.Errorf(codes.InvalidArgument, "Resource ID [%s] is not in a valid format.", name)
	}
	sec, err := s.resolveSecret(strings.Join(parts[:4], "/"), permission)
	if err != nil {
		if status.Code(err) == codes.NotFound && parts[5] == "latest" {
			return nil, nil, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", secretCanonical(err))
		}
		return nil, nil, err
	}
	ref := parts[5]
	n, err := strconv.Atoi(ref)
	switch {
	case ref == "latest":
		if len(sec.versions) == 0 {
			return nil, nil, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", sec.pb.Name)
		}
		n = len(sec.versions)
	case err == nil:
		if n < 1 {
			return nil, nil, status.Errorf(codes.InvalidArgument, "Resource ID [%s] is not in a valid format.", name)
		}
	default:
		alias, ok := sec.pb.GetVersionAliases()[ref]
		if !ok {
			return nil, nil, status.Errorf(codes.NotFound, "Secret Version [%s/versions/%s] not found.", sec.pb.Name, ref)
		}
		n = int(alias)
	}
	if n > len(sec.versions) {
		return nil, nil, status.Errorf(codes.NotFound, "Secret Version [%s/versions/%d] not found.", sec.pb.Name, n)
	}
	return sec, sec.versions[n-1], nil
}

// secretCanonical pulls the canonical secret name out of a "Secret [NAME] not found." error.
func secretCanonical(err error) string {
	msg := status.Convert(err).Message()
	start, end := strings.Index(msg, "["), strings.Index(msg, "]")
	if start < 0 || end < start {
		return ""
	}
	return msg[start+1 : end]
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
	_, v, err := s.resolveVersion(name+"/versions/"+version, "secretmanager.versions.access")
	if err != nil {
		return err
	}
	return usable(v)
}

func usable(v *storedVersion) error {
	if v.pb.State != secretmanagerpb.SecretVersion_ENABLED {
		return status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", v.pb.Name, v.pb.State)
	}
	return nil
}

// paginate returns the slice bounds of one page of n items and the token of the next page.
func paginate(n int, pageSize int32, pageToken string, maxSize int) (start, end int, next string, err error) {
	if pageToken != "" {
		start, err = strconv.Atoi(pageToken)
		if err != nil || start < 0 || start > n {
			return 0, 0, "", status.Errorf(codes.InvalidArgument, "Invalid page token %q.", pageToken)
		}
	}
	size := int(pageSize)
	if size <= 0 || size > maxSize {
		size = maxSize
	}
	end = min(start+size, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

// secretManagerAPI is the gRPC face of a SecretManager; the methods the action has no use for (IAM,
// rotation, UpdateSecret) answer UNIMPLEMENTED.
type secretManagerAPI struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	s *SecretManager
}

var _ secretmanagerpb.SecretManagerServiceServer = secretManagerAPI{}

// begin counts a call and takes the lock; the caller defers the returned unlock.
func (a secretManagerAPI) begin(method string) func() {
	a.s.mu.Lock()
	a.s.calls[method]++
	return a.s.mu.Unlock
}

func (a secretManagerAPI) ListSecrets(_ context.Context, req *secretmanagerpb.ListSecretsRequest) (*secretmanagerpb.ListSecretsResponse, error) {
	defer a.begin("ListSecrets")()
	parts, ok := splitName(req.GetParent(), "projects")
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "Resource ID [%s] is not in a valid format.", req.GetParent())
	}
	p, ok := a.s.cfg.lookupProject(parts[1])
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "Permission 'secretmanager.secrets.list' denied for resource '%s' (or it may not exist).", req.GetParent())
	}
	if req.GetFilter() != "" {
		return nil, status.Errorf(codes.InvalidArgument, "The filter %q is not supported by this stand-in.", req.GetFilter())
	}
	var names []string
	for name := range a.s.secrets {
		if strings.HasPrefix(name, "projects/"+p.number+"/") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	start, end, next, err := paginate(len(names), req.GetPageSize(), req.GetPageToken(), 25000)
	if err != nil {
		return nil, err
	}
	resp := &secretmanagerpb.ListSecretsResponse{NextPageToken: next, TotalSize: int32(len(names))}
	for _, name := range names[start:end] {
		resp.Secrets = append(resp.Secrets, proto.Clone(a.s.secrets[name].pb).(*secretmanagerpb.Secret))
	}
	return resp, nil
}

func (a secretManagerAPI) CreateSecret(_ context.Context, req *secretmanagerpb.CreateSecretRequest) (*secretmanagerpb.Secret, error) {
	defer a.begin("CreateSecret")()
	parts, ok := splitName(req.GetParent(), "projects")
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "Resource ID [%s] is not in a valid format.", req.GetParent())
	}
	p, ok := a.s.cfg.lookupProject(parts[1])
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "Permission 'secretmanager.secrets.create' denied for resource '%s' (or it may not exist).", req.GetParent())
	}
	if !secretIDPattern.MatchString(req.GetSecretId()) {
		return nil, status.Errorf(codes.InvalidArgument, "Secret ID [%s] is invalid: it must be 1 to 255 letters, digits, underscores or hyphens.", req.GetSecretId())
	}
	name := "projects/" + p.number + "/secrets/" + req.GetSecretId()
	if _, exists := a.s.secrets[name]; exists {
		return nil, status.Errorf(codes.AlreadyExists, "Secret [%s] already exists.", name)
	}
	from := req.GetSecret()
	if from == nil {
		from = &secretmanagerpb.Secret{}
	}
	sec := a.s.newSecret(name, from)
	return proto.Clone(sec.pb).(*secretmanagerpb.Secret), nil
}

func (a secretManagerAPI) AddSecretVersion(_ context.Context, req *secretmanagerpb.AddSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("AddSecretVersion")()
	sec, err := a.s.resolveSecret(req.GetParent(), "secretmanager.versions.add")
	if err != nil {
		return nil, err
	}
	data := req.GetPayload().GetData()
	if len(data) > maxSecretPayload {
		return nil, status.Errorf(codes.InvalidArgument, "Secret Payload cannot be larger than 64KiB.")
	}
	if sum := req.GetPayload().DataCrc32C; sum != nil && *sum != int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))) {
		return nil, status.Errorf(codes.InvalidArgument, "The checksum in field data_crc32c does not match the payload.")
	}
	v := a.s.addVersion(sec, data)
	v.pb.ClientSpecifiedPayloadChecksum = req.GetPayload().DataCrc32C != nil
	return proto.Clone(v.pb).(*secretmanagerpb.SecretVersion), nil
}

func (a secretManagerAPI) GetSecret(_ context.Context, req *secretmanagerpb.GetSecretRequest) (*secretmanagerpb.Secret, error) {
	defer a.begin("GetSecret")()
	sec, err := a.s.resolveSecret(req.GetName(), "secretmanager.secrets.get")
	if err != nil {
		return nil, err
	}
	return proto.Clone(sec.pb).(*secretmanagerpb.Secret), nil
}

func (a secretManagerAPI) DeleteSecret(_ context.Context, req *secretmanagerpb.DeleteSecretRequest) (*emptypb.Empty, error) {
	defer a.begin("DeleteSecret")()
	sec, err := a.s.resolveSecret(req.GetName(), "secretmanager.secrets.delete")
	if err != nil {
		return nil, err
	}
	if req.GetEtag() != "" && req.GetEtag() != sec.pb.Etag {
		return nil, status.Errorf(codes.Aborted, "The etag %s does not match the current etag %s of Secret [%s].", req.GetEtag(), sec.pb.Etag, sec.pb.Name)
	}
	delete(a.s.secrets, sec.pb.Name)
	return &emptypb.Empty{}, nil
}

func (a secretManagerAPI) ListSecretVersions(_ context.Context, req *secretmanagerpb.ListSecretVersionsRequest) (*secretmanagerpb.ListSecretVersionsResponse, error) {
	defer a.begin("ListSecretVersions")()
	sec, err := a.s.resolveSecret(req.GetParent(), "secretmanager.versions.list")
	if err != nil {
		return nil, err
	}
	var want secretmanagerpb.SecretVersion_State
	if f := req.GetFilter(); f != "" {
		st, ok := strings.CutPrefix(f, "state:")
		want = secretmanagerpb.SecretVersion_State(secretmanagerpb.SecretVersion_State_value[strings.ToUpper(st)])
		if !ok || want == secretmanagerpb.SecretVersion_STATE_UNSPECIFIED {
			return nil, status.Errorf(codes.InvalidArgument, "The filter %q is not supported by this stand-in (only state:ENABLED|DISABLED|DESTROYED).", f)
		}
	}
	var versions []*secretmanagerpb.SecretVersion
	for i := len(sec.versions) - 1; i >= 0; i-- { // newest first
		if v := sec.versions[i].pb; want == 0 || v.State == want {
			versions = append(versions, v)
		}
	}
	start, end, next, err := paginate(len(versions), req.GetPageSize(), req.GetPageToken(), 25000)
	if err != nil {
		return nil, err
	}
	resp := &secretmanagerpb.ListSecretVersionsResponse{NextPageToken: next, TotalSize: int32(len(versions))}
	for _, v := range versions[start:end] {
		resp.Versions = append(resp.Versions, proto.Clone(v).(*secretmanagerpb.SecretVersion))
	}
	return resp, nil
}

func (a secretManagerAPI) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("GetSecretVersion")()
	_, v, err := a.s.resolveVersion(req.GetName(), "secretmanager.versions.get")
	if err != nil {
		return nil, err
	}
	return proto.Clone(v.pb).(*secretmanagerpb.SecretVersion), nil
}

func (a secretManagerAPI) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	defer a.begin("AccessSecretVersion")()
	_, v, err := a.s.resolveVersion(req.GetName(), "secretmanager.versions.access")
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

func (a secretManagerAPI) EnableSecretVersion(_ context.Context, req *secretmanagerpb.EnableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("EnableSecretVersion")()
	return a.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_ENABLED, "secretmanager.versions.enable")
}

func (a secretManagerAPI) DestroySecretVersion(_ context.Context, req *secretmanagerpb.DestroySecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	defer a.begin("DestroySecretVersion")()
	return a.setState(req.GetName(), req.GetEtag(), secretmanagerpb.SecretVersion_DESTROYED, "secretmanager.versions.destroy")
}

// setState moves a version to state: DESTROYED is final, and its data is gone. s.mu is held.
func (a secretManagerAPI) setState(name, etag string, state secretmanagerpb.SecretVersion_State, permission string) (*secretmanagerpb.SecretVersion, error) {
	_, v, err := a.s.resolveVersion(name, permission)
	if err != nil {
		return nil, err
	}
	if etag != "" && etag != v.pb.Etag {
		return nil, status.Errorf(codes.Aborted, "The etag %s does not match the current etag %s of Secret Version [%s].", etag, v.pb.Etag, v.pb.Name)
	}
	if v.pb.State == secretmanagerpb.SecretVersion_DESTROYED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in DESTROYED state.", v.pb.Name)
	}
	if v.pb.State != state {
		v.pb.State = state
		v.pb.Etag = newEtag()
		if state == secretmanagerpb.SecretVersion_DESTROYED {
			v.pb.DestroyTime = timestamppb.Now()
			v.payload = nil
		}
	}
	return proto.Clone(v.pb).(*secretmanagerpb.SecretVersion), nil
}
