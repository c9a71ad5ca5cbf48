package localcloud

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopEndsTheWholeRevision checks that stopping a revision ends every process it started, also one
// in a process group of its own (as MLflow's workers are), as the end of a container does.
func TestStopEndsTheWholeRevision(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	p := &revisionProc{name: "svc-00001-abc", done: make(chan struct{}), tail: newLineTail(10, &out, "svc")}
	// A parent that puts its child in a process group of its own, then waits.
	p.cmd = exec.Command("python3", "-c", "import subprocess, time\n"+
		"c = subprocess.Popen(['sleep', '300'], process_group=0)\n"+
		"print('child=%d' % c.pid, flush=True)\ntime.sleep(300)")
	p.cmd.Stdout = p.tail
	p.cmd.WaitDelay = time.Second
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, v, ok := strings.Cut(p.tail.String(), "child="); ok {
			child, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if child == 0 {
		t.Fatal("the child's pid was not printed")
	}
	p.stop(2 * time.Second)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Errorf("process %d, in its own group in the revision's session, outlived the revision", child)
}
