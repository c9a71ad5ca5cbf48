package gcptest

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/genproto/googleapis/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// This file holds what Cloud Run does to a Service spec before storing it: refuse what it does not accept,
// drop what the caller may not set, and fill in its server-side defaults.

var (
	serviceIDPattern = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$`)
	regionPattern    = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	cpuPattern       = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?|[0-9]+m)$`)
	memoryPattern    = regexp.MustCompile(`^([0-9]+)(Ki|Mi|Gi|k|M|G)?$`)
)

// Environment variables Cloud Run sets itself and refuses in a spec.
var reservedEnv = []string{"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}

// Label and annotation prefixes the v2 API reserves.
var reservedPrefixes = []string{"run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev"}

// validateService refuses a spec the way the Cloud Run Admin API does, with INVALID_ARGUMENT.
func validateService(svc *runpb.Service, serviceID string) error {
	if err := validateMetadata("service", svc.GetLabels(), svc.GetAnnotations()); err != nil {
		return err
	}
	t := svc.GetTemplate()
	if t == nil {
		return invalid("service.template: field is required.")
	}
	if err := validateMetadata("service.template", t.GetLabels(), t.GetAnnotations()); err != nil {
		return err
	}
	if rev := t.GetRevision(); rev != "" && !strings.HasPrefix(rev, serviceID+"-") {
		return invalid("service.template.revision: revision name %q must be prefixed by the name of the enclosing Service with a trailing -.", rev)
	}
	if len(t.GetContainers()) == 0 {
		return invalid("service.template.containers: at least one container is required.")
	}
	if d := t.GetTimeout(); d != nil && (d.AsDuration() <= 0 || d.AsDuration() > time.Hour) {
		return invalid("service.template.timeout: must be between 1 second and 3600 seconds, got %s.", d.AsDuration())
	}
	if c := t.GetMaxInstanceRequestConcurrency(); c < 0 || c > 1000 {
		return invalid("service.template.max_instance_request_concurrency: must be between 1 and 1000, got %d.", c)
	}
	if s := t.GetScaling(); s != nil && s.GetMaxInstanceCount() != 0 && s.GetMinInstanceCount() > s.GetMaxInstanceCount() {
		return invalid("service.template.scaling: min_instance_count (%d) must not exceed max_instance_count (%d).", s.GetMinInstanceCount(), s.GetMaxInstanceCount())
	}
	volumes := map[string]bool{}
	for i, v := range t.GetVolumes() {
		if v.GetName() == "" {
			return invalid("service.template.volumes[%d].name: field is required.", i)
		}
		volumes[v.GetName()] = true
	}
	ingress := 0
	for i, c := range t.GetContainers() {
		if err := validateContainer(fmt.Sprintf("service.template.containers[%d]", i), c, volumes); err != nil {
			return err
		}
		if len(c.GetPorts()) > 0 {
			ingress++
		}
	}
	if len(t.GetContainers()) > 1 && ingress != 1 {
		return invalid("service.template.containers: exactly one container must specify ports (the ingress container), got %d.", ingress)
	}
	return validateTraffic(svc.GetTraffic())
}

func validateMetadata(field string, labels, annotations map[string]string) error {
	for _, m := range []map[string]string{labels, annotations} {
		for k := range m {
			for _, p := range reservedPrefixes {
				if strings.HasPrefix(k, p) {
					return invalid("%s: the key %q uses the reserved prefix %s; Cloud Run API v2 sets these through fields.", field, k, p)
				}
			}
		}
	}
	return nil
}

func validateContainer(field string, c *runpb.Container, volumes map[string]bool) error {
	if c.GetImage() == "" {
		return invalid("%s.image: field is required.", field)
	}
	if len(c.GetPorts()) > 1 {
		return invalid("%s.ports: at most one port may be specified.", field)
	}
	for _, p := range c.GetPorts() {
		if n := p.GetName(); n != "" && n != "http1" && n != "h2c" {
			return invalid("%s.ports[0].name: must be http1 or h2c, got %q.", field, n)
		}
		if p.GetContainerPort() < 0 || p.GetContainerPort() > 65535 {
			return invalid("%s.ports[0].container_port: %d is not a valid port.", field, p.GetContainerPort())
		}
	}
	var reserved []string
	for i, e := range c.GetEnv() {
		if e.GetName() == "" {
			return invalid("%s.env[%d].name: field is required.", field, i)
		}
		if slices.Contains(reservedEnv, e.GetName()) {
			reserved = append(reserved, e.GetName())
		}
		if ref := e.GetValueSource().GetSecretKeyRef(); e.GetValueSource() != nil && ref.GetSecret() == "" {
			return invalid("%s.env[%d].value_source.secret_key_ref.secret: field is required.", field, i)
		}
	}
	if len(reserved) > 0 {
		return invalid("The following reserved env names were provided: %s. These values are automatically set by the system.", strings.Join(reserved, ", "))
	}
	for k, v := range c.GetResources().GetLimits() {
		switch k {
		case "cpu":
			if !cpuPattern.MatchString(v) {
				return invalid("%s.resources.limits.cpu: %q is not a valid CPU quantity.", field, v)
			}
		case "memory":
			if !memoryPattern.MatchString(v) {
				return invalid("%s.resources.limits.memory: %q is not a valid memory quantity.", field, v)
			}
		case "nvidia.com/gpu":
		default:
			return invalid("%s.resources.limits: unknown resource %q.", field, k)
		}
	}
	for i, m := range c.GetVolumeMounts() {
		if !volumes[m.GetName()] {
			return invalid("%s.volume_mounts[%d].name: no volume named %q.", field, i, m.GetName())
		}
		if !strings.HasPrefix(m.GetMountPath(), "/") {
			return invalid("%s.volume_mounts[%d].mount_path: must be an absolute path, got %q.", field, i, m.GetMountPath())
		}
	}
	if err := validateProbe(field+".startup_probe", c.GetStartupProbe(), true); err != nil {
		return err
	}
	return validateProbe(field+".liveness_probe", c.GetLivenessProbe(), false)
}

// validateProbe checks a probe as Cloud Run's reference states the limits (fields left 0 take their
// defaults: timeout 1 s, period 10 s, threshold 3): exactly one kind; HTTP, TCP or gRPC for a startup
// probe, HTTP or gRPC for a liveness probe; a startup probe's delay and period at most 240 s and its whole
// budget, initial delay + period x failure threshold, at most 240 s; a timeout of 1 to 3600 s and at most
// the period; ports 1 to 65535.
func validateProbe(field string, p *runpb.Probe, startup bool) error {
	if p == nil {
		return nil
	}
	maxSeconds := int32(3600)
	if startup {
		maxSeconds = 240
	}
	if p.GetInitialDelaySeconds() < 0 || p.GetTimeoutSeconds() < 0 || p.GetPeriodSeconds() < 0 || p.GetFailureThreshold() < 0 {
		return invalid("%s: initial_delay_seconds, timeout_seconds, period_seconds and failure_threshold must not be negative.", field)
	}
	if p.GetPeriodSeconds() > maxSeconds || p.GetInitialDelaySeconds() > maxSeconds {
		return invalid("%s: initial_delay_seconds and period_seconds must be at most %d.", field, maxSeconds)
	}
	if p.GetTimeoutSeconds() > 3600 {
		return invalid("%s.timeout_seconds: must be at most 3600.", field)
	}
	timeout, period, threshold := cmp.Or(p.GetTimeoutSeconds(), 1), cmp.Or(p.GetPeriodSeconds(), 10), cmp.Or(p.GetFailureThreshold(), 3)
	if timeout > period {
		return invalid("%s.timeout_seconds: %d must not exceed period_seconds (%d).", field, timeout, period)
	}
	if startup && int64(p.GetInitialDelaySeconds())+int64(period)*int64(threshold) > 240 {
		return invalid("%s: initial_delay_seconds + period_seconds x failure_threshold = %d s; a startup probe must succeed within 240 s.",
			field, int64(p.GetInitialDelaySeconds())+int64(period)*int64(threshold))
	}
	var port int32
	switch pt := p.GetProbeType().(type) {
	case *runpb.Probe_HttpGet:
		port = pt.HttpGet.GetPort()
	case *runpb.Probe_TcpSocket:
		if !startup {
			return invalid("%s.tcp_socket: a liveness probe must be http_get or grpc.", field)
		}
		port = pt.TcpSocket.GetPort()
	case *runpb.Probe_Grpc:
		port = pt.Grpc.GetPort()
	default:
		return invalid("%s: exactly one of http_get, tcp_socket or grpc must be specified.", field)
	}
	if port < 0 || port > 65535 {
		return invalid("%s: port %d must be between 1 and 65535.", field, port)
	}
	return nil
}

func validateTraffic(traffic []*runpb.TrafficTarget) error {
	if len(traffic) == 0 {
		return nil
	}
	var sum int32
	for i, t := range traffic {
		switch t.GetType() {
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST:
		case runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION:
			if t.GetRevision() == "" {
				return invalid("service.traffic[%d].revision: required for TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION.", i)
			}
		default:
			return invalid("service.traffic[%d].type: must be LATEST or REVISION.", i)
		}
		if t.GetPercent() < 0 || t.GetPercent() > 100 {
			return invalid("service.traffic[%d].percent: must be between 0 and 100.", i)
		}
		sum += t.GetPercent()
	}
	if sum != 100 {
		return invalid("service.traffic: the percentages must add up to 100, got %d.", sum)
	}
	return nil
}

// clearOutputOnly drops what a caller may send back from a read but cannot set.
func clearOutputOnly(svc *runpb.Service) {
	svc.Uid, svc.Generation, svc.Etag = "", 0, ""
	svc.CreateTime, svc.UpdateTime, svc.DeleteTime, svc.ExpireTime = nil, nil, nil, nil
	svc.Creator, svc.LastModifier = "", ""
	svc.Urls, svc.Uri = nil, ""
	svc.ObservedGeneration, svc.TerminalCondition, svc.Conditions = 0, nil, nil
	svc.LatestReadyRevision, svc.LatestCreatedRevision, svc.TrafficStatuses = "", "", nil
	svc.Reconciling, svc.SatisfiesPzs, svc.ThreatDetectionEnabled = false, false, false
}

// applyDefaults fills in what Cloud Run fills in when a spec leaves it unset, so that a read returns it.
func applyDefaults(svc *runpb.Service, projectNumber string) {
	if svc.Ingress == runpb.IngressTraffic_INGRESS_TRAFFIC_UNSPECIFIED {
		svc.Ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_ALL
	}
	if svc.LaunchStage == api.LaunchStage_LAUNCH_STAGE_UNSPECIFIED {
		svc.LaunchStage = api.LaunchStage_GA
	}
	if len(svc.Traffic) == 0 {
		svc.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100}}
	}
	t := svc.Template
	if t.MaxInstanceRequestConcurrency == 0 {
		t.MaxInstanceRequestConcurrency = 80
	}
	if t.Timeout == nil {
		t.Timeout = durationpb.New(300 * time.Second)
	}
	if t.ServiceAccount == "" {
		t.ServiceAccount = projectNumber + "-compute@developer.gserviceaccount.com"
	}
	if t.Scaling == nil {
		t.Scaling = &runpb.RevisionScaling{}
	}
	if t.Scaling.MaxInstanceCount == 0 {
		t.Scaling.MaxInstanceCount = 100
	}
	for i, c := range t.Containers {
		ingress := len(c.Ports) > 0 || (i == 0 && len(t.Containers) == 1)
		if ingress && len(c.Ports) == 0 {
			c.Ports = []*runpb.ContainerPort{{}}
		}
		for _, p := range c.Ports {
			if p.Name == "" {
				p.Name = "http1"
			}
			if p.ContainerPort == 0 {
				p.ContainerPort = 8080
			}
		}
		if c.Resources == nil {
			// Without resources, the container is billed per request (cpu_idle); once the caller sets
			// resources, cpu_idle is whatever it sent.
			c.Resources = &runpb.ResourceRequirements{CpuIdle: true}
		}
		if c.Resources.Limits == nil {
			c.Resources.Limits = map[string]string{}
		}
		if c.Resources.Limits["cpu"] == "" {
			c.Resources.Limits["cpu"] = "1000m"
		}
		if c.Resources.Limits["memory"] == "" {
			c.Resources.Limits["memory"] = "512Mi"
		}
		if !ingress {
			continue
		}
		port := c.Ports[0].ContainerPort
		if c.StartupProbe == nil {
			c.StartupProbe = &runpb.Probe{
				TimeoutSeconds: 240, PeriodSeconds: 240, FailureThreshold: 1,
				ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: port}},
			}
		}
		for _, p := range []*runpb.Probe{c.StartupProbe, c.LivenessProbe} {
			defaultProbe(p, port)
		}
	}
}

func defaultProbe(p *runpb.Probe, port int32) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	switch pt := p.ProbeType.(type) {
	case *runpb.Probe_HttpGet:
		if pt.HttpGet.Path == "" {
			pt.HttpGet.Path = "/"
		}
		if pt.HttpGet.Port == 0 {
			pt.HttpGet.Port = port
		}
	case *runpb.Probe_TcpSocket:
		if pt.TcpSocket.Port == 0 {
			pt.TcpSocket.Port = port
		}
	case *runpb.Probe_Grpc:
		if pt.Grpc.Port == 0 {
			pt.Grpc.Port = port
		}
	}
}

// spec is the part of a service its caller sets: everything but output-only fields and its name.
func spec(svc *runpb.Service) *runpb.Service {
	s := proto.Clone(svc).(*runpb.Service)
	clearOutputOnly(s)
	s.Name = ""
	return s
}

// merge applies an update to the stored spec: the whole service, or with an update mask only the named
// top-level fields (a nested path such as scaling.min_instance_count replaces all of scaling).
func merge(stored, update *runpb.Service, paths []string) (*runpb.Service, error) {
	if len(paths) == 0 {
		return update, nil
	}
	dst, src := stored.ProtoReflect(), update.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for _, path := range paths {
		top, _, _ := strings.Cut(path, ".")
		fd := fields.ByName(protoreflect.Name(snakeCase(top)))
		if fd == nil || fd.Name() == "name" {
			return nil, invalid("update_mask: %q is not a field of Service that can be updated.", path)
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
	clearOutputOnly(stored)
	return stored, nil
}

func snakeCase(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}
