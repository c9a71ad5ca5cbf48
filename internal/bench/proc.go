package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// child is a process started in its own process group, so that stopping it stops what it started.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(cmd *exec.Cmd) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop sends SIGTERM to the group, SIGKILL after 10 s, and waits for the leader.
func (c *child) stop() {
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-c.done
}

// waitOK polls url with basic auth until it answers 200, every 10 ms, and returns when it did; exited
// ends the wait early when the process under test dies.
func waitOK(ctx context.Context, url, user, pass string, exited <-chan struct{}) (time.Time, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.SetBasicAuth(user, pass)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		select {
		case <-exited:
			return time.Time{}, fmt.Errorf("the process exited before %s answered 200", url)
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for %s to answer 200: %w", url, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
