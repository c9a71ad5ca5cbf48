package cloudrun

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Plan says, one line per field, how the live service differs from the desired one, with both values:
// "image: A → B", "env.X: secret S version 3 → 4". It covers the fields Changes reports; environment
// variables are listed one by one. live nil means the service would be created.
func Plan(live, desired *runpb.Service, numbers ProjectNumbers) []string {
	if live == nil {
		return []string{fmt.Sprintf("service %s: does not exist → created, serving %s", path.Base(desired.GetName()), containerOf(desired).GetImage())}
	}
	var out []string
	lt, dt := live.GetTemplate(), desired.GetTemplate()
	lc, dc := containerOf(live), containerOf(desired)
	for _, field := range Changes(live, desired, numbers) {
		var l, d string
		switch {
		case strings.HasPrefix(field, "labels."):
			k := strings.TrimPrefix(field, "labels.")
			l, d = planLabel(live.Labels, k), planLabel(desired.Labels, k)
		case field == "traffic":
			l, d = trafficText(live.GetTraffic()), trafficText(desired.GetTraffic())
		case field == "invoker_iam_disabled":
			l, d = fmt.Sprint(live.GetInvokerIamDisabled()), fmt.Sprint(desired.GetInvokerIamDisabled())
		case field == "service_account":
			l, d = lt.GetServiceAccount(), dt.GetServiceAccount()
		case field == "scaling":
			l = fmt.Sprintf("min %d max %d", lt.GetScaling().GetMinInstanceCount(), lt.GetScaling().GetMaxInstanceCount())
			d = fmt.Sprintf("min %d max %d", dt.GetScaling().GetMinInstanceCount(), dt.GetScaling().GetMaxInstanceCount())
		case field == "timeout":
			l, d = lt.GetTimeout().AsDuration().String(), dt.GetTimeout().AsDuration().String()
		case field == "concurrency":
			l, d = fmt.Sprint(lt.GetMaxInstanceRequestConcurrency()), fmt.Sprint(dt.GetMaxInstanceRequestConcurrency())
		case field == "image":
			l, d = lc.GetImage(), dc.GetImage()
		case field == "resources":
			l = fmt.Sprintf("cpu %s memory %s", lc.GetResources().GetLimits()["cpu"], lc.GetResources().GetLimits()["memory"])
			d = fmt.Sprintf("cpu %s memory %s", dc.GetResources().GetLimits()["cpu"], dc.GetResources().GetLimits()["memory"])
		case field == "env":
			out = append(out, envPlan(newSecretNames(live.GetName(), desired.GetName(), numbers), lc.GetEnv(), dc.GetEnv())...)
			continue
		default:
			out = append(out, field+": changed")
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s → %s", field, l, d))
	}
	return out
}

func containerOf(s *runpb.Service) *runpb.Container {
	if c := s.GetTemplate().GetContainers(); len(c) > 0 {
		return c[0]
	}
	return nil
}

func planLabel(labels map[string]string, k string) string {
	if v, ok := labels[k]; ok {
		return v
	}
	return "(none)"
}

func trafficText(traffic []*runpb.TrafficTarget) string {
	var parts []string
	for _, t := range traffic {
		to := "latest"
		if t.GetType() == revisionTarget {
			to = t.GetRevision()
		}
		s := fmt.Sprintf("%d%% %s", t.GetPercent(), to)
		if t.GetTag() != "" {
			s += " tag " + t.GetTag()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// envPlan lists each variable added, removed or changed, by name, with its values (a secret by name and
// version, never a value read from it).
func envPlan(names secretNames, live, desired []*runpb.EnvVar) []string {
	index := func(vars []*runpb.EnvVar) map[string]*runpb.EnvVar {
		m := map[string]*runpb.EnvVar{}
		for _, v := range vars {
			m[v.GetName()] = v
		}
		return m
	}
	lm, dm := index(live), index(desired)
	var keys []string
	for k := range lm {
		keys = append(keys, k)
	}
	for k := range dm {
		if _, ok := lm[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		l, d := lm[k], dm[k]
		if l != nil && d != nil && sameEnv(names, []*runpb.EnvVar{l}, []*runpb.EnvVar{d}) {
			continue
		}
		lt, dt := envText(names, l), envText(names, d)
		// The same secret at another version reads as "secret S version 3 → 4".
		lr, dr := l.GetValueSource().GetSecretKeyRef(), d.GetValueSource().GetSecretKeyRef()
		if lr != nil && dr != nil && names.same(lr.GetSecret(), dr.GetSecret()) {
			dt = dr.GetVersion()
		}
		out = append(out, fmt.Sprintf("env.%s: %s → %s", k, lt, dt))
	}
	if len(out) == 0 {
		out = append(out, "env: order changed")
	}
	return out
}

func envText(names secretNames, v *runpb.EnvVar) string {
	if v == nil {
		return "(none)"
	}
	if ref := v.GetValueSource().GetSecretKeyRef(); ref != nil {
		_, secret := names.split(ref.GetSecret())
		return fmt.Sprintf("secret %s version %s", secret, ref.GetVersion())
	}
	return fmt.Sprintf("%q", v.GetValue())
}

// PlanDeploy reads the live service and says what Deploy would change, writing nothing; live is nil
// when the service does not exist.
func (d *Deployer) PlanDeploy(ctx context.Context, desired *runpb.Service) (lines []string, live *runpb.Service, err error) {
	live, err = d.Services.GetService(ctx, &runpb.GetServiceRequest{Name: desired.Name})
	switch status.Code(err) {
	case codes.OK:
		return Plan(live, withTraffic(desired, Traffic(live, d.Routing)), d.ProjectNumbers), live, nil
	case codes.NotFound:
		return Plan(nil, desired, d.ProjectNumbers), nil, nil
	}
	return nil, nil, explain(err, desired.Name, "read")
}
