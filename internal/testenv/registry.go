package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// RegistryBinary is Debian's build of the CNCF distribution registry (package docker-registry).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is an OCI registry (distribution v2) on 127.0.0.1 over plain HTTP, without auth, storing blobs
// on the filesystem.
type Registry struct {
	proc *process
	host string
	log  string
}

// StartRegistry runs docker-registry with a config written to dir and storage in dir/storage.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	bin := RegistryBinary
	if _, err := os.Stat(bin); err != nil {
		path, lerr := exec.LookPath("docker-registry")
		if lerr != nil {
			return nil, fmt.Errorf("registry: %s not found (%v): run make setup (internal/testenv/setup.sh installs Debian's docker-registry)", bin, err)
		}
		bin = path
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, filepath.Join(dir, "storage"), host)
		configPath := filepath.Join(dir, "registry.yml")
		if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		logPath := filepath.Join(dir, "registry.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		cmd := exec.Command(bin, "serve", configPath)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		proc, err := startProcess(cmd)
		logFile.Close()
		if err != nil {
			return nil, fmt.Errorf("registry: start %s: %w", bin, err)
		}
		r := &Registry{proc: proc, host: host, log: logPath}
		if lastErr = r.waitReady(ctx); lastErr == nil {
			return r, nil
		}
		r.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (r *Registry) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.host+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if r.proc.exited() {
			return fmt.Errorf("registry exited during start (%v); its log %s says:\n%s", r.proc.err, r.log, readTail(r.log))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry on %s did not answer /v2/: %w; its log %s says:\n%s", r.host, ctx.Err(), r.log, readTail(r.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Host returns host:port, for image references such as Host()+"/repo:tag".
func (r *Registry) Host() string { return r.host }

// Stop stops the registry.
func (r *Registry) Stop() error {
	r.proc.stop(syscall.SIGTERM, 5*time.Second)
	return nil
}
