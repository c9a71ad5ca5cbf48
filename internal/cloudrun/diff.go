package cloudrun

import (
	"maps"
	"slices"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// Changes lists the fields the action sets that differ between the live service and the desired one;
// none means no update is needed. Cloud Run returns more than it was sent (server-side defaults,
// output-only fields, names with the project number), so only the fields Desired sets are compared,
// each in a normal form.
func Changes(live, desired *runpb.Service) []string {
	var out []string
	add := func(field string, same bool) {
		if !same {
			out = append(out, field)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(desired.Labels)) {
		v, ok := live.Labels[k]
		add("labels."+k, ok && v == desired.Labels[k])
	}
	add("traffic", sameTraffic(live.Traffic, desired.Traffic))

	lt, dt := live.GetTemplate(), desired.GetTemplate()
	if dt.GetServiceAccount() != "" {
		add("service_account", lt.GetServiceAccount() == dt.GetServiceAccount())
	}
	add("scaling", lt.GetScaling().GetMinInstanceCount() == dt.GetScaling().GetMinInstanceCount() &&
		lt.GetScaling().GetMaxInstanceCount() == dt.GetScaling().GetMaxInstanceCount())
	add("timeout", lt.GetTimeout().AsDuration() == dt.GetTimeout().AsDuration())
	add("concurrency", lt.GetMaxInstanceRequestConcurrency() == dt.GetMaxInstanceRequestConcurrency())
	add("volumes", sameVolumes(lt.GetVolumes(), dt.GetVolumes()))

	if len(lt.GetContainers()) != 1 {
		return append(out, "containers")
	}
	lc, dc := lt.GetContainers()[0], dt.GetContainers()[0]
	add("image", lc.GetImage() == dc.GetImage())
	add("container.name", lc.GetName() == dc.GetName())
	add("ports", samePorts(lc.GetPorts(), dc.GetPorts()))
	add("env", sameEnv(lc.GetEnv(), dc.GetEnv()))
	add("resources", sameResources(lc.GetResources(), dc.GetResources()))
	add("startup_probe", proto.Equal(lc.GetStartupProbe(), dc.GetStartupProbe()))
	add("volume_mounts", sameMounts(lc.GetVolumeMounts(), dc.GetVolumeMounts()))
	add("command", len(lc.GetCommand()) == 0 && len(lc.GetArgs()) == 0)
	return out
}

// Apply writes the desired fields into a copy of the live service, keeping everything the action does
// not manage (annotations, ingress, VPC access, other labels, ...) and the live etag.
func Apply(live, desired *runpb.Service) *runpb.Service {
	out := proto.Clone(live).(*runpb.Service)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for k, v := range desired.Labels {
		out.Labels[k] = v
	}
	out.Traffic = desired.Traffic
	if out.Template == nil {
		out.Template = &runpb.RevisionTemplate{}
	}
	t, d := out.Template, desired.Template
	// A fixed revision name would make the update fail; let Cloud Run name the new revision.
	t.Revision = ""
	if d.ServiceAccount != "" {
		t.ServiceAccount = d.ServiceAccount
	}
	if t.Scaling == nil {
		t.Scaling = &runpb.RevisionScaling{}
	}
	t.Scaling.MinInstanceCount, t.Scaling.MaxInstanceCount = d.Scaling.MinInstanceCount, d.Scaling.MaxInstanceCount
	t.Timeout = d.Timeout
	t.MaxInstanceRequestConcurrency = d.MaxInstanceRequestConcurrency
	t.Containers = d.Containers
	t.Volumes = d.Volumes
	return out
}

func sameTraffic(live, desired []*runpb.TrafficTarget) bool {
	if len(live) != len(desired) {
		return false
	}
	for i := range live {
		l, d := live[i], desired[i]
		if l.GetType() != d.GetType() || l.GetPercent() != d.GetPercent() || l.GetRevision() != d.GetRevision() {
			return false
		}
	}
	return true
}

func samePorts(live, desired []*runpb.ContainerPort) bool {
	if len(live) != len(desired) {
		return false
	}
	for i := range live {
		if live[i].GetName() != desired[i].GetName() || live[i].GetContainerPort() != desired[i].GetContainerPort() {
			return false
		}
	}
	return true
}

func sameEnv(live, desired []*runpb.EnvVar) bool {
	if len(live) != len(desired) {
		return false
	}
	for i := range live {
		l, d := live[i], desired[i]
		if l.GetName() != d.GetName() || l.GetValue() != d.GetValue() {
			return false
		}
		lr, dr := l.GetValueSource().GetSecretKeyRef(), d.GetValueSource().GetSecretKeyRef()
		if (lr == nil) != (dr == nil) || lr.GetVersion() != dr.GetVersion() || secretID(lr.GetSecret()) != secretID(dr.GetSecret()) {
			return false
		}
	}
	return true
}

// secretID is the last segment of a secret name: Cloud Run may answer projects/NUMBER/secrets/S where
// it was sent S.
func secretID(name string) string {
	return name[strings.LastIndexByte(name, '/')+1:]
}

func sameResources(live, desired *runpb.ResourceRequirements) bool {
	lm, lok := config.MemoryMi(live.GetLimits()["memory"])
	dm, dok := config.MemoryMi(desired.GetLimits()["memory"])
	lc, _ := config.CPUMillis(live.GetLimits()["cpu"])
	dc, _ := config.CPUMillis(desired.GetLimits()["cpu"])
	return lok && dok && lm == dm && lc == dc &&
		live.GetCpuIdle() == desired.GetCpuIdle() && live.GetStartupCpuBoost() == desired.GetStartupCpuBoost()
}

func sameMounts(live, desired []*runpb.VolumeMount) bool {
	if len(live) != len(desired) {
		return false
	}
	for i := range live {
		if live[i].GetName() != desired[i].GetName() || live[i].GetMountPath() != desired[i].GetMountPath() {
			return false
		}
	}
	return true
}

func sameVolumes(live, desired []*runpb.Volume) bool {
	if len(live) != len(desired) {
		return false
	}
	for i := range live {
		l, d := live[i], desired[i]
		if l.GetName() != d.GetName() {
			return false
		}
		switch {
		case d.GetCloudSqlInstance() != nil:
			if !slices.Equal(l.GetCloudSqlInstance().GetInstances(), d.GetCloudSqlInstance().GetInstances()) {
				return false
			}
		case d.GetSecret() != nil:
			ls, ds := l.GetSecret(), d.GetSecret()
			if ls == nil || secretID(ls.GetSecret()) != secretID(ds.GetSecret()) || len(ls.GetItems()) != len(ds.GetItems()) {
				return false
			}
			for j := range ds.GetItems() {
				if ls.GetItems()[j].GetPath() != ds.GetItems()[j].GetPath() || ls.GetItems()[j].GetVersion() != ds.GetItems()[j].GetVersion() {
					return false
				}
			}
		}
	}
	return true
}
