package localcloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// TestBrowserMLflowAuth deploys with auth: mlflow and default_permission: NO_PERMISSIONS and uses MLflow's
// own users through the UI in headless Chromium: the admin (the username and password secrets) logs in
// through the browser's basic-auth prompt, creates an experiment, and creates a user on MLflow's admin
// page; then that user, in a browser context of their own, opens the admin's experiment and is refused.
// Each step leaves a screenshot (see screenshotDir).
func TestBrowserMLflowAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a registry, MLflow and Chromium")
	}
	if _, err := testenv.Chromium(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	c, _ := startCloud(t, ctx)
	env := c.ActionEnv(commit1, t.TempDir())
	env["INPUT_AUTH"] = "mlflow"
	env["INPUT_DEFAULT_PERMISSION"] = "NO_PERMISSIONS"
	out, _ := deploy(t, ctx, c, env)
	url := out["url"]
	t.Logf("deployed in %s", time.Since(start).Round(time.Second))

	shots := screenshotDir(t)
	adminTab := testenv.NewBrowser(t, ctx)
	adminAuth := answerAuth(t, adminTab, url, Username, c.Password)
	adminRequests := recordRequests(t, adminTab)
	admin := &browserUI{t: t, tab: adminTab, dir: shots}

	// The admin logs in at the browser's prompt: MLflow's auth app, not the server, sends the challenge.
	admin.step("log in as the admin", "mlflow-01-admin-login.png", chromedp.Navigate(url+"/#/experiments"))
	admin.waitText("the experiments list after logging in", "Experiments", "Default")
	admin.screenshot("mlflow-01-admin-login.png")
	if adminAuth.answered() == 0 {
		t.Fatal("the browser got in without a basic-auth challenge")
	}
	if name, isAdmin := currentUser(admin, url); name != Username || !isAdmin {
		t.Errorf("users/current for the admin's browser = %q (admin %v), want %q, an admin", name, isAdmin, Username)
	}

	// An experiment of the admin's: with NO_PERMISSIONS, nobody else may read it.
	experiment := "admins-only-" + randomText(6)
	admin.createExperiment(url, experiment, "mlflow-02-create-dialog.png", "mlflow-03-created.png")
	experimentID, ok := findExperiment(t, c, url, experiment)
	if !ok {
		t.Fatalf("experiment %q, created in the UI, is not in MLflow", experiment)
	}

	// A user, created on MLflow's admin page (Users tab, Create User) by the admin.
	user, password := "analyst-"+randomText(3), randomText(8)
	admin.step("open the admin page", "mlflow-04-create-user.png", chromedp.Navigate(url+"/#/admin"))
	admin.waitText("the admin page's list of users", "Users", "Create User", Username)
	admin.step("open the create-user dialog", "mlflow-04-create-user.png",
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Create User"]`), chromedp.NodeVisible))
	admin.step("type the user's name and password", "mlflow-04-create-user.png",
		chromedp.SendKeys(chromedp.Search(`//div[@role="dialog"]//input[@placeholder="Enter username"]`), user, chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.Search(`//div[@role="dialog"]//input[@placeholder="Enter password"]`), password, chromedp.NodeVisible))
	admin.screenshot("mlflow-04-create-user.png")
	admin.step("submit the dialog", "mlflow-05-user-created.png",
		chromedp.Click(chromedp.Search(`//div[@role="dialog"]//button[normalize-space()="Create user"]`), chromedp.NodeVisible))
	if r, ok := adminRequests.find("POST", "/mlflow/users/create", ""); !ok || r.status != http.StatusOK {
		admin.fail("mlflow-05-user-created.png", "the UI's create-user request: %+v (seen %v), want 200; requests seen: %v", r, ok, adminRequests.all())
	}
	admin.waitText("the new user in the list of users", user)
	admin.screenshot("mlflow-05-user-created.png")

	// The user, in a browser context of their own (no credentials cached), logs in and opens the admin's
	// experiment: MLflow refuses the UI's request for it, and the UI says so.
	userTab := newBrowserContext(t, adminTab)
	userAuth := answerAuth(t, userTab, url, user, password)
	userRequests := recordRequests(t, userTab)
	other := &browserUI{t: t, tab: userTab, dir: shots}
	other.step("log in as the new user", "mlflow-06-user-login.png", chromedp.Navigate(url+"/#/experiments"))
	other.waitText("the experiments list after logging in", "Experiments")
	other.screenshot("mlflow-06-user-login.png")
	if userAuth.answered() == 0 {
		t.Fatal("the user's browser context got in without a basic-auth challenge")
	}
	if name, isAdmin := currentUser(other, url); name != user || isAdmin {
		t.Errorf("users/current for the user's browser = %q (admin %v), want %q, not an admin", name, isAdmin, user)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("requests from the user's browser context: %v", userRequests.all())
		}
	})
	// The runs tab, where the UI has a refusal page of its own. MLflow's auth app refuses in plain text
	// ("Permission denied", no JSON error_code), which MLflow 3.17.2's UI would show as an INTERNAL_ERROR;
	// the server hands it on as MLflow's JSON PERMISSION_DENIED. So: the UI's own request is refused, the
	// UI says so, and shows nothing of the experiment.
	other.step("open the admin's experiment", "mlflow-07-refused.png", chromedp.Navigate(url+"/#/experiments/"+experimentID+"/runs"))
	if r, ok := userRequests.find("GET", "/mlflow/experiments/get?experiment_id="+experimentID, ""); !ok || r.status != http.StatusForbidden {
		other.fail("mlflow-07-refused.png", "the UI's request for experiment %s as %s: %+v (seen %v), want MLflow's 403", experimentID, user, r, ok)
	}
	other.waitText("the UI's error for the refused experiment", "Permission denied")
	other.screenshot("mlflow-07-refused.png")
	if strings.Contains(other.text(), "INTERNAL_ERROR") {
		other.fail("mlflow-07-refused.png", "the UI shows the refusal as an INTERNAL_ERROR")
	}
	if strings.Contains(other.text(), experiment) {
		t.Errorf("the page refused to %s shows the name of the admin's experiment %q", user, experiment)
	}
	// The same request, opened as a page: MLflow's refusal as the browser shows it.
	other.step("open the experiment's API address", "mlflow-08-refused-api.png",
		chromedp.Navigate(url+"/ajax-api/2.0/mlflow/experiments/get?experiment_id="+experimentID))
	other.waitText("MLflow's refusal", "Permission denied")
	other.screenshot("mlflow-08-refused-api.png")

	// What the UI asks to learn who is logged in, shown as the browser shows it.
	other.step("open users/current", "mlflow-09-current-user.png", chromedp.Navigate(url+"/ajax-api/2.0/mlflow/users/current"))
	other.waitText("users/current naming the user", fmt.Sprintf("%q", user))
	other.screenshot("mlflow-09-current-user.png")
	t.Logf("browser steps done in %s; screenshots in %s", time.Since(start).Round(time.Second), shots)
}

// newBrowserContext opens a tab in a new browser context of tab's browser, which shares no cookies or cached
// credentials with the others, as a second person's browser would; it is closed when the test ends.
func newBrowserContext(t *testing.T, tab context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(tab, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context that run is given: so not one with a
	// deadline of its own (tab's, the test's, bounds it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a new browser context: %v", err)
	}
	return ctx
}

// currentUser asks MLflow, from the page with the browser's credentials as the UI does, who is logged in.
func currentUser(u *browserUI, url string) (name string, admin bool) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.tab, uiWait)
	defer cancel()
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`fetch(%q).then(async r => { const b = await r.text(); if (!r.ok) throw new Error(r.status + ": " + b); return b; })`, url+"/ajax-api/2.0/mlflow/users/current"),
		chromedp.EvalAwaitPromise))
	if err != nil {
		u.fail("failed-current-user.png", "asking users/current: %v", err)
	}
	var r struct {
		User struct {
			Username string `json:"username"`
			IsAdmin  bool   `json:"is_admin"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		u.fail("failed-current-user.png", "users/current answered %q: %v", body, err)
	}
	return r.User.Username, r.User.IsAdmin
}
