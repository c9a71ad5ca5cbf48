package gcptest

import (
	"os"
	"strings"
	"testing"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

// TestCloud walks the action's path through every stand-in with Workload Identity Federation credentials:
// read a secret, push an image, deploy it with the secret in its env.
func TestCloud(t *testing.T) {
	t.Parallel()
	c := Start(t)
	ctx := waitCtx(t)
	c.SecretManager.AddSecret(DefaultProjectID, "db-url", []byte("postgresql://"))
	// A project-level grant to the default compute account, which Cloud Run checks through Projects.
	c.Projects.GrantProjectRole(DefaultProjectID, "serviceAccount:"+DefaultProjectNumber+"-compute@developer.gserviceaccount.com", "roles/secretmanager.secretAccessor")
	c.Registry.CreateRepository(DefaultProjectID, "mlflow")

	file, err := c.Tokens.ExternalAccountFile(t.TempDir(), WorkloadIdentity{ServiceAccount: "deployer@" + DefaultProjectID + ".iam.gserviceaccount.com"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, b, google.ExternalAccount, CloudPlatformScope)
	if err != nil {
		t.Fatal(err)
	}

	sm, err := secretmanager.NewClient(ctx, option.WithGRPCConn(dial(t, c.SecretManager.Addr(), creds.TokenSource)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sm.GetSecretVersion(ctx, &secretmanagerpb.GetSecretVersionRequest{Name: "projects/" + DefaultProjectID + "/secrets/db-url/versions/latest"}); err != nil {
		t.Fatalf("GetSecretVersion: %v", err)
	}

	tok, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(c.RegistryHost+"/"+DefaultProjectID+"/mlflow/server:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "_token", Password: tok.AccessToken})); err != nil {
		t.Fatalf("push: %v", err)
	}
	digest, _ := img.Digest()

	services, err := run.NewServicesClient(ctx, option.WithGRPCConn(dial(t, c.Run.Addr(), creds.TokenSource)))
	if err != nil {
		t.Fatal(err)
	}
	svc := mlflowService(ref.Context().Digest(digest.String()).String())
	svc.Template.Containers[0].Env = []*runpb.EnvVar{{Name: "DB", Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{
		SecretKeyRef: &runpb.SecretKeySelector{Secret: "db-url", Version: "latest"}}}}}
	op, err := services.CreateService(ctx, &runpb.CreateServiceRequest{Parent: "projects/" + DefaultProjectID + "/locations/europe-west1", ServiceId: "mlflow", Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	deployed, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if deployed.Uri != "https://mlflow-"+DefaultProjectNumber+".europe-west1.run.app" || deployed.Creator != "deployer@"+DefaultProjectID+".iam.gserviceaccount.com" {
		t.Errorf("deployed service: uri %q, creator %q", deployed.Uri, deployed.Creator)
	}
	if st := c.Tokens.Stats(); st.STSExchanges != 1 || st.Impersonations != 1 || st.JWTGrants != 0 {
		t.Errorf("token stats = %+v, want one exchange and one impersonation", st)
	}
	if got := c.Registry.Counts(); got.BlobUploads != 2 || !strings.Contains(deployed.Template.Containers[0].Image, "@sha256:") {
		t.Errorf("registry counts %+v, image %s", got, deployed.Template.Containers[0].Image)
	}
}
