package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/sethvargo/go-githubactions"
	"golang.org/x/oauth2"

	"github.com/deploy-mlflow/deploy-mlflow/internal/cloudrun"
	"github.com/deploy-mlflow/deploy-mlflow/internal/config"
	"github.com/deploy-mlflow/deploy-mlflow/internal/gcp"
	"github.com/deploy-mlflow/deploy-mlflow/internal/image"
	"github.com/deploy-mlflow/deploy-mlflow/internal/secrets"
)

// ServerBinaryEnv names the server program to put in the image; without it the action uses
// DefaultServerBinary, where the action's own Dockerfile puts it.
const (
	ServerBinaryEnv     = "DEPLOY_MLFLOW_SERVER_BINARY"
	DefaultServerBinary = "/usr/local/share/deploy-mlflow/deploy-mlflow-server"
)

// Outputs are the step's outputs.
type Outputs struct {
	URL      string // the service's URL
	Revision string // the ready revision
	Image    string // the deployed image, REPOSITORY@sha256:...
	Service  string // the service's name
	// PreviousRevision is the revision that was ready before the deploy; empty when it created the service.
	PreviousRevision string
	// Changed is true when the deploy wrote anything: an image to the registry, the service, its IAM policy.
	Changed bool
}

// Run does the whole deploy: inputs, credentials, secrets, image, push, Cloud Run, outputs. getenv is
// the process environment (INPUT_*, GITHUB_*, GOOGLE_APPLICATION_CREDENTIALS and the endpoint
// variables); out receives the log and GitHub's workflow commands.
//
// When ctx ends midway (the job was cancelled) the error is a *StoppedError, which says what state the
// service was left in; the step summary says it too.
func Run(ctx context.Context, getenv func(string) string, out io.Writer) (*Outputs, error) {
	gh := newAction(getenv, out)

	cfg, err := config.Parse(getenv)
	if err != nil {
		return nil, err
	}
	prog := &progressLog{service: cloudrun.Name(cfg.ProjectID, cfg.Region, cfg.Service)}
	o, err := deploySteps(ctx, getenv, gh, cfg, prog)
	if err != nil && ctx.Err() != nil {
		stopped := prog.stopped(err)
		writeStoppedSummary(gh, getenv, cfg, stopped)
		return nil, stopped
	}
	return o, err
}

// newAction returns the workflow-command writer for Run. Its commands come from more than one goroutine
// (push progress, and access tokens masked as they are refreshed inside the registry client), so each is
// written whole, under a lock.
func newAction(getenv func(string) string, out io.Writer) *githubactions.Action {
	return githubactions.New(githubactions.WithGetenv(getenv), githubactions.WithWriter(&lockedWriter{w: out}))
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func deploySteps(ctx context.Context, getenv func(string) string, gh *githubactions.Action, cfg *config.Config, prog *progressLog) (*Outputs, error) {
	binary, err := serverBinary(getenv)
	if err != nil {
		return nil, err
	}
	target, err := image.Reference(cfg.Image + ":" + cfg.Commit)
	if err != nil {
		return nil, &config.InputError{Input: "image", Value: cfg.Image, Want: err.Error()}
	}
	tag := target.(name.Tag)

	// A base image on another registry than the one pushed to is pulled anonymously (as ghcr.io's is), so
	// it is read first: a wrong one (missing, or without linux/amd64) fails before any call to Google.
	var base v1.Image
	if ref, err := name.ParseReference(cfg.BaseImage); err == nil && ref.Context().RegistryStr() != tag.RegistryStr() {
		if base, err = image.Base(ctx, cfg.BaseImage); err != nil {
			return nil, err
		}
	}

	gh.Group("Credentials")
	// The token endpoint is asked again after a 429, a 5xx or a dropped connection.
	ts, err := gcp.Credentials(gcp.WithRetryingHTTP(ctx), getenv)
	if err == nil {
		ts = &maskedTokens{ts: ts, gh: gh}
		_, err = ts.Token()
	}
	if err == nil {
		gh.Infof("authenticated with %s", getenv(gcp.CredentialsEnv))
	}
	gh.EndGroup()
	if err != nil {
		return nil, err
	}

	if cfg.RemoveTag != "" {
		return removeTag(ctx, getenv, ts, cfg, gh)
	}
	warnDefaultKEK(gh, cfg)

	gh.Group("Secrets")
	resolved, err := checkSecrets(ctx, getenv, ts, cfg, gh)
	if err == nil {
		err = checkRuntimeAccess(ctx, getenv, ts, cfg, resolved.ProjectNumbers, gh)
	}
	gh.EndGroup()
	if err != nil {
		return nil, err
	}

	if cfg.DryRun {
		return plan(ctx, getenv, ts, cfg, binary, tag, resolved, gh)
	}

	gh.Group("Image")
	digest, pushed, err := buildAndPush(ctx, cfg, base, binary, tag, ts, gh)
	gh.EndGroup()
	if err != nil {
		return nil, err
	}
	prog.set(func(p *progressLog) { p.stage, p.image = ImagePushed, digest.String() })

	gh.Group("Cloud Run")
	// The service references the secret versions as resolved (pinned unless secret_versions: latest).
	res, wrotePolicy, err := deploy(ctx, getenv, ts, resolved.Apply(cfg), digest, resolved.ProjectNumbers, gh, prog)
	gh.EndGroup()
	if err != nil {
		return nil, err
	}

	o := &Outputs{URL: serviceURL(res), Revision: res.Revision, Image: digest.String(), Service: cfg.Service,
		PreviousRevision: res.Previous, Changed: pushed || res.Updated || wrotePolicy}
	writeOutputs(gh, getenv, o)
	writeSummary(gh, getenv, cfg, o, res)
	writeSecretsSummary(gh, getenv, cfg, resolved)
	return o, nil
}

func serverBinary(getenv func(string) string) (string, error) {
	path := getenv(ServerBinaryEnv)
	if path == "" {
		path = DefaultServerBinary
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("the server program to put in the image is not at %s (%v): set %s to a static linux/amd64 build of ./server "+
			"(CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o bin/deploy-mlflow-server ./server), or use the action's image, which has it", path, err, ServerBinaryEnv)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return "", fmt.Errorf("the server program %s (%s) is not an executable file", path, ServerBinaryEnv)
	}
	return path, nil
}

// maskedTokens masks every access token it hands out, refreshed ones too, before anything can print it.
type maskedTokens struct {
	ts   oauth2.TokenSource
	gh   *githubactions.Action
	mu   sync.Mutex
	last string
}

func (m *maskedTokens) Token() (*oauth2.Token, error) {
	tok, err := m.ts.Token()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tok.AccessToken != m.last {
		m.gh.AddMask(tok.AccessToken)
		m.last = tok.AccessToken
	}
	return tok, nil
}

// progress reports a long push at most once per interval, so a first push of the MLflow layers is not
// silent for minutes.
func progress(gh *githubactions.Action, interval time.Duration) func(v1.Update) {
	var last time.Time
	return func(u v1.Update) {
		if u.Error != nil || u.Total == 0 || time.Since(last) < interval {
			return
		}
		last = time.Now()
		gh.Infof("pushing: %s of %s", image.FormatBytes(u.Complete), image.FormatBytes(u.Total))
	}
}

// checkSecrets checks every secret version the service will read and, unless secret_versions is
// latest, pins each reference to latest to the version current now; it also learns the numbers of the
// secrets' projects, by which Cloud Run may name the secrets.
func checkSecrets(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, cfg *config.Config, gh *githubactions.Action) (*secrets.Resolution, error) {
	opts, err := gcp.ClientOptions(getenv(gcp.SecretManagerEndpointEnv), ts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gcp.SecretManagerEndpointEnv, err)
	}
	client, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to Secret Manager: %w", err)
	}
	defer client.Close()
	resolved, err := secrets.Resolve(ctx, client, cfg.SecretRefs(), cfg.PinSecretVersions)
	if err != nil {
		return nil, err
	}
	gh.Infof("every secret version exists and is enabled:")
	for _, line := range resolved.Lines(cfg.ProjectID) {
		gh.Infof("  %s", line)
	}
	return resolved, nil
}

// buildAndPush builds the image on base, read from cfg.BaseImage with the push credentials if nil, and
// pushes it; it reports whether the push wrote anything.
func buildAndPush(ctx context.Context, cfg *config.Config, base v1.Image, binary string, tag name.Tag, ts oauth2.TokenSource, gh *githubactions.Action) (name.Digest, bool, error) {
	// Artifact Registry takes the access token as the password of user _token.
	auth := image.WithAuth(tag.Registry, google.NewTokenSourceAuthenticator(ts))
	gh.Infof("base image %s", cfg.BaseImage)
	if base == nil {
		var err error
		if base, err = image.Base(ctx, cfg.BaseImage, auth); err != nil {
			return name.Digest{}, false, err
		}
	}
	img, err := image.Build(base, binary, image.Options{Source: cfg.Source, Revision: cfg.Commit})
	if err != nil {
		return name.Digest{}, false, fmt.Errorf("building the image: %w", err)
	}
	start := time.Now()
	digest, stats, err := image.Push(ctx, img, tag, auth, image.WithProgress(progress(gh, 10*time.Second)))
	if err != nil {
		return name.Digest{}, false, err
	}
	gh.Infof("pushed %s in %s: %s", digest, time.Since(start).Round(time.Millisecond), stats)
	return digest, !stats.Unchanged, nil
}

func deploy(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, cfg *config.Config, digest name.Digest,
	numbers cloudrun.ProjectNumbers, gh *githubactions.Action, prog *progressLog) (*cloudrun.Result, bool, error) {
	d, closeClients, err := newDeployer(ctx, getenv, ts, numbers, gh)
	if err != nil {
		return nil, false, err
	}
	defer closeClients()
	d.Routing = cloudrun.Routing{NoTraffic: cfg.NoTraffic, Tag: cfg.Tag}
	d.Logf = prog.deployLog(gh.Infof)
	services := d.Services
	desired := cloudrun.Desired(cfg, digest.String())
	public := desired.InvokerIamDisabled
	// An allUsers binding an earlier version granted goes before a private revision serves (with auth: iam
	// nothing else guards it), but after a public one, which is then public through invoker_iam_disabled.
	wrotePolicy := false
	if !public {
		if wrotePolicy, err = d.Invokers(ctx, desired.Name, public); err != nil {
			return nil, false, err
		}
	}
	res, err := d.Deploy(ctx, desired, cfg.WaitTimeout)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped: learn whether Cloud Run took the new spec although its answer was not heard.
			prog.probe(ctx, func(ctx context.Context, name string) (*runpb.Service, error) {
				return services.GetService(ctx, &runpb.GetServiceRequest{Name: name})
			})
		} else if errors.As(err, new(*cloudrun.RevisionError)) {
			// A concurrent deploy may have replaced this one's revision: then err is about theirs.
			if live, rerr := services.GetService(ctx, &runpb.GetServiceRequest{Name: desired.Name}); rerr == nil {
				if serr := superseded(live, digest.String(), err); serr != nil {
					return nil, false, serr
				}
			}
		}
		return nil, false, cloudrun.ExplainSecretAccess(cloudrun.ExplainPublicAccess(err, desired), numbers)
	}
	// A rollout that ended with another deploy's revision serving is not this deploy's success.
	if serr := superseded(res.Service, digest.String(), nil); serr != nil {
		return nil, false, serr
	}
	prog.set(func(p *progressLog) { p.stage, p.revision = Done, res.Revision })
	if public {
		if wrotePolicy, err = d.Invokers(ctx, desired.Name, public); err != nil {
			return nil, false, err
		}
	}
	if res.TagURL != "" {
		gh.Infof("revision %s is tagged %s at %s", res.Revision, cfg.Tag, res.TagURL)
	}
	if cfg.NoTraffic && !res.Created {
		gh.Infof("revision %s takes no traffic: %s serves as before", res.Revision, res.Service.Uri)
	} else {
		gh.Infof("revision %s serves %s", res.Revision, res.Service.Uri)
	}
	gh.Infof("%s is %s", cfg.Service, reachability(res.Service))
	return res, wrotePolicy, nil
}

// newDeployer connects to Cloud Run; closeClients closes the connections.
func newDeployer(ctx context.Context, getenv func(string) string, ts oauth2.TokenSource, numbers cloudrun.ProjectNumbers,
	gh *githubactions.Action) (d *cloudrun.Deployer, closeClients func(), err error) {
	opts, err := gcp.ClientOptions(getenv(gcp.RunEndpointEnv), ts)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", gcp.RunEndpointEnv, err)
	}
	services, err := run.NewServicesClient(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to Cloud Run: %w", err)
	}
	services.CallOptions.GetService = append(services.CallOptions.GetService, gcp.NoClientRetry) // ClientOptions retries
	revisions, err := run.NewRevisionsClient(ctx, opts...)
	if err != nil {
		services.Close()
		return nil, nil, fmt.Errorf("connecting to Cloud Run: %w", err)
	}
	closeClients = func() { services.Close(); revisions.Close() }
	return &cloudrun.Deployer{Services: services, Revisions: revisions, ProjectNumbers: numbers, Logf: gh.Infof}, closeClients, nil
}

// serviceURL is the URL the deploy asked for: the tag's, when it tagged the revision, else the service's.
func serviceURL(res *cloudrun.Result) string {
	if res.TagURL != "" {
		return res.TagURL
	}
	return res.Service.GetUri()
}

// reachability says who can reach the service, as Cloud Run reports it.
func reachability(svc *runpb.Service) string {
	if svc.GetInvokerIamDisabled() {
		return "public: Cloud Run's invoker IAM check is disabled; the server's basic auth or MLflow's own login guards it"
	}
	return "private: callers need roles/run.invoker and an identity token"
}

func writeOutputs(gh *githubactions.Action, getenv func(string) string, o *Outputs) {
	values := [][2]string{{"url", o.URL}, {"revision", o.Revision}, {"image", o.Image}, {"service", o.Service},
		{"previous_revision", o.PreviousRevision}, {"changed", strconv.FormatBool(o.Changed)}}
	for _, kv := range values {
		if getenv("GITHUB_OUTPUT") == "" {
			// Outside GitHub Actions there is no output file; say the values instead.
			gh.Infof("%s=%s", kv[0], kv[1])
			continue
		}
		gh.SetOutput(kv[0], kv[1])
	}
}

func writeSummary(gh *githubactions.Action, getenv func(string) string, cfg *config.Config, o *Outputs, res *cloudrun.Result) {
	if getenv("GITHUB_STEP_SUMMARY") == "" {
		return
	}
	name := cloudrun.Name(cfg.ProjectID, cfg.Region, cfg.Service)
	change := "no change: nothing was written"
	switch {
	case res.Created:
		change = "service created"
	case res.Updated:
		change = "updated: " + strings.Join(res.Changes, ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### MLflow on Cloud Run: %s\n\n", cfg.Service)
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| url | %s |\n", o.URL)
	fmt.Fprintf(&b, "| revision | `%s` |\n", o.Revision)
	if o.PreviousRevision != "" {
		fmt.Fprintf(&b, "| previous revision | `%s` |\n", o.PreviousRevision)
	}
	fmt.Fprintf(&b, "| image | `%s` |\n", o.Image)
	fmt.Fprintf(&b, "| service | [%s](%s) |\n", o.Service, cloudrun.ConsoleURL(name))
	fmt.Fprintf(&b, "| logs | [Cloud Logging](%s) |\n", cloudrun.LogsURL(name))
	fmt.Fprintf(&b, "| access | %s |\n", reachability(res.Service))
	fmt.Fprintf(&b, "| deploy | %s |\n", change)
	gh.AddStepSummary(b.String())
}

// Annotate turns an error into GitHub error annotations, one per problem, so that each bad input
// shows on its own.
func Annotate(gh *githubactions.Action, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			Annotate(gh, e)
		}
		return
	}
	var ie *config.InputError
	if errors.As(err, &ie) {
		gh.WithFieldsMap(map[string]string{"title": "deploy-mlflow input " + ie.Input}).Errorf("%s", err)
		return
	}
	gh.WithFieldsMap(map[string]string{"title": "deploy-mlflow"}).Errorf("%s", err)
}
