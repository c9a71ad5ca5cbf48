package localcloud

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// start starts p's process and a goroutine that waits for it and then closes p.done. With secret
// volumes the process gets a mount namespace of its own in which each volume is a read-only tmpfs on
// its mount path: the program reads the paths the spec names, finds there only the volume's files, as
// in Cloud Run, and nothing outside the process sees them.
func (p *revisionProc) start(volumes []filledDir) error {
	if len(volumes) == 0 {
		if err := p.cmd.Start(); err != nil {
			return err
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		return nil
	}
	started := make(chan error, 1)
	go func() {
		// A thread may leave the process's mount namespace for one of its own, and a process forked
		// from it starts there. This goroutine keeps the thread to itself and never unlocks it, so no
		// other goroutine runs in that namespace and the thread ends with the goroutine. The goroutine
		// lasts as long as the process, because Pdeathsig fires when the thread that forked it ends.
		runtime.LockOSThread()
		if err := enterVolumeNamespace(volumes); err != nil {
			started <- err
			return
		}
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return <-started
}

// enterVolumeNamespace moves the calling (locked) thread to a new mount namespace, private so that
// nothing mounted there reaches the host, and mounts the volumes in it.
func enterVolumeNamespace(volumes []filledDir) error {
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("the local runtime mounts secret volumes in a mount namespace of the revision's own and may not create one (%w): run it as root (CAP_SYS_ADMIN), or deploy without file secrets", err)
		}
		return fmt.Errorf("creating a mount namespace for the revision's secret volumes: %w", err)
	}
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
