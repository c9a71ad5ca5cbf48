package cloudrun

import (
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
)

// live imitates what Cloud Run answers for a service it was sent: defaults filled in, output-only
// fields set, and secret names with the project number.
func live(desired *runpb.Service) *runpb.Service {
	s := proto.Clone(desired).(*runpb.Service)
	s.Uri, s.Etag, s.Generation = "https://mlflow-123456.us-central1.run.app", "etag-1", 3
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
	c := testConfig(t, map[string]string{"INPUT_CLOUDSQL_INSTANCES": "my-project:us-central1:db", "INPUT_SECRETS": "/s/k=key",
		"INPUT_SERVICE_ACCOUNT": "mlflow@my-project.iam.gserviceaccount.com"})
	desired := Desired(c, testImage)
	if got := Changes(live(desired), desired); len(got) != 0 {
		t.Fatalf("an identical service (as Cloud Run returns it) shows changes: %v", got)
	}
	// Defaults Cloud Run may add to what was sent are not changes.
	l := live(desired)
	l.Template.Containers[0].StartupProbe.GetHttpGet().HttpHeaders = nil
	l.Template.Containers[0].Resources.Limits["nvidia.com/gpu"] = "0"
	if got := Changes(l, desired); len(got) != 0 {
		t.Errorf("server-side defaults show as changes: %v", got)
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
		{"service_account", func(s *runpb.Service) { s.Template.ServiceAccount = "other@p.iam.gserviceaccount.com" }},
		{"volumes", func(s *runpb.Service) {
			s.Template.Volumes[0].GetCloudSqlInstance().Instances = []string{"my-project:us-central1:other"}
		}},
		{"volumes", func(s *runpb.Service) { s.Template.Volumes[1].GetSecret().Items[0].Version = "9" }},
		{"volumes", func(s *runpb.Service) { s.Template.Volumes[1].GetSecret().Secret = "other_key" }},
		{"labels.managed-by", func(s *runpb.Service) { delete(s.Labels, "managed-by") }},
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
