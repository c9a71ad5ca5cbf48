package gcptest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// HTTP1RequestLimit is Cloud Run's cap on a request to a container that speaks HTTP/1; a container
// whose port is named h2c has none.
const HTTP1RequestLimit = 32 << 20

const http1LimitMessage = "413 Request Entity Too Large: HTTP/1 requests to Cloud Run are limited to 32 MiB; serve HTTP/2 end to end (a port named h2c)"

// SecretResolver reads a secret version's payload, as Cloud Run does for a secretKeyRef.
type SecretResolver func(ctx context.Context, project, secret, version string) ([]byte, error)

// LocalRuntime runs Cloud Run revisions as processes on this machine, so that the Run stand-in does
// what Cloud Run does with a revision: it pulls the deployed image by digest, takes the entrypoint
// program out of the image's own layers (what runs is exactly what was pushed), resolves every
// secretKeyRef, sets the env the spec declares plus PORT, K_SERVICE, K_REVISION and K_CONFIGURATION,
// waits for the startup probe and only then routes the service's URL to it. Each service has a front
// end on a fixed loopback port that enforces Cloud Run's request limit for HTTP/1 containers.
//
// Only Linux programs run: the image's other layers (MLflow itself) are not unpacked; the program
// finds MLflow through HostEnv, as the demo and the end-to-end test arrange.
type LocalRuntime struct {
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

	mu       sync.Mutex
	services map[string]*frontEnd     // by service name
	procs    map[string]*revisionProc // by revision name
}

// frontEnd is a service's stable address; it proxies to the revision that serves.
type frontEnd struct {
	srv     *http.Server
	url     string
	mu      sync.Mutex
	current *revisionProc
}

type revisionProc struct {
	name      string
	cmd       *exec.Cmd
	port      int
	h2c       bool
	done      chan struct{}
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	tail      *lineTail
	once      sync.Once
}

// Start runs rev and returns the service's URL once its startup probe passes. On failure the process
// is stopped and the error says why, with its last log lines, as Cloud Run reports a failed revision.
func (r *LocalRuntime) Start(ctx context.Context, svc *runpb.Service, rev *runpb.Revision) (string, error) {
	containers := rev.GetContainers()
	if len(containers) != 1 {
		return "", fmt.Errorf("the local runtime runs one container per revision, not %d", len(containers))
	}
	ctr := containers[0]
	if len(rev.GetVolumes()) > 0 && !onlyCloudSQL(rev.GetVolumes()) {
		return "", errors.New("the local runtime cannot mount secret volumes")
	}
	if len(ctr.GetCommand()) > 0 {
		return "", errors.New("the local runtime runs the image's entrypoint; the spec's command override is not supported")
	}
	program, cf, err := r.unpack(ctx, ctr.GetImage(), path.Base(rev.GetName()))
	if err != nil {
		f := ImageNotFound(ctr.GetImage())
		f.Message += " " + err.Error()
		return "", f
	}
	env, err := r.env(ctx, svc, rev, ctr)
	if err != nil {
		return "", err
	}
	port, err := localFreePort()
	if err != nil {
		return "", err
	}
	p := &revisionProc{name: path.Base(rev.GetName()), port: port, done: make(chan struct{}), tail: newLineTail(40, r.Logs, path.Base(rev.GetName()))}
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
	if err := p.cmd.Start(); err != nil {
		return "", fmt.Errorf("the container could not start: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()

	if err := p.probe(ctx, ctr.GetStartupProbe()); err != nil {
		p.stop(5 * time.Second)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &RevisionFailure{
			RevisionReason: runpb.Condition_HEALTH_CHECK_CONTAINER_ERROR,
			Message: fmt.Sprintf("The user-provided container failed the configured startup probe checks (%v). Last log lines:\n%s",
				err, p.tail.String()),
		}
	}
	p.proxy = p.reverseProxy()
	return r.route(path.Base(svc.GetName()), p)
}

// Stop stops a revision that no longer receives traffic, as Cloud Run retires its instances.
func (r *LocalRuntime) Stop(rev *runpb.Revision) {
	r.mu.Lock()
	p := r.procs[path.Base(rev.GetName())]
	delete(r.procs, path.Base(rev.GetName()))
	r.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

// Close stops every revision and front end.
func (r *LocalRuntime) Close() {
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
func (r *LocalRuntime) unpack(ctx context.Context, image, revision string) (string, *v1.ConfigFile, error) {
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
func (r *LocalRuntime) env(ctx context.Context, svc *runpb.Service, rev *runpb.Revision, ctr *runpb.Container) ([]string, error) {
	project := ""
	if p := strings.Split(svc.GetName(), "/"); len(p) > 1 {
		project = p[1]
	}
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

// probe runs the startup probe as Cloud Run does: every period, up to the failure threshold.
func (p *revisionProc) probe(ctx context.Context, pr *runpb.Probe) error {
	period, threshold, timeout := time.Duration(max(pr.GetPeriodSeconds(), 1))*time.Second, max(pr.GetFailureThreshold(), 1), time.Duration(max(pr.GetTimeoutSeconds(), 1))*time.Second
	check := func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), timeout)
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	}
	if get := pr.GetHttpGet(); get != nil {
		client := &http.Client{Timeout: timeout}
		u := fmt.Sprintf("http://127.0.0.1:%d%s", p.port, get.GetPath())
		check = func() error {
			resp, err := client.Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 399 {
				return fmt.Errorf("HTTP probe %s answered %s", get.GetPath(), resp.Status)
			}
			return nil
		}
	}
	select {
	case <-time.After(time.Duration(pr.GetInitialDelaySeconds()) * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	var last error
	for i := int32(0); i < threshold; i++ {
		select {
		case <-p.done:
			return fmt.Errorf("the container exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("the container exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
		}
	}
	return fmt.Errorf("no success in %d tries, %s apart: %v", threshold, period, last)
}

func (p *revisionProc) reverseProxy() *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.port)}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // Cloud Run keeps the Host the client used
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Proto", "https")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, http1LimitMessage, http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "upstream connect error: "+err.Error(), http.StatusBadGateway)
		},
	}
	// HTTP/2 with prior knowledge to a container port named h2c, HTTP/1.1 to any other, as Cloud Run does.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(!p.h2c)
	protocols.SetUnencryptedHTTP2(p.h2c)
	p.transport = &http.Transport{Protocols: protocols, MaxIdleConnsPerHost: 16}
	rp.Transport = p.transport
	return rp
}

// stop sends SIGTERM, as Cloud Run does when it retires an instance, then SIGKILL after grace.
// Whatever the program left behind in its session is killed then, as the end of a container ends
// every process in it.
func (p *revisionProc) stop(grace time.Duration) {
	p.once.Do(func() {
		pid := p.cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
		killSession(pid)
		if p.transport != nil {
			p.transport.CloseIdleConnections()
		}
	})
}

// killSession kills every process in session sid.
func killSession(sid int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 3 && fields[3] == strconv.Itoa(sid) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// route points the service's front end at p. The revision it replaces keeps running until the Run
// stand-in stops it, as Cloud Run drains an old revision.
func (r *LocalRuntime) route(service string, p *revisionProc) (string, error) {
	fe, err := r.frontEnd(service)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.procs[p.name] = p
	r.mu.Unlock()
	fe.mu.Lock()
	fe.current = p
	fe.mu.Unlock()
	return fe.url, nil
}

// URL is the service's address on this machine, fixed from the first time it is asked for; give it to
// the Run stand-in with WithServiceURL so that the service's uri is where it really serves.
func (r *LocalRuntime) URL(service string) string {
	fe, err := r.frontEnd(service)
	if err != nil {
		return ""
	}
	return fe.url
}

func (r *LocalRuntime) frontEnd(service string) (*frontEnd, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.services == nil {
		r.services, r.procs = map[string]*frontEnd{}, map[string]*revisionProc{}
	}
	if fe := r.services[service]; fe != nil {
		return fe, nil
	}
	fe, err := newFrontEnd()
	if err != nil {
		return nil, err
	}
	r.services[service] = fe
	return fe, nil
}

func newFrontEnd() (*frontEnd, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fe := &frontEnd{url: "http://" + ln.Addr().String()}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	fe.srv = &http.Server{Handler: fe, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = fe.srv.Serve(ln) }()
	return fe, nil
}

func (fe *frontEnd) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fe.mu.Lock()
	p := fe.current
	fe.mu.Unlock()
	if p == nil {
		http.Error(w, "Service Unavailable: no revision is ready", http.StatusServiceUnavailable)
		return
	}
	if !p.h2c {
		if req.ContentLength > HTTP1RequestLimit {
			http.Error(w, http1LimitMessage, http.StatusRequestEntityTooLarge)
			return
		}
		req.Body = http.MaxBytesReader(w, req.Body, HTTP1RequestLimit)
	}
	p.proxy.ServeHTTP(w, req)
}

func onlyCloudSQL(vs []*runpb.Volume) bool {
	for _, v := range vs {
		if v.GetCloudSqlInstance() == nil {
			return false
		}
	}
	return true
}

func localFreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lineTail keeps a process's last lines for error reports, and copies each line to a log.
type lineTail struct {
	mu     sync.Mutex
	max    int
	lines  []string
	buf    []byte
	log    io.Writer
	prefix string
}

func newLineTail(max int, log io.Writer, prefix string) *lineTail {
	return &lineTail{max: max, log: log, prefix: prefix}
}

func (t *lineTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		line := string(t.buf[:i])
		t.buf = t.buf[i+1:]
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
		if t.log != nil {
			fmt.Fprintf(t.log, "[%s] %s\n", t.prefix, line)
		}
	}
	return len(b), nil
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
