package cloudrun

import (
	"maps"
	"slices"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
)

// Changes lists the fields the action sets that differ between the live service and the desired one;
// none means no update is needed. Cloud Run returns more than it was sent (server-side defaults,
// output-only fields, names with the project number), so only the fields Desired sets are compared,
// each in a normal form; numbers are the project numbers known to the caller.
func Changes(live, desired *runpb.Service, numbers ProjectNumbers) []string {
	names := newSecretNames(live.GetName(), desired.GetName(), numbers)
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
	add("invoker_iam_disabled", live.GetInvokerIamDisabled() == desired.GetInvokerIamDisabled())

	lt, dt := live.GetTemplate(), desired.GetTemplate()
	if dt.GetServiceAccount() != "" {
		add("service_account", lt.GetServiceAccount() == dt.GetServiceAccount())
	}
	add("scaling", lt.GetScaling().GetMinInstanceCount() == dt.GetScaling().GetMinInstanceCount() &&
		lt.GetScaling().GetMaxInstanceCount() == dt.GetScaling().GetMaxInstanceCount())
	add("timeout", lt.GetTimeout().AsDuration() == dt.GetTimeout().AsDuration())
	add("concurrency", lt.GetMaxInstanceRequestConcurrency() == dt.GetMaxInstanceRequestConcurrency())
	add("volumes", sameVolumes(names, lt.GetVolumes(), dt.GetVolumes()))

	if len(lt.GetContainers()) != 1 {
		return append(out, "containers")
	}
	lc, dc := lt.GetContainers()[0], dt.GetContainers()[0]
	add("image", lc.GetImage() == dc.GetImage())
	add("container.name", lc.GetName() == dc.GetName())
	add("ports", samePorts(lc.GetPorts(), dc.GetPorts()))
	add("env", sameEnv(names, lc.GetEnv(), dc.GetEnv()))
	add("resources", sameResources(lc.GetResources(), dc.GetResources()))
	add("startup_probe", sameProbe(lc.GetStartupProbe(), dc.GetStartupProbe()))
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
	out.InvokerIamDisabled = desired.InvokerIamDisabled
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
	return slices.EqualFunc(live, desired, func(l, d *runpb.TrafficTarget) bool {
		return l.GetType() == d.GetType() && l.GetPercent() == d.GetPercent() && l.GetRevision() == d.GetRevision() && l.GetTag() == d.GetTag()
	})
}

func samePorts(live, desired []*runpb.ContainerPort) bool {
	return slices.EqualFunc(live, desired, func(l, d *runpb.ContainerPort) bool {
		return l.GetName() == d.GetName() && l.GetContainerPort() == d.GetContainerPort()
	})
}

func sameEnv(names secretNames, live, desired []*runpb.EnvVar) bool {
	return slices.EqualFunc(live, desired, func(l, d *runpb.EnvVar) bool {
		lr, dr := l.GetValueSource().GetSecretKeyRef(), d.GetValueSource().GetSecretKeyRef()
		return l.GetName() == d.GetName() && l.GetValue() == d.GetValue() && (lr == nil) == (dr == nil) &&
			lr.GetVersion() == dr.GetVersion() && (lr == nil || names.same(lr.GetSecret(), dr.GetSecret()))
	})
}

func sameResources(live, desired *runpb.ResourceRequirements) bool {
	lm, lok := config.MemoryMi(live.GetLimits()["memory"])
	dm, dok := config.MemoryMi(desired.GetLimits()["memory"])
	lc, _ := config.CPUMillis(live.GetLimits()["cpu"])
	dc, _ := config.CPUMillis(desired.GetLimits()["cpu"])
	return lok && dok && lm == dm && lc == dc &&
		live.GetCpuIdle() == desired.GetCpuIdle() && live.GetStartupCpuBoost() == desired.GetStartupCpuBoost()
}

// sameProbe compares the fields Desired sets, so that a default Cloud Run adds does not read as a change;
// a probe of another kind (HTTP where gRPC is wanted) is a change.
func sameProbe(live, desired *runpb.Probe) bool {
	if live.GetTimeoutSeconds() != desired.GetTimeoutSeconds() || live.GetPeriodSeconds() != desired.GetPeriodSeconds() ||
		live.GetFailureThreshold() != desired.GetFailureThreshold() || live.GetInitialDelaySeconds() != desired.GetInitialDelaySeconds() {
		return false
	}
	lh, dh := live.GetHttpGet(), desired.GetHttpGet()
	lt, dt := live.GetTcpSocket(), desired.GetTcpSocket()
	lg, dg := live.GetGrpc(), desired.GetGrpc()
	return (lh == nil) == (dh == nil) && (lt == nil) == (dt == nil) && (lg == nil) == (dg == nil) &&
		lh.GetPath() == dh.GetPath() && lh.GetPort() == dh.GetPort() &&
		lt.GetPort() == dt.GetPort() &&
		lg.GetPort() == dg.GetPort() && lg.GetService() == dg.GetService()
}

func sameMounts(live, desired []*runpb.VolumeMount) bool {
	return slices.EqualFunc(live, desired, func(l, d *runpb.VolumeMount) bool {
		return l.GetName() == d.GetName() && l.GetMountPath() == d.GetMountPath()
	})
}

func sameVolumes(names secretNames, live, desired []*runpb.Volume) bool {
	return slices.EqualFunc(live, desired, func(l, d *runpb.Volume) bool {
		if l.GetName() != d.GetName() {
			return false
		}
		if d.GetCloudSqlInstance() != nil {
			return slices.Equal(l.GetCloudSqlInstance().GetInstances(), d.GetCloudSqlInstance().GetInstances())
		}
		ls, ds := l.GetSecret(), d.GetSecret()
		return ls != nil && names.same(ls.GetSecret(), ds.GetSecret()) &&
			slices.EqualFunc(ls.GetItems(), ds.GetItems(), func(li, di *runpb.VersionToPath) bool {
				return li.GetPath() == di.GetPath() && li.GetVersion() == di.GetVersion()
			})
	})
}
