package cloudrun

import (
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// numbers is what the action knows of the test project: my-project is number 123456.
var numbers = ProjectNumbers{"my-project": "123456"}

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
	if got := Changes(live(desired), desired, numbers); len(got) != 0 {
		t.Fatalf("an identical service (as Cloud Run returns it) shows changes: %v", got)
	}
	// Defaults Cloud Run may add to what was sent are not changes.
	l := live(desired)
	l.Template.Containers[0].Resources.Limits["nvidia.com/gpu"] = "0"
	if got := Changes(l, desired, numbers); len(got) != 0 {
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
		{"startup_probe", func(s *runpb.Service) {
			// What an earlier version of the action asked for.
			s.Template.Containers[0].StartupProbe.ProbeType = &runpb.Probe_HttpGet{HttpGet: &runpb.HTTPGetAction{Path: "/health", Port: 8080}}
		}},
		{"startup_probe", func(s *runpb.Service) {
			// Cloud Run's default probe.
			s.Template.Containers[0].StartupProbe.ProbeType = &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 8080}}
		}},
		{"startup_probe", func(s *runpb.Service) { s.Template.Containers[0].StartupProbe.GetGrpc().Service = "mlflow" }},
		{"startup_probe", func(s *runpb.Service) { s.Template.Containers[0].StartupProbe.GetGrpc().Port = 8081 }},
		{"startup_probe", func(s *runpb.Service) { s.Template.Containers[0].StartupProbe = nil }},
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
		// A service an earlier version made public with an allUsers binding has the invoker IAM check on.
		{"invoker_iam_disabled", func(s *runpb.Service) { s.InvokerIamDisabled = false }},
	}
	for _, tc := range cases {
		l := live(desired)
		tc.change(l)
		if diff := cmp.Diff([]string{tc.field}, Changes(l, desired, numbers)); diff != "" {
			t.Errorf("changing %s: Changes (-want +got):\n%s", tc.field, diff)
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
	if got := Changes(out, desired, numbers); len(got) != 0 {
		t.Errorf("Apply's result still differs: %v", got)
	}
	// Only the image changed, so the result is the live service (etag, labels and annotations set by
	// hand, Cloud Run's defaults) with the desired container and no fixed revision name.
	want := live(old)
	want.Template.Containers = desired.Template.Containers
	want.Template.Revision = ""
	if diff := cmp.Diff(want, out, protocmp.Transform()); diff != "" {
		t.Errorf("Apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(live(old), l, protocmp.Transform()); diff != "" {
		t.Errorf("Apply changed the live service it was given (-before +after):\n%s", diff)
	}
	// Public access is the action's to set, both ways.
	for _, public := range []bool{true, false} {
		l.InvokerIamDisabled, desired.InvokerIamDisabled = !public, public
		if got := Apply(l, desired).InvokerIamDisabled; got != public {
			t.Errorf("Apply with invoker_iam_disabled %v over %v gave %v", public, !public, got)
		}
	}
}

// TestChangesSecretReference checks that a secret reference compares by project and secret, whichever
// form names them: Cloud Run may answer projects/NUMBER/secrets/S for a secret it was sent as S or as
// projects/ID/secrets/S. A secret moved to another project is a change.
func TestChangesSecretReference(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		desired, live   string
		liveServiceName string // as Cloud Run answered it; own when empty
		numbers         ProjectNumbers
		same            bool
	}{
		{"short form both", "DB_url", "DB_url", "", numbers, true},
		{"answered with the project number", "DB_url", "projects/123456/secrets/DB_url", "", numbers, true},
		{"answered with the project ID", "DB_url", "projects/my-project/secrets/DB_url", "", numbers, true},
		{"sent in full with the ID", "projects/my-project/secrets/DB_url", "projects/123456/secrets/DB_url", "", numbers, true},
		{"sent in full with the number", "projects/123456/secrets/DB_url", "DB_url", "", numbers, true},
		{"number learnt from the service's name", "DB_url", "projects/123456/secrets/DB_url",
			"projects/123456/locations/us-central1/services/mlflow", nil, true},
		{"another project's secret answered with its number", "projects/other-project/secrets/DB_url", "projects/777/secrets/DB_url", "",
			ProjectNumbers{"my-project": "123456", "other-project": "777"}, true},

		{"another secret", "DB_url", "DB_url_old", "", numbers, false},
		{"another secret, full form", "DB_url", "projects/123456/secrets/DB_url_old", "", numbers, false},
		{"moved to another project", "projects/other-project/secrets/DB_url", "DB_url", "", numbers, false},
		{"moved to another project, answered with the number", "projects/other-project/secrets/DB_url", "projects/123456/secrets/DB_url", "", numbers, false},
		{"moved back to the own project", "DB_url", "projects/other-project/secrets/DB_url", "", numbers, false},
		{"an unknown project number", "DB_url", "projects/999/secrets/DB_url", "", numbers, false},
	}
	c := testConfig(t, map[string]string{"INPUT_SECRETS": "/s/k=key"})
	for _, tc := range cases {
		for _, where := range []struct {
			field string
			set   func(s *runpb.Service, secret string)
		}{
			{"env", func(s *runpb.Service, secret string) {
				s.Template.Containers[0].Env[0].GetValueSource().GetSecretKeyRef().Secret = secret
			}},
			{"volumes", func(s *runpb.Service, secret string) { s.Template.Volumes[0].GetSecret().Secret = secret }},
		} {
			desired := Desired(c, testImage)
			where.set(desired, tc.desired)
			l := proto.Clone(desired).(*runpb.Service)
			where.set(l, tc.live)
			if tc.liveServiceName != "" {
				l.Name = tc.liveServiceName
			}
			var want []string
			if !tc.same {
				want = []string{where.field}
			}
			if diff := cmp.Diff(want, Changes(l, desired, tc.numbers)); diff != "" {
				t.Errorf("%s (%s): desired %s, live %s: Changes (-want +got):\n%s", tc.name, where.field, tc.desired, tc.live, diff)
			}
		}
	}
}
