package localcloud

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func secretVolume(name string, src *runpb.SecretVolumeSource) *runpb.Volume {
	return &runpb.Volume{Name: name, VolumeType: &runpb.Volume_Secret{Secret: src}}
}

// TestSecretDirs checks what each secret volume holds, as Cloud Run's reference describes it.
func TestSecretDirs(t *testing.T) {
	t.Parallel()
	cloudSQL := &runpb.Volume{Name: "cloudsql", VolumeType: &runpb.Volume_CloudSqlInstance{CloudSqlInstance: &runpb.CloudSqlInstance{Instances: []string{"p:r:i"}}}}
	tests := []struct {
		name    string
		volumes []*runpb.Volume
		mounts  []*runpb.VolumeMount
		want    []secretDir
		wantErr string
	}{
		{
			name: "items at their paths, pinned, default mode 0444",
			volumes: []*runpb.Volume{secretVolume("s", &runpb.SecretVolumeSource{Secret: "key", Items: []*runpb.VersionToPath{
				{Path: "key.json", Version: "3"}, {Path: "sub/old.json", Version: "2", Mode: 0o640}}})},
			mounts: []*runpb.VolumeMount{{Name: "s", MountPath: "/secrets/"}},
			want: []secretDir{{Volume: "spec.template.spec.volumes[0].secret", Dir: "/secrets", Files: []secretFile{
				{Path: "key.json", Project: "proj", Secret: "key", Version: "3", Mode: 0o444},
				{Path: "sub/old.json", Project: "proj", Secret: "key", Version: "2", Mode: 0o440},
			}}},
		},
		{
			name:    "no items: the latest version in a file named after the secret; default_mode less the write bits",
			volumes: []*runpb.Volume{cloudSQL, secretVolume("s", &runpb.SecretVolumeSource{Secret: "projects/other/secrets/token", DefaultMode: 0o755})},
			mounts:  []*runpb.VolumeMount{{Name: "cloudsql", MountPath: "/cloudsql"}, {Name: "s", MountPath: "/etc/token"}},
			want: []secretDir{{Volume: "spec.template.spec.volumes[1].secret", Dir: "/etc/token", Files: []secretFile{
				{Path: "token", Project: "other", Secret: "token", Version: "latest", Mode: 0o555},
			}}},
		},
		{
			name:    "a volume the container does not mount is not mounted",
			volumes: []*runpb.Volume{secretVolume("s", &runpb.SecretVolumeSource{Secret: "key"})},
		},
		{
			name:    "an item escaping the mount path",
			volumes: []*runpb.Volume{secretVolume("s", &runpb.SecretVolumeSource{Secret: "key", Items: []*runpb.VersionToPath{{Path: "../etc/passwd", Version: "1"}}})},
			mounts:  []*runpb.VolumeMount{{Name: "s", MountPath: "/secrets"}},
			wantErr: "volumes[0].secret: items[0].path",
		},
		{
			name:    "an item without a version",
			volumes: []*runpb.Volume{secretVolume("s", &runpb.SecretVolumeSource{Secret: "key", Items: []*runpb.VersionToPath{{Path: "k"}}})},
			mounts:  []*runpb.VolumeMount{{Name: "s", MountPath: "/secrets"}},
			wantErr: "items[0].version",
		},
		{
			name:    "sub_path",
			volumes: []*runpb.Volume{secretVolume("s", &runpb.SecretVolumeSource{Secret: "key"})},
			mounts:  []*runpb.VolumeMount{{Name: "s", MountPath: "/secrets", SubPath: "key"}},
			wantErr: "sub_path",
		},
		{
			name:    "another kind of volume",
			volumes: []*runpb.Volume{{Name: "tmp", VolumeType: &runpb.Volume_EmptyDir{EmptyDir: &runpb.EmptyDirVolumeSource{}}}},
			wantErr: "secret and Cloud SQL volumes only",
		},
		{
			name:    "a mount of no volume",
			mounts:  []*runpb.VolumeMount{{Name: "s", MountPath: "/secrets"}},
			wantErr: `no volume named "s"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rev := &runpb.Revision{Volumes: tt.volumes}
			got, err := secretDirs("proj", rev, &runpb.Container{VolumeMounts: tt.mounts})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("secretDirs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadSecretDirsFails checks that a secret the runtime cannot read fails the revision with an error
// naming the volume and the version.
func TestReadSecretDirsFails(t *testing.T) {
	t.Parallel()
	r := &Runtime{Secrets: func(_ context.Context, project, secret, version string) ([]byte, error) {
		return nil, status.Errorf(codes.NotFound, "Secret [projects/%s/secrets/%s/versions/%s] not found", project, secret, version)
	}}
	dirs := []secretDir{{Volume: "spec.template.spec.volumes[0].secret", Dir: "/secrets", Files: []secretFile{{Path: "k", Project: "p", Secret: "gone", Version: "4", Mode: 0o444}}}}
	_, err := r.readSecretDirs(context.Background(), dirs)
	if err == nil || !strings.Contains(err.Error(), "volumes[0].secret") || !strings.Contains(err.Error(), "secrets/gone/versions/4") ||
		status.Code(err) != codes.NotFound {
		t.Errorf("err = %v, want a NotFound naming the volume and projects/p/secrets/gone/versions/4", err)
	}
}

// TestSecretVolumeMount runs a process with a secret volume and checks what it sees: the files at the
// mount path with their contents and modes, none of what the directory held before, and no way to
// write there; and that the host does not see the volume.
func TestSecretVolumeMount(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mount namespaces need root")
	}
	// The host's directory is on a shared mount, as / is under systemd: a volume mounted without
	// making the revision's namespace private would show up here too.
	base := t.TempDir()
	if err := syscall.Mount(base, base, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(base, syscall.MNT_DETACH) })
	if err := syscall.Mount("", base, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "secrets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "from-the-image"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	volumes := []filledDir{{Dir: dir, Files: []filledFile{
		{Path: "key.json", Mode: 0o444, Data: []byte(`{"k":1}`)},
		{Path: "sub/old.json", Mode: 0o440, Data: []byte("old")},
	}}}
	var out strings.Builder
	p := &revisionProc{done: make(chan struct{}), tail: newLineTail(50, &out, "t")}
	p.cmd = exec.Command("sh", "-c", `cd "$1" && ls -R . && cat key.json && echo && stat -c '%n %a' key.json sub/old.json && `+
		`(echo new > key.json 2>/dev/null && echo WRITABLE || echo read-only)`, "sh", dir)
	p.cmd.Stdout, p.cmd.Stderr = p.tail, p.tail
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.start(volumes); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.stop(time.Second)
		t.Fatalf("the process did not end within 20 s; output:\n%s", out.String())
	}
	got := p.tail.String()
	for _, want := range []string{"key.json", `{"k":1}`, "key.json 444", "sub/old.json 440", "read-only"} {
		if !strings.Contains(got, want) {
			t.Errorf("the process's view lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "from-the-image") {
		t.Errorf("the volume does not hide what the directory held:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "key.json")); err == nil {
		t.Error("the volume's files are visible outside the process")
	}
	if _, err := os.Stat(filepath.Join(dir, "from-the-image")); err != nil {
		t.Errorf("the directory's own file is gone outside the process: %v", err)
	}
}

// TestNamespaceThreadRestored checks that the thread which starts a revision in a mount namespace of its
// own goes back to the host's namespace and working directory, so that it can be given back to the Go
// runtime. A thread that ended instead would take with it, through Pdeathsig, every child it had forked
// before: a registry or a PostgreSQL that a test still uses.
func TestNamespaceThreadRestored(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount namespaces need root")
	}
	type result struct {
		restored            bool
		err                 error
		nsBefore, nsAfter   string
		cwdBefore, cwdAfter string
		read                string
		earlier             *exec.Cmd
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		var r result
		// A child this thread forked before, as testenv forks the registry, dies with the thread.
		r.earlier = exec.Command("sleep", "60")
		r.earlier.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if r.err = r.earlier.Start(); r.err != nil {
			done <- r
			return
		}
		r.nsBefore, _ = os.Readlink("/proc/thread-self/ns/mnt")
		r.cwdBefore, _ = os.Readlink("/proc/thread-self/cwd")
		dir := filepath.Join(t.TempDir(), "secrets")
		cmd := exec.Command("cat", filepath.Join(dir, "k"))
		var out strings.Builder
		cmd.Stdout = &out
		r.restored, r.err = forkInNamespace(cmd, []filledDir{{Dir: dir, Files: []filledFile{{Path: "k", Data: []byte("v"), Mode: 0o444}}}})
		if r.err == nil {
			_ = cmd.Wait()
			r.read = out.String()
		}
		r.nsAfter, _ = os.Readlink("/proc/thread-self/ns/mnt")
		r.cwdAfter, _ = os.Readlink("/proc/thread-self/cwd")
		if r.restored {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	exited := make(chan error, 1)
	go func() { exited <- r.earlier.Wait() }()
	t.Cleanup(func() { _ = r.earlier.Process.Kill(); <-exited })
	if r.read != "v" {
		t.Errorf("the revision read %q from its secret volume, want %q", r.read, "v")
	}
	if !r.restored || r.nsAfter != r.nsBefore || r.cwdAfter != r.cwdBefore {
		t.Fatalf("after starting a revision the thread is in mount namespace %s, directory %s (restored %v); want %s, %s",
			r.nsAfter, r.cwdAfter, r.restored, r.nsBefore, r.cwdBefore)
	}
	// The goroutine has ended; its thread must still run, and with it the child it forked first.
	select {
	case err := <-exited:
		exited <- err
		t.Errorf("the child the thread forked earlier died when the goroutine ended: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
}
