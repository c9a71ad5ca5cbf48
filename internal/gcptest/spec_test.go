package gcptest

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestValidateService(t *testing.T) {
	t.Parallel()
	env := func(name string) []*runpb.EnvVar {
		return []*runpb.EnvVar{{Name: name, Values: &runpb.EnvVar_Value{Value: "x"}}}
	}
	tests := []struct {
		name    string
		edit    func(s *runpb.Service)
		wantMsg string // "" for a valid spec
	}{
		{"minimal", func(*runpb.Service) {}, ""},
		{"full", func(s *runpb.Service) {
			c := s.Template.Containers[0]
			c.Ports = []*runpb.ContainerPort{{Name: "h2c", ContainerPort: 5000}}
			c.Resources = &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "2", "memory": "2Gi"}}
			c.VolumeMounts = []*runpb.VolumeMount{{Name: "cloudsql", MountPath: "/cloudsql"}}
			s.Template.Volumes = []*runpb.Volume{{Name: "cloudsql", VolumeType: &runpb.Volume_CloudSqlInstance{CloudSqlInstance: &runpb.CloudSqlInstance{Instances: []string{"p:r:i"}}}}}
			s.Template.Timeout = durationpb.New(time.Hour)
			s.Labels = map[string]string{"managed-by": "deploy-mlflow"}
		}, ""},
		{"the action's gRPC startup probe", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 3, TimeoutSeconds: 2, FailureThreshold: 80,
				ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 8080}}}
		}, ""},
		{"Cloud Run's default TCP startup probe", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 240, TimeoutSeconds: 240, FailureThreshold: 1,
				ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 8080}}}
		}, ""},
		{"HTTP probes with defaults", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{ProbeType: &runpb.Probe_HttpGet{HttpGet: &runpb.HTTPGetAction{Path: "/health"}}}
			s.Template.Containers[0].LivenessProbe = &runpb.Probe{PeriodSeconds: 600, ProbeType: &runpb.Probe_HttpGet{HttpGet: &runpb.HTTPGetAction{}}}
		}, ""},
		{"PORT in env", func(s *runpb.Service) { s.Template.Containers[0].Env = env("PORT") }, "reserved env names were provided: PORT"},
		{"K_SERVICE in env", func(s *runpb.Service) { s.Template.Containers[0].Env = env("K_SERVICE") }, "K_SERVICE"},
		{"no image", func(s *runpb.Service) { s.Template.Containers[0].Image = "" }, "image: field is required"},
		{"no container", func(s *runpb.Service) { s.Template.Containers = nil }, "at least one container"},
		{"two ports", func(s *runpb.Service) {
			s.Template.Containers[0].Ports = []*runpb.ContainerPort{{ContainerPort: 1}, {ContainerPort: 2}}
		}, "at most one port"},
		{"port name", func(s *runpb.Service) { s.Template.Containers[0].Ports = []*runpb.ContainerPort{{Name: "http2"}} }, "http1 or h2c"},
		{"memory", func(s *runpb.Service) {
			s.Template.Containers[0].Resources = &runpb.ResourceRequirements{Limits: map[string]string{"memory": "lots"}}
		}, "not a valid memory quantity"},
		{"cpu", func(s *runpb.Service) {
			s.Template.Containers[0].Resources = &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "two"}}
		}, "not a valid CPU quantity"},
		{"timeout", func(s *runpb.Service) { s.Template.Timeout = durationpb.New(2 * time.Hour) }, "3600 seconds"},
		{"concurrency", func(s *runpb.Service) { s.Template.MaxInstanceRequestConcurrency = 2000 }, "between 1 and 1000"},
		{"scaling", func(s *runpb.Service) {
			s.Template.Scaling = &runpb.RevisionScaling{MinInstanceCount: 3, MaxInstanceCount: 2}
		}, "must not exceed"},
		{"mount without volume", func(s *runpb.Service) {
			s.Template.Containers[0].VolumeMounts = []*runpb.VolumeMount{{Name: "cloudsql", MountPath: "/cloudsql"}}
		}, `no volume named "cloudsql"`},
		{"reserved label", func(s *runpb.Service) { s.Labels = map[string]string{"run.googleapis.com/ingress": "all"} }, "reserved prefix"},
		{"revision name", func(s *runpb.Service) { s.Template.Revision = "other-001" }, "must be prefixed by the name of the enclosing Service"},
		{"two containers, no ingress", func(s *runpb.Service) {
			s.Template.Containers = append(s.Template.Containers, &runpb.Container{Image: "sidecar"})
		}, "exactly one container must specify ports"},
		{"startup probe too long", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 300}
		}, "at most 240"},
		{"startup probe budget over 240 s", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 3, TimeoutSeconds: 2, FailureThreshold: 81,
				ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 8080}}}
		}, "within 240 s"},
		{"startup probe budget with its initial delay", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{InitialDelaySeconds: 1, PeriodSeconds: 3, TimeoutSeconds: 2, FailureThreshold: 80,
				ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 8080}}}
		}, "within 240 s"},
		{"probe timeout over its period", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 2, TimeoutSeconds: 3,
				ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{}}}
		}, "must not exceed period_seconds"},
		{"probe timeout over the default period", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{TimeoutSeconds: 11,
				ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{}}}
		}, "must not exceed period_seconds"},
		{"probe of no kind", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{PeriodSeconds: 3}
		}, "exactly one of http_get, tcp_socket or grpc"},
		{"probe port out of range", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: 70000}}}
		}, "between 1 and 65535"},
		{"negative threshold", func(s *runpb.Service) {
			s.Template.Containers[0].StartupProbe = &runpb.Probe{FailureThreshold: -1, ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{}}}
		}, "must not be negative"},
		{"TCP liveness probe", func(s *runpb.Service) {
			s.Template.Containers[0].LivenessProbe = &runpb.Probe{ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{}}}
		}, "liveness probe must be http_get or grpc"},
		{"traffic", func(s *runpb.Service) {
			s.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, Percent: 100}}
		}, "revision: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := mlflowService("img")
			tt.edit(svc)
			err := validateService(svc, "mlflow")
			switch {
			case tt.wantMsg == "" && err != nil:
				t.Errorf("a valid spec was refused: %v", err)
			case tt.wantMsg != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Errorf("error = %v, want INVALID_ARGUMENT containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	t.Parallel()
	t.Run("what the caller set is kept", func(t *testing.T) {
		svc := mlflowService("img")
		c := svc.Template.Containers[0]
		c.Ports = []*runpb.ContainerPort{{Name: "h2c", ContainerPort: 5000}}
		c.Resources = &runpb.ResourceRequirements{Limits: map[string]string{"memory": "2Gi"}}
		c.StartupProbe = &runpb.Probe{ProbeType: &runpb.Probe_HttpGet{HttpGet: &runpb.HTTPGetAction{Path: "/health"}}}
		svc.Template.ServiceAccount = "mlflow@p.iam.gserviceaccount.com"
		svc.Template.Scaling = &runpb.RevisionScaling{MinInstanceCount: 1, MaxInstanceCount: 3}
		applyDefaults(svc, "42")
		probe := c.StartupProbe
		if c.Ports[0].Name != "h2c" || c.Ports[0].ContainerPort != 5000 {
			t.Errorf("ports = %v", c.Ports)
		}
		if c.Resources.Limits["memory"] != "2Gi" || c.Resources.Limits["cpu"] != "1000m" || c.Resources.CpuIdle {
			t.Errorf("resources = %v; want the memory kept, cpu defaulted and cpu_idle left false", c.Resources)
		}
		if probe.GetHttpGet().GetPort() != 5000 || probe.GetHttpGet().GetPath() != "/health" || probe.PeriodSeconds != 10 || probe.TimeoutSeconds != 1 || probe.FailureThreshold != 3 {
			t.Errorf("startup probe = %v", probe)
		}
		if svc.Template.ServiceAccount != "mlflow@p.iam.gserviceaccount.com" || svc.Template.Scaling.MaxInstanceCount != 3 {
			t.Errorf("template = %v", svc.Template)
		}
	})
	t.Run("a sidecar gets no port or probe", func(t *testing.T) {
		svc := mlflowService("img")
		svc.Template.Containers[0].Ports = []*runpb.ContainerPort{{ContainerPort: 8080}}
		svc.Template.Containers = append(svc.Template.Containers, &runpb.Container{Image: "proxy"})
		applyDefaults(svc, "42")
		side := svc.Template.Containers[1]
		if len(side.Ports) != 0 || side.StartupProbe != nil || side.Resources.Limits["memory"] != "512Mi" {
			t.Errorf("sidecar = %v", side)
		}
		if svc.Template.ServiceAccount != "42-compute@developer.gserviceaccount.com" || svc.Traffic[0].Percent != 100 {
			t.Errorf("service account %q, traffic %v", svc.Template.ServiceAccount, svc.Traffic)
		}
	})
}

func TestRevisionName(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 20 {
		n := revisionName("mlflow", 7)
		if !strings.HasPrefix(n, "mlflow-00007-") || len(n) != len("mlflow-00007-abc") || strings.Trim(n[len(n)-3:], "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Fatalf("revisionName = %q", n)
		}
		seen[n] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct names in 20: the suffix is not random", len(seen))
	}
}
