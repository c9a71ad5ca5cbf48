package localcloud

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// screenshotsEnv names a directory for the browser test's screenshots.
const screenshotsEnv = "DEPLOY_MLFLOW_SCREENSHOTS"

// uiWait bounds each wait for the UI to show something.
const uiWait = 60 * time.Second

// TestBrowser deploys in basic mode and uses the MLflow UI through the server in headless Chromium, as a
// person would: it logs in through the browser's basic-auth challenge, opens the run a client logged and its
// model's files, creates an experiment from the UI, and then loads a page from another origin that tries to
// create one with the browser's credentials, which the server's origin check refuses. Each step leaves a
// screenshot (see screenshotDir).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a registry, MLflow and Chromium")
	}
	// Before the minutes of deploying: say how to get a browser if there is none.
	if _, err := testenv.Chromium(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	c, _ := startCloud(t, ctx)
	out, _ := deploy(t, ctx, c, c.ActionEnv(commit1, t.TempDir()))
	url := out["url"]
	runID, err := c.LogModel(ctx, url, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	run := readRun(t, c, url, runID)
	t.Logf("deployed and logged run %s in %s", runID, time.Since(start).Round(time.Second))

	shots := screenshotDir(t)
	tab := testenv.NewBrowser(t, ctx)
	auth := answerAuth(t, tab, url, Username, c.Password)
	requests := recordRequests(t, tab)
	ui := &browserUI{t: t, tab: tab, dir: shots}

	// Log in: the first page load meets the server's 401 challenge, which the browser answers as a person
	// typing into its prompt would.
	// The list of experiments comes from MLflow's API, so seeing it means the UI's own requests got in too.
	ui.step("log in", "01-login.png", chromedp.Navigate(url+"/#/experiments"))
	ui.waitText("the experiments list after logging in", "Experiments", "Default", "Time created")
	ui.screenshot("01-login.png")
	if n := auth.answered(); n == 0 {
		t.Fatal("the browser got in without a basic-auth challenge")
	}

	// The run the client logged: its parameters and metrics, with the values MLflow holds.
	ui.step("open the run", "02-run.png", chromedp.Navigate(fmt.Sprintf("%s/#/experiments/%s/runs/%s", url, run.experimentID, runID)))
	ui.waitText("the run's metrics", "Metrics (2)", "mse", "r2", run.metricText("mse"))
	ui.step("scroll to the metrics", "02-run.png",
		chromedp.Evaluate[chromedp.Void](`document.evaluate('//*[starts-with(normalize-space(text()), "Metrics (")]', document, null,
			XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue.scrollIntoView({block: "start"})`))
	ui.screenshot("02-run.png")

	// The model's files: MLflow 3 keeps a logged model apart from the run, under its own page.
	ui.step("open the model's artifacts", "03-model-artifacts.png",
		chromedp.Navigate(fmt.Sprintf("%s/#/experiments/%s/models/%s/artifacts", url, run.experimentID, run.modelID)))
	ui.waitText("the model's files", "MLmodel")
	ui.screenshot("03-model-artifacts.png")

	// Create an experiment through the UI's dialog: a same-origin write through the origin check.
	name := "from-the-ui-" + randomText(6)
	ui.createExperiment(url, name, "04-create-dialog.png", "05-created.png")
	if !experimentExists(t, c, url, name) {
		t.Errorf("experiment %q, created in the UI, is not in MLflow", name)
	}
	if r, ok := requests.find("POST", "/experiments/create", ""); !ok || r.status != http.StatusOK {
		t.Errorf("the UI's create request: %+v (seen %v), want 200", r, ok)
	}

	// A page on another origin (another loopback port) posts to MLflow with the browser's credentials. It
	// sends a simple request (text/plain, no preflight), the kind a page may send anywhere; the server must
	// refuse it for its Origin.
	foreignName := "from-another-origin-" + randomText(6)
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, foreignPage, url+"/ajax-api/2.0/mlflow/experiments/create", foreignName)
	}))
	t.Cleanup(foreign.Close)
	ui.step("load the page from another origin", "06-foreign-page.png", chromedp.Navigate(foreign.URL+"/"))
	ui.waitText("the other page's request to finish", "request finished")
	r, ok := requests.find("POST", "/experiments/create", foreign.URL)
	if !ok {
		t.Fatalf("the page on %s sent no request to MLflow; requests seen: %v", foreign.URL, requests.all())
	}
	// The answer is opaque to the page; write what the browser saw into it for the screenshot.
	seen := fmt.Sprintf("the test saw: POST %s from Origin %s, credentials sent: %v, answer: %d", r.url, r.origin, r.authorized, r.status)
	ui.step("note the answer on the page", "06-foreign-page.png",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.body.insertAdjacentHTML("beforeend", "<p id=seen></p>"); document.getElementById("seen").textContent = %q`, seen)))
	ui.screenshot("06-foreign-page.png")
	if r.status != http.StatusForbidden {
		t.Errorf("the write from %s got %d, want the server's 403 for a cross-origin write", foreign.URL, r.status)
	}
	if !r.authorized {
		t.Errorf("the write from %s carried no credentials, so it tests the auth check and not the origin check", foreign.URL)
	}
	if experimentExists(t, c, url, foreignName) {
		t.Errorf("experiment %q, posted from %s, exists", foreignName, foreign.URL)
	}
	t.Logf("browser steps done in %s; screenshots in %s", time.Since(start).Round(time.Second), shots)
}

// foreignPage is the page on the other origin: it posts to %[1]s to create experiment %[2]q, with the
// browser's credentials, and says when the request has finished (its answer is opaque to the page).
const foreignPage = `<!doctype html><title>another site</title>
<h1>A page on another origin</h1>
<p id="status">posting to %[1]s</p>
<script>
fetch(%[1]q, {method: "POST", mode: "no-cors", credentials: "include",
  headers: {"Content-Type": "text/plain"}, body: JSON.stringify({name: %[2]q})})
  .then(r => "request finished: opaque answer, type " + r.type, e => "request finished: " + e)
  .then(s => { document.getElementById("status").textContent = s; });
</script>`

// screenshotDir is where the screenshots go: $DEPLOY_MLFLOW_SCREENSHOTS, else the test's artifact directory
// when go test runs with -artifacts (under -outputdir), else a new directory under the system's temp
// directory, which is kept and logged. Never inside the repository, unless -outputdir says so.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(screenshotsEnv); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	dir, err := os.MkdirTemp("", "deploy-mlflow-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s (set %s or use go test -artifacts to choose)", dir, screenshotsEnv)
	return dir
}

// browserUI runs the test's steps in one tab, and on a failure saves a screenshot and the page's text.
type browserUI struct {
	t   *testing.T
	tab context.Context
	dir string
}

// step runs actions, each within uiWait; on failure it saves the page as shot.
func (u *browserUI) step(what, shot string, actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.tab, uiWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		u.fail(shot, "%s: %v", what, err)
	}
}

// waitText waits until the page's visible text contains every one of want.
func (u *browserUI) waitText(what string, want ...string) {
	u.t.Helper()
	u.waitFor(what, "every", want)
}

// waitFor polls the page's visible text with the array method match ("every" or "some") over want.
func (u *browserUI) waitFor(what, match string, want []string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.tab, uiWait)
	defer cancel()
	js, _ := json.Marshal(want)
	expr := fmt.Sprintf(`document.body && %s.%s(s => document.body.innerText.includes(s))`, js, match)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(uiWait), chromedp.WithPollingInterval(250*time.Millisecond))); err != nil {
		u.fail("failed-"+strings.ReplaceAll(what, " ", "-")+".png", "waiting %s for %s (%s of the texts %q): %v", uiWait, what, match, want, err)
	}
}

// text is the page's visible text.
func (u *browserUI) text() string {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.tab, uiWait)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		u.t.Fatalf("reading the page's text: %v", err)
	}
	return text
}

// createExperiment creates an experiment called name through the experiments list's Create dialog, and
// waits for its page; dialogShot shows the filled-in dialog, createdShot the new experiment's page.
func (u *browserUI) createExperiment(url, name, dialogShot, createdShot string) {
	u.t.Helper()
	u.step("open the experiments list", dialogShot, chromedp.Navigate(url+"/#/experiments"))
	u.waitText("the experiments list", "Experiments")
	u.step("open the create dialog", dialogShot,
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Create"]`), chromedp.NodeVisible))
	u.waitText("the create-experiment dialog", "Create Experiment")
	u.step("type the experiment's name", dialogShot,
		chromedp.SendKeys(chromedp.Search(`//div[@role="dialog"]//input`), name, chromedp.NodeVisible))
	u.screenshot(dialogShot)
	u.step("submit the dialog", createdShot,
		chromedp.Click(chromedp.Search(`//div[@role="dialog"]//button[normalize-space()="Create"]`), chromedp.NodeVisible))
	u.waitText("the new experiment's page", name)
	u.screenshot(createdShot)
}

func (u *browserUI) screenshot(name string) {
	u.t.Helper()
	if err := u.save(name); err != nil {
		u.t.Fatal(err)
	}
}

func (u *browserUI) save(name string) error {
	ctx, cancel := context.WithTimeout(u.tab, uiWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", name, err)
	}
	return os.WriteFile(filepath.Join(u.dir, name), png, 0o644)
}

func (u *browserUI) fail(shot, format string, args ...any) {
	u.t.Helper()
	if err := u.save("failed-" + strings.TrimPrefix(shot, "failed-")); err != nil {
		u.t.Log(err)
	}
	ctx, cancel := context.WithTimeout(u.tab, 10*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	u.t.Fatalf(format+"\npage %s shows:\n%s", append(args, loc, tail(text, 40))...)
}

// authAnswers answers the browser's basic-auth challenges for one origin, as a person at its prompt would.
type authAnswers struct {
	mu    sync.Mutex
	count int
}

func (a *authAnswers) answered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// answerAuth makes the browser pause requests to origin, so that their basic-auth challenges come to the
// test, and answers the challenges of page loads (the ones for which a browser prompts) with the
// credentials. Other challenges are cancelled, as a browser does not prompt for them.
func answerAuth(t *testing.T, tab context.Context, origin, user, password string) *authAnswers {
	t.Helper()
	a := &authAnswers{}
	paused := chromedp.Events(tab, fetch.RequestPaused)
	challenges := chromedp.Events(tab, fetch.AuthRequired)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range challenges {
			if err != nil {
				return
			}
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if ev.ResourceType == network.ResourceTypeDocument && ev.AuthChallenge.Source == "Server" {
				resp = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: password}
				a.mu.Lock()
				a.count++
				a.mu.Unlock()
			}
			_, _ = chromedp.Call(tab, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
	ctx, cancel := context.WithTimeout(tab, uiWait)
	defer cancel()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{
		Patterns:           []*fetch.RequestPattern{{URLPattern: origin + "/*"}},
		HandleAuthRequests: new(true),
	}); err != nil {
		t.Fatalf("intercepting the browser's requests to %s: %v", origin, err)
	}
	return a
}

// sentRequest is a request the browser sent, with the status of its answer.
type sentRequest struct {
	method, url, origin string
	authorized          bool
	status              int64
}

// requestLog records the browser's requests and the statuses of their answers, from the network events.
type requestLog struct {
	mu   sync.Mutex
	byID map[network.RequestID]*sentRequest
	list []*sentRequest
}

func recordRequests(t *testing.T, tab context.Context) *requestLog {
	t.Helper()
	l := &requestLog{byID: map[network.RequestID]*sentRequest{}}
	sent := chromedp.Events(tab, network.RequestWillBeSentExtraInfo)
	base := chromedp.Events(tab, network.RequestWillBeSent)
	answers := chromedp.Events(tab, network.ResponseReceived)
	get := func(id network.RequestID) *sentRequest {
		r := l.byID[id]
		if r == nil {
			r = &sentRequest{}
			l.byID[id] = r
			l.list = append(l.list, r)
		}
		return r
	}
	go func() {
		for ev, err := range base {
			if err != nil {
				return
			}
			l.mu.Lock()
			r := get(ev.RequestID)
			r.method, r.url = ev.Request.Method, ev.Request.URL
			l.mu.Unlock()
		}
	}()
	// The extra info has the headers as sent, with Authorization and Origin.
	go func() {
		for ev, err := range sent {
			if err != nil {
				return
			}
			l.mu.Lock()
			r := get(ev.RequestID)
			for k, v := range ev.Headers {
				switch strings.ToLower(k) {
				case "origin":
					r.origin = fmt.Sprint(v)
				case "authorization":
					r.authorized = true
				}
			}
			l.mu.Unlock()
		}
	}()
	go func() {
		for ev, err := range answers {
			if err != nil {
				return
			}
			l.mu.Lock()
			get(ev.RequestID).status = ev.Response.Status
			l.mu.Unlock()
		}
	}()
	return l
}

// find returns the last answered request with method whose URL contains path and whose Origin is origin
// (any if ""), waiting up to uiWait for its answer.
func (l *requestLog) find(method, path, origin string) (sentRequest, bool) {
	deadline := time.Now().Add(uiWait)
	for {
		l.mu.Lock()
		for i := len(l.list) - 1; i >= 0; i-- {
			r := l.list[i]
			if r.method == method && strings.Contains(r.url, path) && (origin == "" || r.origin == origin) && r.status != 0 {
				l.mu.Unlock()
				return *r, true
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			return sentRequest{}, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *requestLog) all() []sentRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sentRequest
	for _, r := range l.list {
		out = append(out, *r)
	}
	return out
}

// loggedRun is what the test reads of the client's run through the REST API.
type loggedRun struct {
	experimentID, modelID string
	metrics               map[string]float64
}

// metricText is how the run page shows a metric's value: MLflow rounds it for display, so the test looks
// for its first digits.
func (r loggedRun) metricText(name string) string {
	return strings.TrimRight(fmt.Sprintf("%.3f", r.metrics[name]), "0")
}

func readRun(t *testing.T, c *Cloud, url, runID string) loggedRun {
	t.Helper()
	code, body := getRun(t, c, url, runID)
	var r struct {
		Run struct {
			Info struct {
				ExperimentID string `json:"experiment_id"`
			} `json:"info"`
			Data struct {
				Metrics []struct {
					Key   string  `json:"key"`
					Value float64 `json:"value"`
				} `json:"metrics"`
			} `json:"data"`
			Outputs struct {
				ModelOutputs []struct {
					ModelID string `json:"model_id"`
				} `json:"model_outputs"`
			} `json:"outputs"`
		} `json:"run"`
	}
	if err := json.Unmarshal(body, &r); code != http.StatusOK || err != nil || len(r.Run.Outputs.ModelOutputs) == 0 {
		t.Fatalf("run %s: %d %s (%v)", runID, code, body, err)
	}
	run := loggedRun{experimentID: r.Run.Info.ExperimentID, modelID: r.Run.Outputs.ModelOutputs[0].ModelID, metrics: map[string]float64{}}
	for _, m := range r.Run.Data.Metrics {
		run.metrics[m.Key] = m.Value
	}
	return run
}

// experimentExists asks MLflow's REST API, with the demo's credentials and no Origin, for an experiment by
// name.
func experimentExists(t *testing.T, c *Cloud, url, name string) bool {
	t.Helper()
	_, ok := findExperiment(t, c, url, name)
	return ok
}

// findExperiment returns the ID of the experiment called name, as experimentExists looks it up.
func findExperiment(t *testing.T, c *Cloud, url, name string) (string, bool) {
	t.Helper()
	code, body := apiGet(t, c, url+"/api/2.0/mlflow/experiments/get-by-name?experiment_name="+name)
	switch code {
	case http.StatusOK:
		var e struct {
			Experiment struct {
				ID string `json:"experiment_id"`
			} `json:"experiment"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Experiment.ID == "" {
			t.Fatalf("looking up experiment %q: no ID in %s (%v)", name, body, err)
		}
		return e.Experiment.ID, true
	case http.StatusNotFound:
		return "", false
	}
	t.Fatalf("looking up experiment %q: %d %s", name, code, body)
	return "", false
}
