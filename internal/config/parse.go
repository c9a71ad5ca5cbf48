package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sethvargo/go-githubactions"
)

// Parse reads the action's inputs (INPUT_* variables) and the GitHub environment through getenv and
// validates every one of them. It returns every problem at once, each an *InputError.
func Parse(getenv func(string) string) (*Config, error) {
	p := newParser(getenv)
	p.project()
	p.location()
	p.image()
	p.mlflow()
	p.stores()
	p.auth()
	p.kekPassphrase()
	p.secrets()
	p.secretVersions()
	p.env()
	p.cloudSQL()
	p.serviceAccount()
	p.resources()
	p.workers()
	p.scaling()
	p.timeouts()
	p.labels()
	p.traffic()
	p.plan()
	p.github()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &p.c, nil
}

// parser fills in a Config one step at a time; a step may use what the steps before it set.
type parser struct {
	gh   *githubactions.Action
	c    Config
	errs []error
}

func newParser(getenv func(string) string) *parser {
	// Context() would also read and decode the event payload that GITHUB_EVENT_PATH names. Parse needs
	// none of it, and must not fail over a file it does not use.
	noEvent := func(k string) string {
		if k == "GITHUB_EVENT_PATH" {
			return ""
		}
		return getenv(k)
	}
	return &parser{gh: githubactions.New(githubactions.WithGetenv(noEvent))}
}

// Rules of Google's own that the inputs are checked against are in names.go, labels.go, env.go and
// mounts.go, each with its source.
var (
	versionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)
	commitRE  = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
)

// projectEnv are the variables google-github-actions/auth exports its project in, read in this order
// when project_id is not set.
var projectEnv = []string{"GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"}

func (p *parser) project() {
	id, from := p.input("project_id"), ""
	for _, k := range projectEnv {
		if id != "" {
			break
		}
		id, from = strings.TrimSpace(p.gh.Getenv(k)), " (this one was read from "+k+")"
	}
	p.c.ProjectID = id
	switch {
	case id == "":
		p.fail("project_id", "", "is required: set it, or run google-github-actions/auth with project_id before this step (it exports GOOGLE_CLOUD_PROJECT)")
	case !projectRE.MatchString(id):
		p.fail("project_id", id, "use the project ID, not its display name or number: 6 to 30 lowercase letters, digits and hyphens, starting with a letter"+from)
	}
}

func (p *parser) location() {
	p.c.Region = p.inputOr("region", DefaultRegion)
	if !regionRE.MatchString(p.c.Region) {
		p.fail("region", p.c.Region, "use a Cloud Run region name such as us-central1 or europe-west1")
	}
	p.c.Service = p.inputOr("service", DefaultService)
	if !serviceRE.MatchString(p.c.Service) {
		p.fail("service", p.c.Service, "a Cloud Run service name is up to 49 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")
	}
}

// image is the repository the image is pushed to: image as given, else one named after the service in
// the Artifact Registry repository.
func (p *parser) image() {
	c := &p.c
	c.Repository, c.Image = p.input("repository"), p.input("image")
	switch {
	case c.Image != "":
		// A tag or digest makes the name an invalid repository, so this refuses both.
		repo, err := name.NewRepository(c.Image, name.StrictValidation)
		if err != nil {
			p.fail("image", c.Image, "give an image repository without tag or digest, such as us-central1-docker.pkg.dev/my-project/my-repo/mlflow")
			return
		}
		if err := checkArtifactRegistryImage(repo); err != nil {
			p.fail("image", c.Image, err.Error())
			return
		}
		c.Image = repo.Name()
	case c.Repository == "":
		p.fail("repository", "", "is required unless image is set: name the Artifact Registry Docker repository to push to (create one with: gcloud artifacts repositories create mlflow --repository-format=docker --location="+c.Region+")")
	case !repositoryRE.MatchString(c.Repository):
		p.fail("repository", c.Repository, "an Artifact Registry repository ID is up to 63 lowercase letters, digits and hyphens, starting with a letter")
	default:
		// A domain-scoped project (example.com:proj) is a path of two segments in Artifact Registry.
		c.Image = fmt.Sprintf("%s-docker.pkg.dev/%s/%s/%s", c.Region, strings.ReplaceAll(c.ProjectID, ":", "/"), c.Repository, c.Service)
	}
}

func (p *parser) mlflow() {
	v := p.inputOr("mlflow_version", DefaultMLflowVersion)
	p.c.MLflowVersion = v
	if m := versionRE.FindStringSubmatch(strings.TrimPrefix(v, "v")); m == nil {
		p.fail("mlflow_version", v, "use an MLflow release number such as "+DefaultMLflowVersion)
	} else if major, _ := strconv.Atoi(m[1]); major < 3 {
		p.fail("mlflow_version", v, "deploy-mlflow runs MLflow 3 or later (its server is configured through MLflow 3's options); use "+DefaultMLflowVersion+" or another 3.x release")
	} else {
		p.c.MLflowVersion = strings.TrimPrefix(v, "v")
	}
	p.c.BaseImage = p.inputOr("base_image", DefaultBaseImage(p.c.MLflowVersion))
	if _, err := name.ParseReference(p.c.BaseImage, name.StrictValidation); err != nil {
		p.fail("base_image", p.c.BaseImage, "give an image reference such as "+DefaultBaseImage(DefaultMLflowVersion))
	}
}

func (p *parser) cloudSQL() {
	seen := map[string]bool{}
	for _, inst := range splitList(p.input("cloudsql_instances")) {
		if err := checkCloudSQL(inst); err != nil {
			p.fail("cloudsql_instances", inst, err.Error())
			continue
		}
		if seen[inst] {
			p.fail("cloudsql_instances", inst, "is listed twice; list each instance once")
			continue
		}
		seen[inst] = true
		p.c.CloudSQLInstances = append(p.c.CloudSQLInstances, inst)
	}
}

func (p *parser) serviceAccount() {
	p.c.ServiceAccount = p.input("service_account")
	if p.c.ServiceAccount != "" && !serviceAccountRE.MatchString(p.c.ServiceAccount) {
		p.fail("service_account", p.c.ServiceAccount, "give the runtime service account's email, such as mlflow@my-project.iam.gserviceaccount.com (a service account's address ends in gserviceaccount.com)")
	}
}

// resources checks memory and cpu each on their own, then as the pair Cloud Run allows.
func (p *parser) resources() {
	p.c.Memory = p.inputOr("memory", DefaultMemory)
	if mi, ok := MemoryMi(p.c.Memory); !ok || mi < minMemoryMi || mi > maxMemoryMi {
		p.fail("memory", p.c.Memory, memoryWant)
	}
	p.c.CPU = p.inputOr("cpu", DefaultCPU)
	if _, ok := CPUMillis(p.c.CPU); !ok {
		p.fail("cpu", p.c.CPU, cpuWant)
	} else if err := sizeProblem(p.c.CPU, p.c.Memory); err != nil {
		p.fail("cpu", p.c.CPU, err.Error())
	}
}

func (p *parser) scaling() {
	p.c.MinInstances = p.integer("min_instances", DefaultMinInstances, 0, 1000)
	p.c.MaxInstances = p.integer("max_instances", DefaultMaxInstances, 1, 1000)
	if p.c.MinInstances > p.c.MaxInstances {
		p.fail("min_instances", strconv.Itoa(int(p.c.MinInstances)), fmt.Sprintf("must not exceed max_instances (%d); lower min_instances or raise max_instances", p.c.MaxInstances))
	}
	p.c.Concurrency = p.integer("concurrency", DefaultConcurrency, 1, 1000)
}

// timeouts: timeout is Cloud Run's per-request limit (at most an hour); wait_timeout bounds how long
// the action waits for the new revision to serve.
func (p *parser) timeouts() {
	p.c.Timeout = p.duration("timeout", DefaultTimeout, time.Second, time.Hour)
	p.c.WaitTimeout = p.duration("wait_timeout", DefaultWaitTimeout, 30*time.Second, 2*time.Hour)
}

// github reads the commit and the repository's URL from the GITHUB_* variables.
func (p *parser) github() {
	// Context's only errors here are about numbers Parse does not use, such as GITHUB_RUN_ID.
	gc, _ := p.gh.Context()
	p.c.Commit = strings.TrimSpace(gc.SHA)
	if !commitRE.MatchString(p.c.Commit) {
		p.fail("GITHUB_SHA", p.c.Commit, "the commit SHA (7 to 64 lowercase hex digits) tags the image; it is set by GitHub Actions (set it by hand when running elsewhere)")
	}
	// ServerURL defaults to https://github.com.
	if gc.Repository != "" {
		p.c.Source = strings.TrimSuffix(gc.ServerURL, "/") + "/" + gc.Repository
	}
}
