package cloudrun

import (
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

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
		"INPUT_ENV_VARS":           "MLFLOW_WORKERS=3",
		"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db",
		"INPUT_SERVICE_ACCOUNT":    "mlflow@my-project.iam.gserviceaccount.com",
		"INPUT_LABELS":             "team=ml",
	})
	s := Desired(c, testImage)

	if s.Name != "projects/my-project/locations/us-central1/services/mlflow" {
		t.Errorf("name = %s", s.Name)
	}
	if s.Labels["managed-by"] != "deploy-mlflow" || s.Labels["commit-sha"] != c.Commit || s.Labels["team"] != "ml" {
		t.Errorf("labels = %v", s.Labels)
	}
	tpl := s.Template
	if tpl.ServiceAccount != c.ServiceAccount || tpl.Scaling.MaxInstanceCount != 3 || tpl.Timeout.AsDuration() != 300*time.Second ||
		tpl.MaxInstanceRequestConcurrency != 80 {
		t.Errorf("template = %v", tpl)
	}
	ctr := tpl.Containers[0]
	if ctr.Image != testImage || ctr.Ports[0].Name != "h2c" || ctr.Ports[0].ContainerPort != 8080 {
		t.Errorf("container = %v", ctr)
	}
	if r := ctr.Resources; r.Limits["memory"] != "2Gi" || r.Limits["cpu"] != "1" || !r.CpuIdle || !r.StartupCpuBoost {
		t.Errorf("resources = %v", r)
	}
	if p := ctr.StartupProbe; p.GetHttpGet().GetPath() != serverenv.HealthPath || p.PeriodSeconds*p.FailureThreshold > 240 {
		t.Errorf("startup probe = %v", p)
	}

	env := envByName(ctr)
	secret := func(name, wantSecret, wantVersion string) {
		t.Helper()
		ref := env[name].GetValueSource().GetSecretKeyRef()
		if ref == nil || ref.Secret != wantSecret || ref.Version != wantVersion || env[name].GetValue() != "" {
			t.Errorf("env %s = %v, want secret %s version %s", name, env[name], wantSecret, wantVersion)
		}
	}
	secret(serverenv.BackendStoreURI, "DB_url", "latest")
	secret(serverenv.ArtifactsDestination, "bucket_url", "2")
	secret(serverenv.Username, "mlflow_id", "latest")
	secret(serverenv.Password, "projects/the-vault/secrets/mlflow_pass", "latest")
	secret("API_KEY", "api_key", "4")
	if env[serverenv.Auth].GetValue() != "basic" || env["MLFLOW_WORKERS"].GetValue() != "3" {
		t.Errorf("plain env wrong: %v", ctr.Env)
	}
	if _, ok := env["PORT"]; ok {
		t.Error("PORT is reserved by Cloud Run and must not be set")
	}

	if len(tpl.Volumes) != 2 || tpl.Volumes[0].GetCloudSqlInstance().GetInstances()[0] != "my-project:us-central1:db" {
		t.Fatalf("volumes = %v", tpl.Volumes)
	}
	sv := tpl.Volumes[1].GetSecret()
	if sv.Secret != "sa_key" || len(sv.Items) != 2 || sv.Items[0].Path != "creds.json" || sv.Items[1].Version != "2" {
		t.Errorf("secret volume = %v", sv)
	}
	if m := ctr.VolumeMounts; len(m) != 2 || m[0].MountPath != "/cloudsql" || m[1].MountPath != "/secrets" || m[1].Name != tpl.Volumes[1].Name {
		t.Errorf("mounts = %v", m)
	}
}

func TestDesiredIAMAndPlainArtifacts(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{
		"INPUT_AUTH": "iam", "INPUT_USERNAME_SECRET": "", "INPUT_PASSWORD_SECRET": "",
		"INPUT_ARTIFACTS_DESTINATION_SECRET": "", "INPUT_ARTIFACTS_DESTINATION": "gs://bucket/mlflow",
	})
	env := envByName(Desired(c, testImage).Template.Containers[0])
	if env[serverenv.Auth].GetValue() != "iam" || env[serverenv.ArtifactsDestination].GetValue() != "gs://bucket/mlflow" {
		t.Errorf("env = %v", env)
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

// live imitates what Cloud Run answers for a service it was sent: defaults filled in, output-only
// fields set, and secret names with the project number.
func live(desired *runpb.Service) *runpb.Service {
	s := proto.Clone(desired).(*runpb.Service)
	s.Uri, s.Etag, s.Generation = "https://mlflow-123456.us-central1.run.app", "etag-1", 3
	s.Labels["cloud.googleapis.com/location"] = "us-central1"
	s.Labels["added-by-hand"] = "yes"
	s.Annotations = map[string]string{"run.googleapis.com/ingress": "all"}
	s.Template.Revision = "mlflow-00003-abc"
	s.Template.Containers[0].Resources.Limits = map[string]string{"cpu": "1000m", "memory": "2048Mi"}
	for _, e := range s.Template.Containers[0].Env {
		if ref := e.GetValueSource().GetSecretKeyRef(); ref != nil && ref.Secret == "DB_url" {
			ref.Secret = "projects/123456/secrets/DB_url"
		}
	}
	s.Template.ExecutionEnvironment = runpb.ExecutionEnvironment_EXECUTION_ENVIRONMENT_GEN2
	s.LatestReadyRevision = "projects/my-project/locations/us-central1/revisions/mlflow-00003-abc"
	return s
}

func TestChanges(t *testing.T) {
	t.Parallel()
	c := testConfig(t, map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db", "INPUT_SECRETS": "/s/k=key"})
	desired := Desired(c, testImage)
	if got := Changes(live(desired), desired); len(got) != 0 {
		t.Fatalf("an identical service (as Cloud Run returns it) shows changes: %v", got)
	}
	cases := []struct {
		field  string
		change func(*runpb.Service)
	}{
		{"image", func(s *runpb.Service) { s.Template.Containers[0].Image = "other@sha256:1" }},
		{"labels.commit-sha", func(s *runpb.Service) { s.Labels["commit-sha"] = "beef" }},
		{"env", func(s *runpb.Service) { s.Template.Containers[0].Env = s.Template.Containers[0].Env[1:] }},
		{"env", func(s *runpb.Service) {
			s.Template.Containers[0].Env[0].GetValueSource().GetSecretKeyRef().Version = "7"
		}},
		{"resources", func(s *runpb.Service) { s.Template.Containers[0].Resources.Limits["memory"] = "4Gi" }},
		{"resources", func(s *runpb.Service) { s.Template.Containers[0].Resources.CpuIdle = false }},
		{"ports", func(s *runpb.Service) { s.Template.Containers[0].Ports[0].Name = "http1" }},
		{"startup_probe", func(s *runpb.Service) { s.Template.Containers[0].StartupProbe.FailureThreshold = 3 }},
		{"scaling", func(s *runpb.Service) { s.Template.Scaling.MaxInstanceCount = 100 }},
		{"timeout", func(s *runpb.Service) { s.Template.Timeout.Seconds = 60 }},
		{"concurrency", func(s *runpb.Service) { s.Template.MaxInstanceRequestConcurrency = 1 }},
		{"volumes", func(s *runpb.Service) { s.Template.Volumes = s.Template.Volumes[:1] }},
		{"volume_mounts", func(s *runpb.Service) { s.Template.Containers[0].VolumeMounts[0].MountPath = "/sql" }},
		{"traffic", func(s *runpb.Service) {
			s.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, Revision: "old", Percent: 100}}
		}},
		{"containers", func(s *runpb.Service) {
			s.Template.Containers = append(s.Template.Containers, &runpb.Container{Name: "sidecar"})
		}},
		{"command", func(s *runpb.Service) { s.Template.Containers[0].Command = []string{"sh"} }},
	}
	for _, tc := range cases {
		l := live(desired)
		tc.change(l)
		got := Changes(l, desired)
		if len(got) != 1 || got[0] != tc.field {
			t.Errorf("changing %s: Changes = %v", tc.field, got)
		}
	}
}

func TestApplyKeepsWhatItDoesNotManage(t *testing.T) {
	t.Parallel()
	c := testConfig(t, nil)
	old := Desired(c, "old@sha256:1")
	l := live(old)
	desired := Desired(c, testImage)

	out := Apply(l, desired)
	if len(Changes(out, desired)) != 0 {
		t.Errorf("Apply's result still differs: %v", Changes(out, desired))
	}
	if out.Etag != "etag-1" || out.Labels["added-by-hand"] != "yes" || out.Annotations["run.googleapis.com/ingress"] != "all" ||
		out.Template.ExecutionEnvironment != runpb.ExecutionEnvironment_EXECUTION_ENVIRONMENT_GEN2 {
		t.Errorf("Apply dropped live fields: %v", out)
	}
	if out.Template.Revision != "" {
		t.Errorf("Apply kept the fixed revision name %q", out.Template.Revision)
	}
	if l.Template.Containers[0].Image != "old@sha256:1" {
		t.Error("Apply changed the live service it was given")
	}
}

func TestInvokerPolicy(t *testing.T) {
	t.Parallel()
	viewer := &iampb.Binding{Role: "roles/run.viewer", Members: []string{"user:a@example.com"}}
	cases := []struct {
		name        string
		in          *iampb.Policy
		public      bool
		changed     bool
		wantInvoker []string
	}{
		{"grant on empty", &iampb.Policy{Etag: []byte("e")}, true, true, []string{"allUsers"}},
		{"already public", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers"}}}}, true, false, []string{"allUsers"}},
		{"add to invokers", &iampb.Policy{Bindings: []*iampb.Binding{viewer, {Role: invokerRole, Members: []string{"user:b@example.com"}}}}, true, true, []string{"user:b@example.com", "allUsers"}},
		{"private stays", &iampb.Policy{Bindings: []*iampb.Binding{viewer}}, false, false, nil},
		{"close public", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers", "user:b@example.com", "allAuthenticatedUsers"}}}}, false, true, []string{"user:b@example.com"}},
		{"drop empty binding", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers"}}}}, false, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := invokerPolicy(tc.in, tc.public)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			var got []string
			for _, b := range out.Bindings {
				if b.Role == invokerRole {
					got = b.Members
				}
				if len(b.Members) == 0 {
					t.Errorf("empty binding left in policy: %v", b)
				}
			}
			if len(got) != len(tc.wantInvoker) {
				t.Fatalf("invokers = %v, want %v", got, tc.wantInvoker)
			}
			for i := range got {
				if got[i] != tc.wantInvoker[i] {
					t.Errorf("invokers = %v, want %v", got, tc.wantInvoker)
				}
			}
			if string(out.Etag) != string(tc.in.Etag) {
				t.Error("the etag must be kept so a concurrent change is refused")
			}
		})
	}
}

func TestLogsURL(t *testing.T) {
	t.Parallel()
	if got := LogsURL(Name("p", "europe-west1", "mlflow")); got != "https://console.cloud.google.com/run/detail/europe-west1/mlflow/logs?project=p" {
		t.Errorf("LogsURL = %s", got)
	}
}
