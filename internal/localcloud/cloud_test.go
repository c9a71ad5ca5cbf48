package localcloud

import (
	"bytes"
	"context"
	"testing"
)

// startCloud starts the local cloud for the test and stops it when the test ends; if the test failed, it
// logs the last lines the revisions wrote first. It also returns those logs, for tests that read them.
func startCloud(t *testing.T, ctx context.Context) (*Cloud, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	c, err := Start(ctx, t.TempDir(), logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("revision logs:\n%s", tail(logs.String(), 60))
		}
	})
	return c, logs
}

// deploy runs the action with env and returns its outputs and its log; if the action fails, so does the
// test, showing the log.
func deploy(t *testing.T, ctx context.Context, c *Cloud, env map[string]string) (map[string]string, string) {
	t.Helper()
	var log bytes.Buffer
	out, err := c.RunAction(ctx, env, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return out, log.String()
}
