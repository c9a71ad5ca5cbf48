package action

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
)

// TestRunPreview deploys a pull request's preview next to production: the preview takes no traffic
// and is reached at its tag's URL, production stays on its revision, a later production deploy takes
// all traffic and keeps the preview's tag, and remove_tag removes it.
func TestRunPreview(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t)
	prod, err := c.action(ctx)
	if err != nil {
		t.Fatalf("production deploy: %v\n%s", err, c.out)
	}
	serving := func() map[string]int32 {
		svc, _ := c.run.Service(project, "us-central1", "mlflow")
		out := map[string]int32{}
		for _, st := range svc.TrafficStatuses {
			if st.Percent > 0 {
				rev := st.Revision
				if st.Type == runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST {
					rev = "LATEST"
				}
				out[rev] += st.Percent
			}
		}
		return out
	}
	tagged := func(tag string) *runpb.TrafficTargetStatus {
		svc, _ := c.run.Service(project, "us-central1", "mlflow")
		for _, st := range svc.TrafficStatuses {
			if st.Tag == tag {
				return st
			}
		}
		return nil
	}

	c.env["GITHUB_SHA"], c.env["INPUT_NO_TRAFFIC"], c.env["INPUT_TAG"] = sha2, "true", "pr-123"
	preview, err := c.action(ctx)
	if err != nil {
		t.Fatalf("preview: %v\n%s", err, c.out)
	}
	wantURL := "https://pr-123---" + strings.TrimPrefix(prod.URL, "https://")
	if preview.URL != wantURL || preview.Revision == prod.Revision || preview.PreviousRevision != prod.Revision || !preview.Changed {
		t.Errorf("preview outputs %+v; want url %s, a new revision, previous %s, changed", preview, wantURL, prod.Revision)
	}
	if got := serving(); len(got) != 1 || got[prod.Revision] != 100 {
		t.Errorf("after the preview the traffic is %v, want all of it on %s", got, prod.Revision)
	}
	if st := tagged("pr-123"); st == nil || st.Percent != 0 || st.Uri != wantURL {
		t.Errorf("the preview's tag is %v, want 0%% at %s", st, wantURL)
	}

	// The same preview again writes nothing.
	writes := c.run.Writes()
	again, err := c.action(ctx)
	if err != nil {
		t.Fatalf("preview re-run: %v\n%s", err, c.out)
	}
	if again.Changed || again.URL != wantURL || c.run.Writes() != writes {
		t.Errorf("preview re-run: outputs %+v, %d Cloud Run writes; want none", again, c.run.Writes()-writes)
	}

	// Production moves on: all traffic to the new revision, the preview's tag stays on its revision.
	c.env["GITHUB_SHA"], c.env["INPUT_NO_TRAFFIC"], c.env["INPUT_TAG"] = "3333333333333333333333333333333333333333", "", ""
	next, err := c.action(ctx)
	if err != nil {
		t.Fatalf("production deploy after the preview: %v\n%s", err, c.out)
	}
	if next.URL != prod.URL || next.PreviousRevision != preview.Revision {
		t.Errorf("production outputs %+v; want url %s, previous %s", next, prod.URL, preview.Revision)
	}
	if got := serving(); len(got) != 1 || got["LATEST"] != 100 {
		t.Errorf("after the production deploy the traffic is %v, want all of it on the latest revision", got)
	}
	if st := tagged("pr-123"); st == nil || st.Revision != preview.Revision || st.Uri != wantURL {
		t.Errorf("the preview's tag after a production deploy is %v, want it on %s at %s", st, preview.Revision, wantURL)
	}

	// The pull request is closed: the tag goes, nothing else changes.
	c.env["INPUT_REMOVE_TAG"] = "pr-123"
	revisions := len(c.run.Revisions(project, "us-central1", "mlflow"))
	c.registry.ResetCounts()
	removed, err := c.action(ctx)
	if err != nil {
		t.Fatalf("remove_tag: %v\n%s", err, c.out)
	}
	if !removed.Changed || removed.URL != prod.URL || removed.Revision != next.Revision || removed.Image != next.Image {
		t.Errorf("remove_tag outputs %+v; want changed, the service's url, revision %s and image %s", removed, next.Revision, next.Image)
	}
	if st := tagged("pr-123"); st != nil {
		t.Errorf("the tag is still there: %v", st)
	}
	if got := serving(); len(got) != 1 || got["LATEST"] != 100 {
		t.Errorf("after remove_tag the traffic is %v", got)
	}
	if n := len(c.run.Revisions(project, "us-central1", "mlflow")); n != revisions || c.registry.Counts().Requests != 0 {
		t.Errorf("remove_tag made %d revisions and %d registry requests, want none", n-revisions, c.registry.Counts().Requests)
	}
	writes = c.run.Writes()
	if again, err := c.action(ctx); err != nil || again.Changed || c.run.Writes() != writes {
		t.Errorf("removing the tag again: %v, outputs %+v, %d writes; want nothing written", err, again, c.run.Writes()-writes)
	}
}
