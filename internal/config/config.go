package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// Config is everything the action was asked to do, validated.
type Config struct {
	ProjectID  string
	Region     string
	Service    string
	Repository string // empty when Image was given
	// Image is the repository the image is pushed to, without tag or digest.
	Image         string
	MLflowVersion string
	BaseImage     string

	BackendStore SecretRef
	// Exactly one of ArtifactsDestination and ArtifactsDestinationSecret is set.
	ArtifactsDestination       string
	ArtifactsDestinationSecret *SecretRef

	Auth     string // serverenv.AuthBasic or serverenv.AuthIAM
	Username *SecretRef
	Password *SecretRef

	Secrets           []SecretMount
	EnvVars           []EnvVar
	CloudSQLInstances []string
	ServiceAccount    string

	Memory        string
	CPU           string
	MinInstances  int32
	MaxInstances  int32
	Concurrency   int32
	Timeout       time.Duration
	AllowUnauthed bool
	Labels        map[string]string
	WaitTimeout   time.Duration

	// Commit is GITHUB_SHA: the image tag, its revision label and the service's commit-sha label.
	Commit string
	// Source is the repository URL for the image's source label (GITHUB_SERVER_URL/GITHUB_REPOSITORY).
	Source string
}

// SecretRef names one version of a Secret Manager secret.
type SecretRef struct {
	Project string // the secret's project; the action's project unless the reference named another
	Secret  string
	Version string // "latest" or a version number
	// Input is the action input the reference came from, for error messages.
	Input string
}

// Name is the secret version's resource name.
func (r SecretRef) Name() string {
	return fmt.Sprintf("projects/%s/secrets/%s/versions/%s", r.Project, r.Secret, r.Version)
}

func (r SecretRef) String() string { return r.Secret + ":" + r.Version }

// SecretMount exposes a secret to the container as an env var (Env) or as a file (Path).
type SecretMount struct {
	Env  string
	Path string
	Ref  SecretRef
}

// EnvVar is a plain environment variable for the container.
type EnvVar struct{ Name, Value string }

// SecretRefs lists every secret version the service will read, in input order.
func (c *Config) SecretRefs() []SecretRef {
	refs := []SecretRef{c.BackendStore}
	if c.ArtifactsDestinationSecret != nil {
		refs = append(refs, *c.ArtifactsDestinationSecret)
	}
	if c.Username != nil {
		refs = append(refs, *c.Username)
	}
	if c.Password != nil {
		refs = append(refs, *c.Password)
	}
	for _, m := range c.Secrets {
		refs = append(refs, m.Ref)
	}
	return refs
}

// InputError is a bad action input: which one, what it was, and what would be valid.
type InputError struct {
	Input string
	Value string
	Want  string
}

func (e *InputError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("input %s: %s", e.Input, e.Want)
	}
	return fmt.Sprintf("input %s: %q is not valid: %s", e.Input, e.Value, e.Want)
}

// Defaults for optional inputs.
const (
	DefaultRegion       = "us-central1"
	DefaultService      = "mlflow"
	DefaultMemory       = "2Gi"
	DefaultCPU          = "1"
	DefaultMinInstances = 0
	DefaultMaxInstances = 3
	DefaultConcurrency  = 80
	DefaultTimeout      = 300 * time.Second
	DefaultWaitTimeout  = 10 * time.Minute
)

// DefaultBaseImage is the official MLflow image with the PostgreSQL and GCS extras.
func DefaultBaseImage(mlflowVersion string) string {
	return "ghcr.io/mlflow/mlflow:v" + mlflowVersion + "-full"
}

var (
	projectRE       = regexp.MustCompile(`^([a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	regionRE        = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	serviceRE       = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$`)
	repositoryRE    = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE       = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)
	secretIDRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	secretVerRE     = regexp.MustCompile(`^(latest|[1-9][0-9]*)$`)
	envNameRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	bucketRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)
	cloudSQLRE      = regexp.MustCompile(`^[a-z][a-z0-9.:-]*[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]{0,97}$`)
	emailRE         = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*@[a-z0-9][a-z0-9.-]*\.[a-z]+$`)
	memoryRE        = regexp.MustCompile(`^([1-9][0-9]*)(Mi|Gi)$`)
	labelKeyRE      = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValRE      = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
	commitRE        = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	projectNumberRE = regexp.MustCompile(`^[0-9]+$`)
	plausibleRefRE  = regexp.MustCompile(`^[A-Za-z0-9_:/.-]{1,300}$`)
)

// reservedEnv are names the container may not set: Cloud Run's own, and the server's.
var reservedEnv = map[string]bool{
	"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true,
	serverenv.BackendStoreURI: true, serverenv.ArtifactsDestination: true, serverenv.Auth: true,
	serverenv.Username: true, serverenv.Password: true,
}

// Labels the action sets itself.
const (
	LabelManagedBy = "managed-by"
	LabelCommit    = "commit-sha"
)

// Parse reads the action's inputs (INPUT_* variables) and the GitHub environment through getenv and
// validates every one of them. It returns every problem at once, each an *InputError.
func Parse(getenv func(string) string) (*Config, error) {
	p := &parser{getenv: getenv}
	c := &Config{}

	c.ProjectID = p.input("project_id")
	if c.ProjectID == "" {
		for _, k := range []string{"GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"} {
			if c.ProjectID = strings.TrimSpace(getenv(k)); c.ProjectID != "" {
				break
			}
		}
	}
	switch {
	case c.ProjectID == "":
		p.fail("project_id", "", "is required: set it, or run google-github-actions/auth with project_id before this step (it exports GOOGLE_CLOUD_PROJECT)")
	case !projectRE.MatchString(c.ProjectID):
		p.fail("project_id", c.ProjectID, "a project ID is 6 to 30 lowercase letters, digits and hyphens, starting with a letter (the ID, not the display name or number)")
	}

	c.Region = p.inputOr("region", DefaultRegion)
	if !regionRE.MatchString(c.Region) {
		p.fail("region", c.Region, "use a Cloud Run region name such as us-central1 or europe-west1")
	}
	c.Service = p.inputOr("service", DefaultService)
	if !serviceRE.MatchString(c.Service) {
		p.fail("service", c.Service, "a Cloud Run service name is up to 49 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")
	}

	c.Repository = p.input("repository")
	c.Image = p.input("image")
	switch {
	case c.Image != "":
		// A tag or digest makes the name an invalid repository, so this refuses both.
		repo, err := name.NewRepository(c.Image, name.StrictValidation)
		if err != nil {
			p.fail("image", c.Image, "give an image repository without tag or digest, such as us-central1-docker.pkg.dev/my-project/my-repo/mlflow")
		} else {
			c.Image = repo.Name()
		}
	case c.Repository == "":
		p.fail("repository", "", "is required unless image is set: name the Artifact Registry Docker repository to push to (create one with: gcloud artifacts repositories create mlflow --repository-format=docker --location="+c.Region+")")
	case !repositoryRE.MatchString(c.Repository):
		p.fail("repository", c.Repository, "an Artifact Registry repository ID is up to 63 lowercase letters, digits and hyphens, starting with a letter")
	default:
		c.Image = fmt.Sprintf("%s-docker.pkg.dev/%s/%s/%s", c.Region, strings.ReplaceAll(c.ProjectID, ":", "/"), c.Repository, c.Service)
	}

	c.MLflowVersion = p.inputOr("mlflow_version", DefaultMLflowVersion)
	if m := versionRE.FindStringSubmatch(strings.TrimPrefix(c.MLflowVersion, "v")); m == nil {
		p.fail("mlflow_version", c.MLflowVersion, "use an MLflow release number such as "+DefaultMLflowVersion)
	} else if major, _ := strconv.Atoi(m[1]); major < 3 {
		p.fail("mlflow_version", c.MLflowVersion, "deploy-mlflow runs MLflow 3 or later (its server is configured through MLflow 3's options); use "+DefaultMLflowVersion+" or another 3.x release")
	} else {
		c.MLflowVersion = strings.TrimPrefix(c.MLflowVersion, "v")
	}
	c.BaseImage = p.inputOr("base_image", DefaultBaseImage(c.MLflowVersion))
	if _, err := name.ParseReference(c.BaseImage, name.StrictValidation); err != nil {
		p.fail("base_image", c.BaseImage, "give an image reference such as "+DefaultBaseImage(DefaultMLflowVersion))
	}

	if ref, ok := p.secretRef("backend_store_secret", c.ProjectID); ok {
		c.BackendStore = ref
	} else if p.input("backend_store_secret") == "" {
		p.fail("backend_store_secret", "", "is required: name the Secret Manager secret that holds the database URL, such as postgresql+psycopg2://USER:PASSWORD@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE")
	}

	c.ArtifactsDestination = p.input("artifacts_destination")
	hasArtifactSecret := p.input("artifacts_destination_secret") != ""
	switch {
	case c.ArtifactsDestination != "" && hasArtifactSecret:
		p.fail("artifacts_destination", c.ArtifactsDestination, "set either artifacts_destination or artifacts_destination_secret, not both")
	case c.ArtifactsDestination != "":
		if err := checkGCSURI(c.ArtifactsDestination); err != "" {
			p.fail("artifacts_destination", c.ArtifactsDestination, err)
		}
	case hasArtifactSecret:
		if ref, ok := p.secretRef("artifacts_destination_secret", c.ProjectID); ok {
			c.ArtifactsDestinationSecret = &ref
		}
	default:
		p.fail("artifacts_destination", "", "set artifacts_destination (gs://BUCKET/PATH) or artifacts_destination_secret (a secret holding it)")
	}

	c.Auth = p.inputOr("auth", serverenv.AuthBasic)
	allowInput := p.input("allow_unauthenticated")
	switch c.Auth {
	case serverenv.AuthBasic:
		for _, in := range []string{"username_secret", "password_secret"} {
			ref, ok := p.secretRef(in, c.ProjectID)
			switch {
			case ok && in == "username_secret":
				c.Username = &ref
			case ok:
				c.Password = &ref
			case p.input(in) == "":
				p.fail(in, "", "is required when auth is basic: name the Secret Manager secret that holds the "+strings.TrimSuffix(in, "_secret")+" (or set auth: iam to let Cloud Run IAM guard the service)")
			}
		}
		c.AllowUnauthed = true
		if allowInput != "" {
			c.AllowUnauthed = p.boolean("allow_unauthenticated", allowInput)
		}
		if !c.AllowUnauthed && allowInput != "" && strings.EqualFold(allowInput, "false") {
			// Cloud Run IAM and basic auth would both need the Authorization header.
			p.fail("allow_unauthenticated", allowInput, "with auth: basic the service must be public: Cloud Run IAM would claim the Authorization header that basic auth needs, and no MLflow client could get in; set auth: iam to let IAM guard the service instead")
		}
	case serverenv.AuthIAM:
		for _, in := range []string{"username_secret", "password_secret"} {
			if v := p.input(in); v != "" {
				p.fail(in, v, "is only used when auth is basic; remove it, or set auth: basic")
			}
		}
		if allowInput != "" && p.boolean("allow_unauthenticated", allowInput) {
			p.fail("allow_unauthenticated", allowInput, "must be false when auth is iam: with no basic auth, Cloud Run IAM is the only guard, and allUsers would open the server to anyone")
		}
	default:
		p.fail("auth", c.Auth, "use basic (HTTP basic auth by the server) or iam (Cloud Run IAM guards the service)")
	}

	c.Secrets = p.secretMounts(c.ProjectID)
	c.EnvVars = p.envVars()
	p.checkEnvClash(c)

	for _, inst := range splitList(p.input("cloudsql_instances")) {
		if !cloudSQLRE.MatchString(inst) {
			p.fail("cloudsql_instances", inst, "name each Cloud SQL instance by its connection name, PROJECT:REGION:INSTANCE")
			continue
		}
		c.CloudSQLInstances = append(c.CloudSQLInstances, inst)
	}

	c.ServiceAccount = p.input("service_account")
	if c.ServiceAccount != "" && !emailRE.MatchString(c.ServiceAccount) {
		p.fail("service_account", c.ServiceAccount, "give the runtime service account's email, such as mlflow@my-project.iam.gserviceaccount.com")
	}

	c.Memory = p.inputOr("memory", DefaultMemory)
	if mi, ok := MemoryMi(c.Memory); !ok || mi < 512 || mi > 32*1024 {
		p.fail("memory", c.Memory, "use a size from 512Mi to 32Gi, such as 2Gi (MLflow needs at least 512Mi)")
	}
	c.CPU = p.inputOr("cpu", DefaultCPU)
	if _, ok := CPUMillis(c.CPU); !ok {
		p.fail("cpu", c.CPU, "use 1, 2, 4, 6 or 8")
	} else if want := SizeProblem(c.CPU, c.Memory); want != "" {
		p.fail("cpu", c.CPU, want)
	}
	c.MinInstances = p.integer("min_instances", DefaultMinInstances, 0, 1000)
	c.MaxInstances = p.integer("max_instances", DefaultMaxInstances, 1, 1000)
	if c.MinInstances > c.MaxInstances {
		p.fail("min_instances", strconv.Itoa(int(c.MinInstances)), fmt.Sprintf("must not exceed max_instances (%d)", c.MaxInstances))
	}
	c.Concurrency = p.integer("concurrency", DefaultConcurrency, 1, 1000)
	c.Timeout = p.duration("timeout", DefaultTimeout, time.Second, time.Hour)
	c.WaitTimeout = p.duration("wait_timeout", DefaultWaitTimeout, 30*time.Second, 2*time.Hour)
	c.Labels = p.labels()

	c.Commit = strings.TrimSpace(getenv("GITHUB_SHA"))
	if !commitRE.MatchString(c.Commit) {
		p.fail("GITHUB_SHA", c.Commit, "the commit SHA tags the image; it is set by GitHub Actions (set it by hand when running elsewhere)")
	}
	if server, repo := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY"); repo != "" {
		if server == "" {
			server = "https://github.com"
		}
		c.Source = strings.TrimSuffix(server, "/") + "/" + repo
	}

	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) input(name string) string {
	return strings.TrimSpace(p.getenv("INPUT_" + strings.ToUpper(name)))
}

func (p *parser) inputOr(name, def string) string {
	if v := p.input(name); v != "" {
		return v
	}
	return def
}

func (p *parser) fail(input, value, want string) {
	p.errs = append(p.errs, &InputError{Input: input, Value: value, Want: want})
}

func (p *parser) boolean(input, v string) bool {
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(input, v, "use true or false")
	return false
}

func (p *parser) integer(input string, def, lo, hi int32) int32 {
	v := p.input(input)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < int(lo) || n > int(hi) {
		p.fail(input, v, fmt.Sprintf("use a whole number from %d to %d", lo, hi))
		return def
	}
	return int32(n)
}

func (p *parser) duration(input string, def, lo, hi time.Duration) time.Duration {
	v := p.input(input)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || d < lo || d > hi || d%time.Second != 0 {
		p.fail(input, v, fmt.Sprintf("use whole seconds from %s to %s, such as %s", lo, hi, def))
		return def
	}
	return d
}

// secretRef parses a secret reference input: NAME, NAME:VERSION or projects/P/secrets/S[/versions/V].
func (p *parser) secretRef(input, project string) (SecretRef, bool) {
	v := p.input(input)
	if v == "" {
		return SecretRef{}, false
	}
	ref, want := ParseSecretRef(v, project)
	if want != "" {
		p.fail(input, shown(v), want)
		return SecretRef{}, false
	}
	ref.Input = input
	return ref, true
}

// notShown stands in an error for a value that may be a secret itself.
const notShown = "(value not shown: it looks like a secret value, not a secret's name)"

// shown is v when it could be a secret reference, else notShown: a database URL or key pasted where a
// secret's name belongs must not be echoed into the workflow's annotations.
func shown(v string) string {
	if plausibleRefRE.MatchString(v) {
		return v
	}
	return notShown
}

// ParseSecretRef parses NAME, NAME:VERSION or projects/P/secrets/S[/versions/V]; on failure it returns
// what a valid reference looks like.
func ParseSecretRef(v, project string) (SecretRef, string) {
	const want = "use a Secret Manager secret name (DB_url), name:version (DB_url:3) or projects/PROJECT/secrets/NAME[/versions/VERSION]; versions are latest or a number"
	ref := SecretRef{Project: project, Version: "latest"}
	if strings.HasPrefix(v, "projects/") {
		parts := strings.Split(v, "/")
		switch {
		case len(parts) == 4 && parts[2] == "secrets":
		case len(parts) == 6 && parts[2] == "secrets" && parts[4] == "versions":
			ref.Version = parts[5]
		default:
			return SecretRef{}, want
		}
		ref.Project, ref.Secret = parts[1], parts[3]
		if !projectRE.MatchString(ref.Project) && !projectNumberRE.MatchString(ref.Project) {
			return SecretRef{}, want
		}
	} else {
		ref.Secret = v
		if i := strings.LastIndexByte(v, ':'); i >= 0 {
			ref.Secret, ref.Version = v[:i], v[i+1:]
		}
	}
	if !secretIDRE.MatchString(ref.Secret) || !secretVerRE.MatchString(ref.Version) {
		return SecretRef{}, want
	}
	return ref, ""
}

func (p *parser) secretMounts(project string) []SecretMount {
	var out []SecretMount
	dirs := map[string]string{} // mount directory -> secret, since Cloud Run mounts one secret per directory
	for _, item := range splitList(p.input("secrets")) {
		target, refText, ok := strings.Cut(item, "=")
		target, refText = strings.TrimSpace(target), strings.TrimSpace(refText)
		if !ok || target == "" || refText == "" {
			p.fail("secrets", shown(item), "use ENV=secret[:version] or /mount/path=secret[:version]")
			continue
		}
		ref, want := ParseSecretRef(refText, project)
		if want != "" {
			p.fail("secrets", target+"="+shown(refText), want)
			continue
		}
		ref.Input = "secrets"
		m := SecretMount{Ref: ref}
		if strings.HasPrefix(target, "/") {
			clean := strings.TrimRight(target, "/")
			dir := clean[:strings.LastIndexByte(clean, '/')]
			switch {
			case dir == "" || strings.Contains(clean, "//") || strings.Contains(clean, "/../") || strings.Contains(clean, "/./"):
				p.fail("secrets", item, "mount a secret as a file in its own directory, such as /secrets/credentials.json")
				continue
			case dir == "/cloudsql" || strings.HasPrefix(dir, "/cloudsql/"):
				p.fail("secrets", item, "/cloudsql is where Cloud SQL sockets are mounted; choose another directory")
				continue
			case dirs[dir] != "" && dirs[dir] != ref.Project+"/"+ref.Secret:
				p.fail("secrets", item, "Cloud Run mounts one secret per directory, and "+dir+" already holds another; use another directory")
				continue
			}
			dirs[dir] = ref.Project + "/" + ref.Secret
			m.Path = clean
		} else {
			if !envNameRE.MatchString(target) {
				p.fail("secrets", item, "an environment variable name is letters, digits and underscores, not starting with a digit")
				continue
			}
			m.Env = target
		}
		out = append(out, m)
	}
	return out
}

func (p *parser) envVars() []EnvVar {
	var out []EnvVar
	for _, item := range splitList(p.input("env_vars")) {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || !envNameRE.MatchString(k) {
			// Only the name is echoed: the value may be sensitive.
			p.fail("env_vars", shown(k), "use KEY=VALUE, where KEY is letters, digits and underscores")
			continue
		}
		out = append(out, EnvVar{Name: k, Value: v})
	}
	return out
}

// checkEnvClash refuses names that are reserved or given twice.
func (p *parser) checkEnvClash(c *Config) {
	seen := map[string]string{}
	check := func(input, name string) {
		switch {
		case reservedEnv[name]:
			p.fail(input, name, "this variable is set by Cloud Run or by deploy-mlflow itself; use the matching input instead")
		case seen[name] != "":
			p.fail(input, name, "is also set by "+seen[name]+"; set each variable once")
		default:
			seen[name] = input
		}
	}
	for _, m := range c.Secrets {
		if m.Env != "" {
			check("secrets", m.Env)
		}
	}
	for _, e := range c.EnvVars {
		check("env_vars", e.Name)
	}
}

func (p *parser) labels() map[string]string {
	out := map[string]string{}
	for _, item := range splitList(p.input("labels")) {
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok || !labelKeyRE.MatchString(k) || !labelValRE.MatchString(v):
			p.fail("labels", item, "use key=value with lowercase letters, digits, underscores and hyphens (keys start with a letter; at most 63 characters each)")
		case k == LabelManagedBy || k == LabelCommit:
			p.fail("labels", item, "the label "+k+" is set by deploy-mlflow itself")
		default:
			out[k] = v
		}
	}
	return out
}

// splitList splits a list input: by lines when it has several lines (so values may hold commas),
// else by commas. Blank items are dropped.
func splitList(v string) []string {
	sep := ","
	if strings.Contains(v, "\n") {
		sep = "\n"
	}
	var out []string
	for _, item := range strings.Split(v, sep) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func checkGCSURI(v string) string {
	const want = "use a Cloud Storage location gs://BUCKET or gs://BUCKET/PATH"
	rest, ok := strings.CutPrefix(v, "gs://")
	if !ok {
		return want
	}
	bucket, _, _ := strings.Cut(rest, "/")
	if !bucketRE.MatchString(bucket) {
		return want + " (bucket names are 3 to 222 lowercase letters, digits, dots, hyphens and underscores)"
	}
	return ""
}

// SizeProblem says what Cloud Run would refuse in a cpu and memory pair (more memory needs more CPUs,
// and more CPUs need a minimum of memory), or "" when the pair is valid or either one is malformed.
func SizeProblem(cpu, memory string) string {
	m, okCPU := CPUMillis(cpu)
	mi, okMem := MemoryMi(memory)
	if !okCPU || !okMem {
		return ""
	}
	for _, r := range []struct{ aboveMi, minCPU int }{{24 << 10, 8000}, {16 << 10, 6000}, {8 << 10, 4000}, {4 << 10, 2000}} {
		if mi > r.aboveMi && m < r.minCPU {
			return fmt.Sprintf("memory %s needs cpu %d or more on Cloud Run; raise cpu or lower memory", memory, r.minCPU/1000)
		}
	}
	for _, r := range []struct{ cpu, minMi int }{{8000, 4 << 10}, {6000, 4 << 10}, {4000, 2 << 10}} {
		if m >= r.cpu && mi < r.minMi {
			return fmt.Sprintf("cpu %s needs memory %dGi or more on Cloud Run; raise memory or lower cpu", cpu, r.minMi>>10)
		}
	}
	return ""
}

// MemoryMi converts a memory quantity with a Mi or Gi suffix to MiB.
func MemoryMi(v string) (int, bool) {
	m := memoryRE.FindStringSubmatch(v)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	if m[2] == "Gi" {
		n *= 1024
	}
	return n, true
}

// CPUMillis converts a CPU quantity ("1", "2", "1000m") to millicores, accepting Cloud Run's sizes.
func CPUMillis(v string) (int, bool) {
	var n int
	if s, ok := strings.CutSuffix(v, "m"); ok {
		m, err := strconv.Atoi(s)
		if err != nil {
			return 0, false
		}
		n = m
	} else {
		c, err := strconv.Atoi(v)
		if err != nil {
			return 0, false
		}
		n = c * 1000
	}
	switch n {
	case 1000, 2000, 4000, 6000, 8000:
		return n, true
	}
	return 0, false
}
