package cloudrun

import (
	"slices"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	secret := func(name, secret, version string) *runpb.EnvVar {
		return &runpb.EnvVar{Name: name, Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{
			SecretKeyRef: &runpb.SecretKeySelector{Secret: secret, Version: version}}}}
	}
	live := &runpb.Service{
		Name:    "projects/p/locations/r/services/mlflow",
		Labels:  map[string]string{"commit-sha": "aaa"},
		Traffic: []*runpb.TrafficTarget{latest(100, "")},
		Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "img@sha256:1",
			Resources: &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "1", "memory": "2Gi"}}, Env: []*runpb.EnvVar{
				secret("DB_URL", "projects/123/secrets/DB_url", "3"), {Name: "A", Values: &runpb.EnvVar_Value{Value: "1"}},
			}}}},
	}
	desired := proto.Clone(live).(*runpb.Service)
	desired.Labels["commit-sha"] = "bbb"
	desired.Template.Containers[0].Image = "img@sha256:2"
	desired.Template.Containers[0].Env = []*runpb.EnvVar{secret("DB_URL", "projects/p/secrets/DB_url", "4"), {Name: "B", Values: &runpb.EnvVar_Value{Value: "2"}}}
	got := Plan(live, desired, ProjectNumbers{"p": "123"})
	want := []string{
		"labels.commit-sha: aaa → bbb",
		"image: img@sha256:1 → img@sha256:2",
		`env.A: "1" → (none)`,
		`env.B: (none) → "2"`,
		"env.DB_URL: secret DB_url version 3 → 4",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Plan() =\n%q\nwant\n%q", got, want)
	}
	if got := Plan(live, live, nil); len(got) != 0 {
		t.Errorf("Plan of an unchanged service = %q", got)
	}
	if got := Plan(nil, desired, nil); len(got) != 1 {
		t.Errorf("Plan of a new service = %q", got)
	}
}
