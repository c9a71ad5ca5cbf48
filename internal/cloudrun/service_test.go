package cloudrun

import (
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

const testImage = "us-central1-docker.pkg.dev/p/r/mlflow@sha256:0000000000000000000000000000000000000000000000000000000000000001"

func testConfig(t *testing.T, extra map[string]string) *config.Config {
	t.Helper()
	env := map[string]string{
		"INPUT_PROJECT_ID":                   "my-project",
		"INPUT_REPOSITORY":                   "mlflow-runner",
		"INPUT_BACKEND_STORE_SECRET":         "DB_url",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "bucket_url:2",
		"INPUT_USERNAME_SECRET":              "mlflow_id",
		"INPUT_PASSWORD_SECRET":              "projects/the-vault/secrets/mlflow_pass",
		"GITHUB_SHA":                         "0123456789abcdef0123456789abcdef01234567",
	}
	for k, v := range extra {
		env[k] = v
	}
	c, err := config.Parse(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func envByName(c *runpb.Container) map[string]*runpb.EnvVar {
	m := map[string]*runpb.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func TestDesired(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{
		"INPUT_SECRETS":            "API_KEY=api_key:4\n/secrets/creds.json=sa_key\n/secrets/other.json=sa_key:2",
		"INPUT_ENV_VARS":           "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=3",
		"INPUT_WORKERS":            "3",
		"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db",
		"INPUT_SERVICE_ACCOUNT":    "mlflow@my-project.iam.gserviceaccount.com",
		"INPUT_LABELS":             "team=ml",
	})
	secret := func(name, secret, version string) *runpb.EnvVar {
		return &runpb.EnvVar{Name: name, Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{
			SecretKeyRef: &runpb.SecretKeySelector{Secret: secret, Version: version}}}}
	}
	plain := func(name, value string) *runpb.EnvVar {
		return &runpb.EnvVar{Name: name, Values: &runpb.EnvVar_Value{Value: value}}
	}
	want := &runpb.Service{
		Name:   "projects/my-project/locations/us-central1/services/mlflow",
		Labels: map[string]string{"managed-by": "deploy-mlflow", "commit-sha": c.Commit, "team": "ml"},
		Template: &runpb.RevisionTemplate{
			ServiceAccount:                "mlflow@my-project.iam.gserviceaccount.com",
			Scaling:                       &runpb.RevisionScaling{MaxInstanceCount: 3},
			Timeout:                       durationpb.New(300 * time.Second),
			MaxInstanceRequestConcurrency: 80,
			Containers: []*runpb.Container{{
				Name:  "mlflow",
				Image: testImage,
				// h2c: HTTP/2 end to end, without HTTP/1's 32 MiB request limit.
				Ports: []*runpb.ContainerPort{{Name: "h2c", ContainerPort: 8080}},
				Env: []*runpb.EnvVar{
					// Secrets in the service's project by ID, others by full name; PORT is Cloud Run's.
					secret(serverenv.BackendStoreURI, "DB_url", "latest"),
					secret(serverenv.ArtifactsDestination, "bucket_url", "2"),
					plain(serverenv.Auth, "basic"),
					secret(serverenv.Username, "mlflow_id", "latest"),
					secret(serverenv.Password, "projects/the-vault/secrets/mlflow_pass", "latest"),
					plain("MLFLOW_WORKERS", "3"),
					secret("API_KEY", "api_key", "4"),
					plain("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "3"),
				},
				// CpuIdle keeps request-only billing, which setting resources would otherwise turn off.
				Resources: &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "1", "memory": "2Gi"}, CpuIdle: true, StartupCpuBoost: true},
				// 3 s apart, 80 times: 240 s, Cloud Run's limit for a startup probe. gRPC health checking
				// on the container port: an HTTP probe is documented for HTTP/1 services only.
				StartupProbe: &runpb.Probe{TimeoutSeconds: 2, PeriodSeconds: 3, FailureThreshold: 80,
					ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 8080}}},
				VolumeMounts: []*runpb.VolumeMount{{Name: "cloudsql", MountPath: "/cloudsql"}, {Name: "secret-1", MountPath: "/secrets"}},
			}},
			Volumes: []*runpb.Volume{
				{Name: "cloudsql", VolumeType: &runpb.Volume_CloudSqlInstance{CloudSqlInstance: &runpb.CloudSqlInstance{Instances: []string{"my-project:us-central1:db"}}}},
				// One volume per directory: Cloud Run mounts a secret as a directory of its versions.
				{Name: "secret-1", VolumeType: &runpb.Volume_Secret{Secret: &runpb.SecretVolumeSource{Secret: "sa_key", Items: []*runpb.VersionToPath{
					{Path: "creds.json", Version: "latest"}, {Path: "other.json", Version: "2"}}}}},
			},
		},
		Traffic: []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100}},
		// auth: basic, public: the invoker IAM check is off, with no allUsers binding.
		InvokerIamDisabled: true,
	}
	if diff := cmp.Diff(want, Desired(c, testImage), protocmp.Transform()); diff != "" {
		t.Errorf("Desired (-want +got):\n%s", diff)
	}
}

func TestDesiredIAMAndPlainArtifacts(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{
		"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://bucket/mlflow",
	})
	env := envByName(Desired(c, testImage).Template.Containers[0])
	if got := env[serverenv.Auth].GetValue(); got != "iam" {
		t.Errorf("%s = %q, want iam", serverenv.Auth, got)
	}
	if got := env[serverenv.ArtifactsDestination].GetValue(); got != "gs://bucket/mlflow" {
		t.Errorf("%s = %q, want gs://bucket/mlflow as a plain value", serverenv.ArtifactsDestination, got)
	}
	if _, ok := env[serverenv.Password]; ok {
		t.Error("auth iam must not pass a password")
	}
}

func TestDesiredIsDeterministic(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{"INPUT_SECRETS": "/b/x=s1,/a/y=s2,/c/z=s3", "INPUT_LABELS": "a=1,b=2,c=3"})
	first := Desired(c, testImage)
	for range 20 {
		if !proto.Equal(first, Desired(c, testImage)) {
			t.Fatal("Desired gave two different services for one config")
		}
	}
}

func TestLogsURL(t *testing.T) {
	t.Parallel()
	if got := LogsURL(Name("p", "europe-west1", "mlflow")); got != "https://console.cloud.google.com/run/detail/europe-west1/mlflow/logs?project=p" {
		t.Errorf("LogsURL = %s", got)
	}
}

// TestDesiredAuthModes: the variables each auth mode sets, in order, with the secret each reads, and
// whether the service is public.
func TestDesiredAuthModes(t *testing.T) {
	t.Parallel()
	noUser := map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": ""}
	cases := []struct {
		name   string
		change map[string]string
		env    []string // NAME=value, or NAME<-secret:version
		public bool
	}{
		{"basic", nil, []string{
			"DEPLOY_MLFLOW_AUTH=basic", "DEPLOY_MLFLOW_USERNAME<-mlflow_id:latest", "DEPLOY_MLFLOW_PASSWORD<-projects/the-vault/secrets/mlflow_pass:latest",
			"MLFLOW_WORKERS=2",
		}, true},
		{"iam", noUser, []string{"DEPLOY_MLFLOW_AUTH=iam", "MLFLOW_WORKERS=2"}, false},
		{"iam with kek", map[string]string{"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "", "INPUT_KEK_PASSPHRASE_SECRET": "kek:7"},
			[]string{"DEPLOY_MLFLOW_AUTH=iam", "MLFLOW_WORKERS=2", "MLFLOW_CRYPTO_KEK_PASSPHRASE<-kek:7"}, false},
		{"mlflow", map[string]string{"INPUT_AUTH": "mlflow"}, []string{
			"DEPLOY_MLFLOW_AUTH=mlflow", "DEPLOY_MLFLOW_DEFAULT_PERMISSION=READ",
			"DEPLOY_MLFLOW_USERNAME<-mlflow_id:latest", "DEPLOY_MLFLOW_PASSWORD<-projects/the-vault/secrets/mlflow_pass:latest",
			"MLFLOW_WORKERS=2",
		}, true},
		{"mlflow with every secret", map[string]string{"INPUT_AUTH": "mlflow", "INPUT_DEFAULT_PERMISSION": "NO_PERMISSIONS",
			"INPUT_FLASK_SECRET_KEY_SECRET": "flask_key", "INPUT_KEK_PASSPHRASE_SECRET": "projects/the-vault/secrets/kek/versions/3",
			"INPUT_SECRETS": "API_KEY=api_key:4", "INPUT_CPU": "2", "INPUT_MEMORY": "4Gi"}, []string{
			"DEPLOY_MLFLOW_AUTH=mlflow", "DEPLOY_MLFLOW_DEFAULT_PERMISSION=NO_PERMISSIONS",
			"DEPLOY_MLFLOW_USERNAME<-mlflow_id:latest", "DEPLOY_MLFLOW_PASSWORD<-projects/the-vault/secrets/mlflow_pass:latest",
			"MLFLOW_WORKERS=4",
			"MLFLOW_FLASK_SERVER_SECRET_KEY<-flask_key:latest", "MLFLOW_CRYPTO_KEK_PASSPHRASE<-projects/the-vault/secrets/kek:3",
			"API_KEY<-api_key:4",
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := Desired(testConfig(t, tc.change), testImage)
			var got []string
			for _, e := range svc.Template.Containers[0].Env {
				switch e.Name {
				case serverenv.BackendStoreURI, serverenv.ArtifactsDestination: // the same in every mode
					continue
				}
				if ref := e.GetValueSource().GetSecretKeyRef(); ref != nil {
					got = append(got, e.Name+"<-"+ref.Secret+":"+ref.Version)
				} else {
					got = append(got, e.Name+"="+e.GetValue())
				}
			}
			if diff := cmp.Diff(tc.env, got); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			if svc.InvokerIamDisabled != tc.public {
				t.Errorf("invoker_iam_disabled = %v, want %v", svc.InvokerIamDisabled, tc.public)
			}
		})
	}
}
