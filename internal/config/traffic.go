package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Traffic tags are DNS-label fragments: the tag URL is https://TAG---SERVICE-HASH.REGION.run.app, so a
// tag takes lowercase letters, digits and hyphens, starts with a letter and does not end with a hyphen,
// and Cloud Run allows at most 46 characters for the tag and the service name together (the rest of the
// 63-character label is the separator and the hash). Not re-checked against the current page of
// https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration.
var tagRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

const maxTagAndService = 46

// traffic reads the preview inputs: no_traffic and tag deploy a revision that takes no traffic and is
// reached at its tag's URL; remove_tag only removes a tag, so it goes with neither.
func (p *parser) traffic() {
	if v := p.input("no_traffic"); v != "" {
		p.c.NoTraffic = p.boolean("no_traffic", v)
	}
	p.c.Tag = p.tag("tag")
	p.c.RemoveTag = p.tag("remove_tag")
	switch {
	case p.c.RemoveTag != "" && (p.c.Tag != "" || p.c.NoTraffic):
		p.fail("remove_tag", p.c.RemoveTag, "remove_tag only removes a tag and deploys nothing: leave tag and no_traffic unset in the step that removes it")
	case p.c.NoTraffic && p.c.Tag == "":
		p.fail("no_traffic", "true", "a revision that takes no traffic is reachable only at a tag's URL: set tag as well (for instance tag: pr-${{ github.event.number }})")
	}
}

func (p *parser) tag(input string) string {
	v := p.input(input)
	if v == "" {
		return ""
	}
	switch {
	case !tagRE.MatchString(v):
		p.fail(input, v, "a traffic tag is lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")
	case len(v)+len(p.c.Service) > maxTagAndService:
		p.fail(input, v, fmt.Sprintf("Cloud Run allows at most %d characters for the tag and the service name (%s) together; use at most %d",
			maxTagAndService, p.c.Service, max(0, maxTagAndService-len(p.c.Service))))
	default:
		return strings.TrimSpace(v)
	}
	return ""
}
