package localcloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// accessToken matches the token server's access tokens (as Google's, ya29.).
var accessToken = regexp.MustCompile(`ya29\.[A-Za-z0-9_\-]+`)

// TestSecretsNeverLeak deploys with the action's binary and uses the server, then looks for every secret
// value the chain handled (the database password, the basic-auth password, the deployer's key, the
// access tokens the action was issued) in everything a user or an attacker with log access could read:
// the action's stdout and stderr, GITHUB_OUTPUT, the step summary, and the revisions' (server's and
// MLflow's) logs. GitHub hides ::add-mask:: commands from the log, so those lines are not counted.
func TestSecretsNeverLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a registry and MLflow")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, logs := startCloud(t, ctx)

	out := t.TempDir()
	env := c.ActionEnv(commit1, out)
	var actionLog bytes.Buffer
	outputs, err := c.RunAction(ctx, env, &actionLog)
	if err != nil {
		t.Fatalf("%v\n%s", err, actionLog.String())
	}
	// Use the server as a client does, so that MLflow logs requests with the password in them.
	if _, err := c.LogModel(ctx, outputs["url"], io.Discard); err != nil {
		t.Fatal(err)
	}
	// A second deploy, at another commit, with a revision that fails: the failure report quotes the
	// server's last log lines.
	c.Google.SecretManager.AddSecret(Project, "DB_url", []byte(strings.Replace(c.Postgres.URL("no_such_db"), "postgresql://", "postgresql+psycopg2://", 1)))
	failEnv := c.ActionEnv(commit2, t.TempDir())
	if _, err := c.RunAction(ctx, failEnv, &actionLog); err == nil {
		t.Fatal("a revision whose database does not exist was reported ready")
	}

	secrets := map[string]string{
		"the database password":   c.Postgres.Password(),
		"the basic-auth password": c.Password,
	}
	var key struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
	}
	b, err := os.ReadFile(c.KeyFile)
	if err != nil || json.Unmarshal(b, &key) != nil || key.PrivateKey == "" {
		t.Fatalf("reading the deployer's key %s: %v", c.KeyFile, err)
	}
	secrets["the key's private_key_id"] = key.PrivateKeyID
	// Any line of the key's PEM body, in case the key is shown in part or re-wrapped.
	for i, line := range strings.Split(key.PrivateKey, "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			secrets[fmt.Sprintf("line %d of the key's private_key", i)] = line
		}
	}
	masked := 0
	for _, line := range strings.Split(actionLog.String(), "\n") {
		if tok, ok := strings.CutPrefix(line, "::add-mask::"); ok && accessToken.MatchString(tok) {
			secrets["access token "+tok[:10]+"…"] = tok
			masked++
		}
	}
	if masked == 0 {
		t.Error("the action masked no access token: it may not be adding masks, and the tokens it used are unknown to this test")
	}

	places := map[string]string{
		"the action's log":  withoutMasks(actionLog.String()),
		"GITHUB_OUTPUT":     readFile(t, env["GITHUB_OUTPUT"]) + readFile(t, failEnv["GITHUB_OUTPUT"]),
		"the step summary":  readFile(t, env["GITHUB_STEP_SUMMARY"]) + readFile(t, failEnv["GITHUB_STEP_SUMMARY"]),
		"the revision logs": logs.String(),
	}
	if !strings.Contains(places["the revision logs"], "mlflow") {
		t.Fatalf("the revision logs hold nothing from the server and MLflow:\n%s", places["the revision logs"])
	}
	for where, text := range places {
		for what, value := range secrets {
			if value != "" && strings.Contains(text, value) {
				t.Errorf("%s shows %s", where, what)
			}
		}
		// An access token the action did not mask, if one is still valid, is a leak too.
		for _, tok := range accessToken.FindAllString(text, -1) {
			if c.Google.Tokens.Valid(tok) {
				t.Errorf("%s shows a valid access token (%s…)", where, tok[:10])
			}
		}
	}
}

// withoutMasks drops the ::add-mask:: commands, which the runner consumes and never shows.
func withoutMasks(log string) string {
	var kept []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, "::add-mask::") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}
