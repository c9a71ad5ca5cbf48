package action

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// TestRunDryRunWritesNothing plans a deploy of a new commit with a rotated secret: the plan names each
// field that would change with both values, nothing reaches any stand-in as a write, and the image
// output is the digest the real deploy then pushes.
func TestRunDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCloud(t)
	first, err := c.action(ctx)
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, c.out)
	}
	c.secrets.AddSecret(project, "DB_url", []byte("postgresql+psycopg2://mlflow:new@/mlflow?host=/cloudsql/p:r:i"))
	c.env["GITHUB_SHA"], c.env["INPUT_DRY_RUN"], c.env["INPUT_MEMORY"] = sha2, "true", "4Gi"
	c.env["INPUT_CPU"] = "2"

	runWrites, iamWrites := c.run.Writes(), c.run.Calls("SetIamPolicy")
	secretCalls := c.secrets.CallCounts()
	c.registry.ResetCounts()
	planned, err := c.action(ctx)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, c.out)
	}
	if got := c.registry.Counts(); got.Writes != 0 {
		t.Errorf("the dry run wrote to the registry: %+v", got)
	}
	if n := c.run.Writes() - runWrites; n != 0 || c.run.Calls("SetIamPolicy") != iamWrites {
		t.Errorf("the dry run made %d Cloud Run writes", n)
	}
	for method, n := range c.secrets.CallCounts() {
		if n != secretCalls[method] && !strings.HasPrefix(method, "Get") && !strings.HasPrefix(method, "Access") && !strings.HasPrefix(method, "List") {
			t.Errorf("the dry run called Secret Manager's %s", method)
		}
	}
	want := Outputs{URL: first.URL, Revision: first.Revision, Service: "mlflow", PreviousRevision: first.Revision, Image: planned.Image}
	if *planned != want || planned.Image == first.Image || !strings.HasPrefix(planned.Image, c.env["INPUT_IMAGE"]+"@sha256:") {
		t.Errorf("dry run outputs %+v, want %+v with a new image", planned, want)
	}
	summary, _ := os.ReadFile(c.env["GITHUB_STEP_SUMMARY"])
	for _, line := range []string{
		"labels.commit-sha: " + sha1 + " → " + sha2,
		"image: " + first.Image + " → " + planned.Image,
		"env." + serverenv.BackendStoreURI + ": secret DB_url version 1 → 2",
		"resources: cpu 1 memory 2Gi → cpu 2 memory 4Gi",
	} {
		if !strings.Contains(c.out.String(), line) || !strings.Contains(string(summary), line) {
			t.Errorf("the log or the summary lacks %q:\n%s\n%s", line, c.out, summary)
		}
	}

	// The deploy that follows pushes the image the plan computed.
	c.env["INPUT_DRY_RUN"] = ""
	deployed, err := c.action(ctx)
	if err != nil {
		t.Fatalf("deploy after the plan: %v\n%s", err, c.out)
	}
	if deployed.Image != planned.Image {
		t.Errorf("the deploy pushed %s, the plan said %s", deployed.Image, planned.Image)
	}
}
