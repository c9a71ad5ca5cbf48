package cloudrun

import (
	"path"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
)

// Routing says where a deploy sends traffic.
type Routing struct {
	// NoTraffic keeps production traffic where it is: the new revision takes none (a preview).
	NoTraffic bool
	// Tag is put on the new revision, which is then reachable at the tag's URL.
	Tag string
}

const (
	latestTarget   = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
	revisionTarget = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
)

// Traffic is the traffic a deploy asks for, given the live service (nil when it creates it). The new
// revision is the latest ready one, so it is addressed as LATEST. Every other tagged target stays on the
// revision it serves now: one that followed LATEST is pinned to the live latest ready revision, so that a
// later deploy does not move it. Without NoTraffic, the new revision takes all traffic and the other
// tags keep 0%; with it, every live target keeps its percent. A service that has no ready revision (or
// none at all) cannot keep traffic elsewhere, so its new revision takes everything.
func Traffic(live *runpb.Service, r Routing) []*runpb.TrafficTarget {
	latestReady := ""
	if live.GetLatestReadyRevision() != "" {
		latestReady = path.Base(live.GetLatestReadyRevision())
	}
	var kept []*runpb.TrafficTarget
	for _, t := range live.GetTraffic() {
		if r.Tag != "" && t.GetTag() == r.Tag {
			continue // the tag moves to the new revision
		}
		t = proto.Clone(t).(*runpb.TrafficTarget)
		if t.Type == latestTarget && latestReady != "" {
			t.Type, t.Revision = revisionTarget, latestReady
		}
		kept = append(kept, t)
	}
	if r.NoTraffic && latestReady != "" {
		return append(kept, &runpb.TrafficTarget{Type: latestTarget, Percent: 0, Tag: r.Tag})
	}
	out := []*runpb.TrafficTarget{{Type: latestTarget, Percent: 100, Tag: r.Tag}}
	for _, t := range kept {
		if t.Tag != "" {
			t.Percent = 0
			out = append(out, t)
		}
	}
	return out
}

// WithoutTag is the live traffic without tag: a target that takes no traffic goes, one that takes some
// keeps its percent and loses the tag. It reports whether the tag was there.
func WithoutTag(live []*runpb.TrafficTarget, tag string) ([]*runpb.TrafficTarget, bool) {
	var out []*runpb.TrafficTarget
	found := false
	for _, t := range live {
		if t.GetTag() != tag {
			out = append(out, t)
			continue
		}
		found = true
		if t.GetPercent() > 0 {
			t = proto.Clone(t).(*runpb.TrafficTarget)
			t.Tag = ""
			out = append(out, t)
		}
	}
	return out, found
}

// TagURL is the URL Cloud Run reports for a tag, or empty.
func TagURL(svc *runpb.Service, tag string) string {
	for _, st := range svc.GetTrafficStatuses() {
		if tag != "" && st.GetTag() == tag {
			return st.GetUri()
		}
	}
	return ""
}
