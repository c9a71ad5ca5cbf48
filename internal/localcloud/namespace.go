package localcloud

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// start starts p's process and a goroutine that waits for it and then closes p.done. With secret
// volumes the process gets a mount namespace of its own in which each volume is a read-only tmpfs on
// its mount path: the program reads the paths the spec names, finds there only the volume's files, as
// in Cloud Run, and nothing outside the process sees them.
func (p *revisionProc) start(volumes []filledDir) error {
	if len(volumes) > 0 {
		if err := startInNamespace(p.cmd, volumes); err != nil {
			return err
		}
	} else if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return nil
}

// startInNamespace starts cmd from a thread that has entered a mount namespace of its own with volumes
// mounted in it, then returns the thread to the process's mount namespace.
//
// The thread must not end: Pdeathsig fires when the thread that forked a child ends, not the process,
// and any thread may have forked children before (the registry, PostgreSQL, Chromium, other revisions),
// each of which would be killed. So the thread goes back to the host's namespace (setns), is given back
// its working directory (setns moves it to the root, and since unshare the thread keeps its own), and is
// unlocked. Only when it cannot be restored does it stay locked and end with its goroutine.
func startInNamespace(cmd *exec.Cmd, volumes []filledDir) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := forkInNamespace(cmd, volumes)
		if restored {
			runtime.UnlockOSThread()
		}
		started <- err
	}()
	return <-started
}

// forkInNamespace runs on a locked thread. It reports whether the thread is back in the state it
// started in, fit to run other goroutines.
func forkInNamespace(cmd *exec.Cmd, volumes []filledDir) (restored bool, err error) {
	cwd, err := os.Getwd()
	if err != nil {
		return true, fmt.Errorf("the local runtime's working directory: %w", err)
	}
	host, err := os.Open("/proc/thread-self/ns/mnt")
	if err != nil {
		return true, fmt.Errorf("opening the host's mount namespace: %w", err)
	}
	defer host.Close()
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return true, fmt.Errorf("the local runtime mounts secret volumes in a mount namespace of the revision's own and may not create one (%w): run it as root (CAP_SYS_ADMIN), or deploy without file secrets", err)
		}
		return true, fmt.Errorf("creating a mount namespace for the revision's secret volumes: %w", err)
	}
	err = mountVolumes(volumes)
	if err == nil {
		err = cmd.Start()
	}
	if serr := unix.Setns(int(host.Fd()), unix.CLONE_NEWNS); serr != nil {
		return false, errors.Join(err, fmt.Errorf("returning to the host's mount namespace: %w", serr))
	}
	if cerr := syscall.Chdir(cwd); cerr != nil {
		return false, errors.Join(err, fmt.Errorf("returning to %s: %w", cwd, cerr))
	}
	return true, err
}

// mountVolumes makes the calling thread's new mount namespace private, so that nothing mounted there
// reaches the host, and mounts the volumes in it.
func mountVolumes(volumes []filledDir) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the revision's mount namespace private: %w", err)
	}
	for _, v := range volumes {
		if err := mountSecretDir(v); err != nil {
			return err
		}
	}
	return nil
}

// mountSecretDir mounts one volume: a tmpfs on its directory, its files written, then made read-only.
// A mount needs a directory to mount on: one the host lacks is created there (empty; it stays).
func mountSecretDir(v filledDir) error {
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return fmt.Errorf("creating the mount point %s for a secret volume: %w", v.Dir, err)
	}
	const flags = syscall.MS_NOSUID | syscall.MS_NODEV
	if err := syscall.Mount("tmpfs", v.Dir, "tmpfs", flags, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a secret volume on %s: %w", v.Dir, err)
	}
	for _, f := range v.Files {
		name := filepath.Join(v.Dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Dir, err)
		}
		if err := os.WriteFile(name, f.Data, 0o600); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Dir, err)
		}
		// WriteFile's mode passes through the umask; Chmod sets it exactly.
		if err := os.Chmod(name, f.Mode); err != nil {
			return fmt.Errorf("secret volume at %s: %w", v.Dir, err)
		}
	}
	if err := syscall.Mount("", v.Dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("making the secret volume at %s read-only: %w", v.Dir, err)
	}
	return nil
}
