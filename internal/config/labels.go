package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Label rules. Cloud Run takes "only valid Google Cloud labels"
// (https://docs.cloud.google.com/run/docs/configuring/services/labels), which are
// (https://cloud.google.com/resource-manager/docs/creating-managing-labels#requirements): at most 64 per
// resource; keys 1 to 63 characters, values 0 to 63; lowercase letters, numeric characters, underscores
// and dashes, "international characters are allowed"; keys start with a lowercase letter or an
// international character. The regular expressions are the ones Google's label docs spell these rules
// as (\p{Ll} lowercase letters, \p{Lo} letters without case, \p{N} numbers), so a Japanese or
// accented label is taken as Google takes it; upper-case letters of any script are refused. Some of
// Google's APIs add that keys and values "must both be under 128 bytes" (Bigtable Admin's
// Instance.labels, https://pub.dev/documentation/googleapis/latest/bigtableadmin_v2/Instance/labels.html);
// with international characters 63 characters can be more, so that limit is checked too.
var (
	labelKeyRE = regexp.MustCompile(`^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$`)
	labelValRE = regexp.MustCompile(`^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$`)
)

const (
	maxLabels     = 64  // per resource, the action's own included
	maxLabelBytes = 127 // "under 128 bytes"
)

// reservedLabelNamespaces are refused by Cloud Run: "Cloud Run API v2 does not support labels with
// run.googleapis.com, cloud.googleapis.com, serving.knative.dev, or autoscaling.knative.dev namespaces,
// and they will be rejected" (Service.labels and RevisionTemplate.labels in the v2 API,
// https://cloud.google.com/php/docs/reference/cloud-run/latest/V2.RevisionTemplate). Such keys have a
// dot or slash, which the key rule refuses anyway; this names the reason.
var reservedLabelNamespaces = []string{"run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev"}

// ownLabels are set by the action on every service.
var ownLabels = []string{LabelManagedBy, LabelCommit}

func (p *parser) labels() {
	p.c.Labels = map[string]string{}
	for _, item := range splitList(p.input("labels")) {
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			p.fail("labels", item, "use key=value (the value may be empty: key=)")
			continue
		}
		if why := labelProblem(k, v); why != "" {
			p.fail("labels", item, why)
			continue
		}
		if _, dup := p.c.Labels[k]; dup {
			p.fail("labels", item, "the key "+k+" is given twice; give each label once")
			continue
		}
		p.c.Labels[k] = v
	}
	if n := len(p.c.Labels) + len(ownLabels); n > maxLabels {
		p.fail("labels", "", fmt.Sprintf("a Cloud Run service takes at most %d labels, and deploy-mlflow sets %d itself (%s), so give at most %d (%d were given)", maxLabels, len(ownLabels), strings.Join(ownLabels, ", "), maxLabels-len(ownLabels), len(p.c.Labels)))
	}
}

// labelProblem says what is wrong with the label k=v, or "".
func labelProblem(k, v string) string {
	for _, ns := range reservedLabelNamespaces {
		if strings.Contains(k, ns) {
			return "labels in the " + ns + " namespace belong to Cloud Run, which refuses them; use a key of your own"
		}
	}
	for _, own := range ownLabels {
		if k == own {
			return "the label " + k + " is set by deploy-mlflow itself; remove it"
		}
	}
	switch {
	case !labelKeyRE.MatchString(k) || len(k) > maxLabelBytes:
		return "use key=value, where the key is 1 to 63 lowercase letters (international ones too), digits, underscores and hyphens, starting with a letter, under 128 bytes"
	case !labelValRE.MatchString(v) || len(v) > maxLabelBytes:
		return "use key=value, where the value is empty or up to 63 lowercase letters (international ones too), digits, underscores and hyphens, under 128 bytes"
	}
	return ""
}
