package testenv

import (
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right now. For programs that cannot
// listen on port 0 and report back (postgres, the registry, the server under test); another process may
// take the port before the caller does, which the starters detect and retry.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// process is a started child with its exit observed once, in the background.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
}

// startProcess starts cmd in a process group of its own, so that Stop can reach its children too, and with
// SIGKILL as parent-death signal, so that a crashed test binary leaves nothing behind.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if cmd.SysProcAttr.Credential == nil {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process, waits up to grace for it to exit, then kills its process group and every
// descendant it had (daemons that left the group included).
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	pid := p.cmd.Process.Pid
	tree := Descendants(pid)
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	tree = append(tree, Descendants(pid)...)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for _, d := range tree {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	<-p.done
}
