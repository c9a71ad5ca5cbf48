package cloudrun

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// ContainerPort is the port the server listens on; Cloud Run passes it as $PORT. Naming the port h2c
// makes Cloud Run speak HTTP/2 to the container, which lifts the 32 MiB request limit of HTTP/1.
const (
	ContainerPort = 8080
	PortName      = "h2c"
	ContainerName = "mlflow"
	CloudSQLMount = "/cloudsql"
	cloudSQLName  = "cloudsql"
)

// The startup probe holds traffic until MLflow answers: 3 s apart for up to 240 s (period x threshold),
// Cloud Run's limit, each try given 2 s (a timeout must not exceed the period).
const (
	probePeriodSeconds    = 3
	probeTimeoutSeconds   = 2
	probeFailureThreshold = 80
)

// Name is the service's resource name.
func Name(project, region, service string) string {
	return fmt.Sprintf("projects/%s/locations/%s/services/%s", project, region, service)
}

// Desired is the service the action asks Cloud Run for, running image (pinned by digest). It is a pure
// function of the config: the same inputs give the same service.
func Desired(c *config.Config, image string) *runpb.Service {
	labels := map[string]string{config.LabelManagedBy: "deploy-mlflow", config.LabelCommit: labelValue(c.Commit)}
	for k, v := range c.Labels {
		labels[k] = v
	}

	ctr := &runpb.Container{
		Name:  ContainerName,
		Image: image,
		Ports: []*runpb.ContainerPort{{Name: PortName, ContainerPort: ContainerPort}},
		Env:   env(c),
		Resources: &runpb.ResourceRequirements{
			Limits: map[string]string{"cpu": c.CPU, "memory": c.Memory},
			// Setting resources turns CpuIdle off by default; keep request-only billing.
			CpuIdle:         true,
			StartupCpuBoost: true,
		},
		StartupProbe: &runpb.Probe{
			TimeoutSeconds:   probeTimeoutSeconds,
			PeriodSeconds:    probePeriodSeconds,
			FailureThreshold: probeFailureThreshold,
			// gRPC health checking, which the server answers over h2c: Cloud Run documents HTTP probes
			// only for services that use HTTP/1, and ours uses HTTP/2 end to end. The empty service
			// name asks for the server's overall health, SERVING once MLflow answers.
			ProbeType: &runpb.Probe_Grpc{Grpc: &runpb.GRPCAction{Port: ContainerPort, Service: ""}},
		},
	}
	var volumes []*runpb.Volume
	if len(c.CloudSQLInstances) > 0 {
		volumes = append(volumes, &runpb.Volume{Name: cloudSQLName, VolumeType: &runpb.Volume_CloudSqlInstance{
			CloudSqlInstance: &runpb.CloudSqlInstance{Instances: append([]string(nil), c.CloudSQLInstances...)},
		}})
		ctr.VolumeMounts = append(ctr.VolumeMounts, &runpb.VolumeMount{Name: cloudSQLName, MountPath: CloudSQLMount})
	}
	secretVolumes, mounts := secretFiles(c)
	volumes = append(volumes, secretVolumes...)
	ctr.VolumeMounts = append(ctr.VolumeMounts, mounts...)

	return &runpb.Service{
		Name:   Name(c.ProjectID, c.Region, c.Service),
		Labels: labels,
		Template: &runpb.RevisionTemplate{
			ServiceAccount:                c.ServiceAccount,
			Scaling:                       &runpb.RevisionScaling{MinInstanceCount: c.MinInstances, MaxInstanceCount: c.MaxInstances},
			Timeout:                       durationpb.New(c.Timeout),
			MaxInstanceRequestConcurrency: c.Concurrency,
			Containers:                    []*runpb.Container{ctr},
			Volumes:                       volumes,
		},
		Traffic: []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100}},
		// Cloud Run's recommended way to make a service public: it works where the domain-restricted-sharing
		// organization policy refuses an allUsers binding.
		InvokerIamDisabled: Public(c),
	}
}

// env is the container's environment: the server's settings first, then the secrets (the action's own
// MLflow variables, then the user's) and the user's variables.
func env(c *config.Config) []*runpb.EnvVar {
	out := []*runpb.EnvVar{secretEnv(serverenv.BackendStoreURI, c.ProjectID, c.BackendStore)}
	if c.ArtifactsDestinationSecret != nil {
		out = append(out, secretEnv(serverenv.ArtifactsDestination, c.ProjectID, *c.ArtifactsDestinationSecret))
	} else {
		out = append(out, plainEnv(serverenv.ArtifactsDestination, c.ArtifactsDestination))
	}
	out = append(out, plainEnv(serverenv.Auth, c.Auth))
	if c.DefaultPermission != "" {
		out = append(out, plainEnv(serverenv.DefaultPermission, c.DefaultPermission))
	}
	if c.Username != nil {
		out = append(out, secretEnv(serverenv.Username, c.ProjectID, *c.Username))
	}
	if c.Password != nil {
		out = append(out, secretEnv(serverenv.Password, c.ProjectID, *c.Password))
	}
	out = append(out, plainEnv(serverenv.Workers, strconv.Itoa(int(c.Workers))))
	for _, m := range c.Secrets {
		if m.Env != "" {
			out = append(out, secretEnv(m.Env, c.ProjectID, m.Ref))
		}
	}
	for _, e := range c.EnvVars {
		out = append(out, plainEnv(e.Name, e.Value))
	}
	return out
}

func plainEnv(name, value string) *runpb.EnvVar {
	return &runpb.EnvVar{Name: name, Values: &runpb.EnvVar_Value{Value: value}}
}

func secretEnv(name, project string, ref config.SecretRef) *runpb.EnvVar {
	return &runpb.EnvVar{Name: name, Values: &runpb.EnvVar_ValueSource{ValueSource: &runpb.EnvVarSource{
		SecretKeyRef: &runpb.SecretKeySelector{Secret: secretName(project, ref), Version: ref.Version},
	}}}
}

// secretName is the secret's ID in the service's own project, its full name in another.
func secretName(project string, ref config.SecretRef) string {
	if ref.Project == project {
		return ref.Secret
	}
	return "projects/" + ref.Project + "/secrets/" + ref.Secret
}

// secretFiles mounts file secrets: one volume per directory, since Cloud Run mounts a secret as a
// directory holding its versions as files.
func secretFiles(c *config.Config) ([]*runpb.Volume, []*runpb.VolumeMount) {
	byDir := map[string]*runpb.SecretVolumeSource{}
	for _, m := range c.Secrets {
		if m.Path == "" {
			continue
		}
		dir, file := path.Split(m.Path)
		dir = strings.TrimSuffix(dir, "/")
		src := byDir[dir]
		if src == nil {
			src = &runpb.SecretVolumeSource{Secret: secretName(c.ProjectID, m.Ref)}
			byDir[dir] = src
		}
		src.Items = append(src.Items, &runpb.VersionToPath{Path: file, Version: m.Ref.Version})
	}
	dirs := make([]string, 0, len(byDir))
	for d := range byDir {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	var volumes []*runpb.Volume
	var mounts []*runpb.VolumeMount
	for i, d := range dirs {
		name := fmt.Sprintf("secret-%d", i+1)
		volumes = append(volumes, &runpb.Volume{Name: name, VolumeType: &runpb.Volume_Secret{Secret: byDir[d]}})
		mounts = append(mounts, &runpb.VolumeMount{Name: name, MountPath: d})
	}
	return volumes, mounts
}

// labelValue fits a value into a label's 63 characters.
func labelValue(v string) string {
	if len(v) > 63 {
		return v[:63]
	}
	return v
}
