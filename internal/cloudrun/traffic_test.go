package cloudrun

import (
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func latest(percent int32, tag string) *runpb.TrafficTarget {
	return &runpb.TrafficTarget{Type: latestTarget, Percent: percent, Tag: tag}
}

func pinned(rev string, percent int32, tag string) *runpb.TrafficTarget {
	return &runpb.TrafficTarget{Type: revisionTarget, Revision: rev, Percent: percent, Tag: tag}
}

func TestTraffic(t *testing.T) {
	t.Parallel()
	svc := func(ready string, traffic ...*runpb.TrafficTarget) *runpb.Service {
		s := &runpb.Service{Traffic: traffic}
		if ready != "" {
			s.LatestReadyRevision = "projects/p/locations/r/services/mlflow/revisions/" + ready
		}
		return s
	}
	preview := Routing{NoTraffic: true, Tag: "pr-2"}
	tests := []struct {
		name    string
		live    *runpb.Service
		routing Routing
		want    []*runpb.TrafficTarget
	}{
		{"create", nil, Routing{}, []*runpb.TrafficTarget{latest(100, "")}},
		{"create a preview: the first revision takes everything", nil, preview, []*runpb.TrafficTarget{latest(100, "pr-2")}},
		{"plain deploy", svc("r1", latest(100, "")), Routing{}, []*runpb.TrafficTarget{latest(100, "")}},
		{"preview pins production to the revision serving it", svc("r1", latest(100, "")), preview,
			[]*runpb.TrafficTarget{pinned("r1", 100, ""), latest(0, "pr-2")}},
		{"preview again: nothing changes", svc("r2", pinned("r1", 100, ""), latest(0, "pr-2")), preview,
			[]*runpb.TrafficTarget{pinned("r1", 100, ""), latest(0, "pr-2")}},
		{"another preview pins the first", svc("r2", pinned("r1", 100, ""), latest(0, "pr-2")), Routing{NoTraffic: true, Tag: "pr-3"},
			[]*runpb.TrafficTarget{pinned("r1", 100, ""), pinned("r2", 0, "pr-2"), latest(0, "pr-3")}},
		{"production deploy takes everything and keeps tags", svc("r2", pinned("r1", 100, ""), latest(0, "pr-2")), Routing{},
			[]*runpb.TrafficTarget{latest(100, ""), pinned("r2", 0, "pr-2")}},
		{"a split is replaced, tags keep 0%", svc("r2", pinned("r1", 50, "old"), pinned("r2", 50, "")), Routing{},
			[]*runpb.TrafficTarget{latest(100, ""), pinned("r1", 0, "old")}},
		{"tag on a serving revision", svc("r1", latest(100, ""), pinned("r0", 0, "stable")), Routing{Tag: "stable"},
			[]*runpb.TrafficTarget{latest(100, "stable")}},
		{"no ready revision: the new one takes everything", svc("", latest(100, "")), preview, []*runpb.TrafficTarget{latest(100, "pr-2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, Traffic(tt.live, tt.routing), protocmp.Transform()); diff != "" {
				t.Errorf("Traffic() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWithoutTag(t *testing.T) {
	t.Parallel()
	live := []*runpb.TrafficTarget{pinned("r1", 100, ""), pinned("r2", 0, "pr-2"), pinned("r3", 0, "pr-3")}
	got, found := WithoutTag(live, "pr-2")
	if want := []*runpb.TrafficTarget{pinned("r1", 100, ""), pinned("r3", 0, "pr-3")}; !found || !cmp.Equal(want, got, protocmp.Transform()) {
		t.Errorf("WithoutTag(pr-2) = %v, %v", got, found)
	}
	got, found = WithoutTag([]*runpb.TrafficTarget{latest(100, "live")}, "live")
	if want := []*runpb.TrafficTarget{latest(100, "")}; !found || !cmp.Equal(want, got, protocmp.Transform()) {
		t.Errorf("removing the tag of the serving target: %v, %v; want it kept untagged", got, found)
	}
	if _, found := WithoutTag(live, "pr-9"); found {
		t.Error("found a tag that is not there")
	}
	if live[1].Tag != "pr-2" {
		t.Error("WithoutTag changed its input")
	}
}

func TestChangesSeesTags(t *testing.T) {
	t.Parallel()
	live := &runpb.Service{Traffic: []*runpb.TrafficTarget{latest(100, "")}, Template: &runpb.RevisionTemplate{}}
	desired := &runpb.Service{Traffic: []*runpb.TrafficTarget{latest(100, "pr-1")}, Template: &runpb.RevisionTemplate{}}
	if got := Changes(live, desired, nil); len(got) == 0 || got[0] != "traffic" {
		t.Errorf("Changes() = %v, want traffic first", got)
	}
}
