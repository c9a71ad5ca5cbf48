package localcloud

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deploy-mlflow/deploy-mlflow/internal/gcptest"
	"github.com/deploy-mlflow/deploy-mlflow/internal/testenv"
)

// SecretResolver reads a secret version's payload, as Cloud Run does for a secretKeyRef.
type SecretResolver func(ctx context.Context, project, secret, version string) ([]byte, error)

// Runtime runs Cloud Run revisions as processes on this machine, so that the Run stand-in does
// what Cloud Run does with a revision: it pulls the deployed image by digest, takes the entrypoint
// program out of the image's own layers (what runs is exactly what was pushed), resolves every
// secretKeyRef, mounts secret volumes (volumes.go, namespace.go), sets the env the spec declares plus
// PORT, K_SERVICE, K_REVISION and K_CONFIGURATION, waits for the startup probe and only then routes
// the service's URL to it. Each service has a front
// end on a fixed loopback port that enforces Cloud Run's request limit for HTTP/1 containers.
//
// Only Linux programs run: the image's other layers (MLflow itself) are not unpacked; the program
// finds MLflow through HostEnv, as the demo and the end-to-end test arrange.
type Runtime struct {
	// Dir holds the unpacked programs.
	Dir string
	// Secrets resolves secretKeyRefs.
	Secrets SecretResolver
	// HostEnv is added to every revision's environment (PATH to MLflow, emulator hosts, ...).
	HostEnv []string
	// Logs receives the revisions' output, one line at a time, prefixed with the revision name; nil drops it.
	Logs io.Writer
	// Remote are the options for pulling images (transport, auth).
	Remote []remote.Option

	logMu    sync.Mutex // serialises writes to Logs
	mu       sync.Mutex
	services map[string]*frontEnd     // by service name
	procs    map[string]*revisionProc // by revision name
}

// Start runs rev and returns the service's URL once its startup probe passes. On failure the process
// is stopped and the error says why, with its last log lines, as Cloud Run reports a failed revision.
func (r *Runtime) Start(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (string, error) {
	containers := rev.GetContainers()
	if len(containers) != 1 {
		return "", fmt.Errorf("the local runtime runs one container per revision, not %d", len(containers))
	}
	ctr := containers[0]
	volumes, err := secretDirs(projectOf(svc), rev, ctr)
	if err != nil {
		return "", err
	}
	if len(ctr.GetCommand()) > 0 {
		return "", errors.New("the local runtime runs the image's entrypoint; the spec's command override is not supported")
	}
	program, cf, err := r.unpack(ctx, ctr.GetImage(), path.Base(rev.GetName()))
	if err != nil {
		f := gcptest.ImageNotFound(ctr.GetImage())
		f.Message += " " + err.Error()
		return "", f
	}
	env, err := r.env(ctx, svc, rev, ctr)
	if err != nil {
		return "", err
	}
	filled, err := r.readSecretDirs(ctx, volumes)
	if err != nil {
		return "", err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return "", err
	}
	p := &revisionProc{name: path.Base(rev.GetName()), port: port, done: make(chan struct{}), tail: newLineTail(40, r.logWriter(), path.Base(rev.GetName()))}
	for _, cp := range ctr.GetPorts() {
		p.h2c = cp.GetName() == "h2c"
	}
	// As a container runtime does: the entrypoint, then the spec's args, or else the image's command.
	args := append([]string{}, cf.Config.Entrypoint[1:]...)
	if len(ctr.GetArgs()) > 0 {
		args = append(args, ctr.GetArgs()...)
	} else {
		args = append(args, cf.Config.Cmd...)
	}
	p.cmd = exec.Command(program, args...)
	p.cmd.Env = append(append(append([]string{}, r.HostEnv...), env...), fmt.Sprintf("PORT=%d", port))
	p.cmd.Stdout, p.cmd.Stderr = p.tail, p.tail
	// Processes it leaves behind may hold its output open; do not wait on them once it has exited.
	p.cmd.WaitDelay = time.Second
	// A session of its own, so that stopping the revision reaches every process it started, as ending a
	// container does; and it dies with this process.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.start(filled); err != nil {
		return "", fmt.Errorf("the container could not start: %w", err)
	}

	if err := p.probe(ctx, ctr.GetStartupProbe()); err != nil {
		p.stop(5 * time.Second)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &gcptest.RevisionFailure{
			RevisionReason: runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR,
			Message: fmt.Sprintf("The user-provided container failed the configured startup probe checks (%v). Last log lines:\n%s",
				err, p.tail.String()),
		}
	}
	p.proxy = p.reverseProxy()
	return r.route(path.Base(svc.GetName()), p)
}

// Stop stops a revision that no longer receives traffic, as Cloud Run retires its instances.
func (r *Runtime) Stop(rev *runpb.Revision) {
	r.mu.Lock()
	p := r.procs[path.Base(rev.GetName())]
	delete(r.procs, path.Base(rev.GetName()))
	r.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

// Close stops every revision and front end.
func (r *Runtime) Close() {
	r.mu.Lock()
	fes, procs := r.services, r.procs
	r.services, r.procs = nil, nil
	r.mu.Unlock()
	for _, fe := range fes {
		_ = fe.srv.Close()
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(10 * time.Second) }()
	}
	wg.Wait()
}

// unpack pulls image and writes its entrypoint program, read from the topmost layer that holds it; it
// returns the program's path and the image's config.
func (r *Runtime) unpack(ctx context.Context, image, revision string) (string, *v1.ConfigFile, error) {
	ref, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		return "", nil, err
	}
	if _, ok := ref.(name.Digest); !ok {
		return "", nil, fmt.Errorf("the image is not pinned by digest")
	}
	img, err := remote.Image(ref, append([]remote.Option{remote.WithContext(ctx)}, r.Remote...)...)
	if err != nil {
		return "", nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", nil, err
	}
	if len(cf.Config.Entrypoint) == 0 {
		return "", nil, errors.New("the image has no entrypoint")
	}
	entry := strings.TrimPrefix(path.Clean(cf.Config.Entrypoint[0]), "/")
	layers, err := img.Layers()
	if err != nil {
		return "", nil, err
	}
	dst := filepath.Join(r.Dir, revision, filepath.Base(entry))
	for i := len(layers) - 1; i >= 0; i-- {
		found, err := extract(layers[i], entry, dst)
		if err != nil {
			return "", nil, err
		}
		if found {
			return dst, cf, nil
		}
	}
	return "", nil, fmt.Errorf("no layer holds the entrypoint /%s", entry)
}

func extract(layer v1.Layer, file, dst string) (bool, error) {
	rc, err := layer.Uncompressed()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if strings.TrimPrefix(path.Clean(h.Name), "/") != file || h.Typeflag != tar.TypeReg {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return false, err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return false, err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return false, err
		}
		return true, f.Close()
	}
}

// env is the container's declared environment with secrets resolved, plus Cloud Run's own variables.
func (r *Runtime) env(ctx context.Context, svc *runpb.Service, rev *runpb.Revision, ctr *runpb.Container) ([]string, error) {
	project := projectOf(svc)
	out := []string{
		"K_SERVICE=" + path.Base(svc.GetName()),
		"K_REVISION=" + path.Base(rev.GetName()),
		"K_CONFIGURATION=" + path.Base(svc.GetName()),
	}
	for _, e := range ctr.GetEnv() {
		ref := e.GetValueSource().GetSecretKeyRef()
		if ref == nil {
			out = append(out, e.GetName()+"="+e.GetValue())
			continue
		}
		secretProject, secret := project, ref.GetSecret()
		if p := strings.Split(secret, "/"); len(p) == 4 && p[0] == "projects" && p[2] == "secrets" {
			secretProject, secret = p[1], p[3]
		}
		if r.Secrets == nil {
			return nil, errors.New("no secret resolver")
		}
		value, err := r.Secrets(ctx, secretProject, secret, ref.GetVersion())
		if err != nil {
			return nil, fmt.Errorf("spec.template.spec.containers[0].env[%s].value_from.secret_key_ref: %w", e.GetName(), err)
		}
		out = append(out, e.GetName()+"="+string(value))
	}
	return out, nil
}

// logWriter is Logs with writes serialised: each revision writes its lines from goroutines of its own.
func (r *Runtime) logWriter() io.Writer {
	if r.Logs == nil {
		return nil
	}
	return lockedWriter{mu: &r.logMu, w: r.Logs}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// projectOf is the project in the service's name, projects/PROJECT/locations/REGION/services/NAME.
func projectOf(svc *runpb.Service) string {
	if p := strings.Split(svc.GetName(), "/"); len(p) > 1 {
		return p[1]
	}
	return ""
}
