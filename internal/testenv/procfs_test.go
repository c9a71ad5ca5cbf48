package testenv

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stat string
		want       Proc
		wantErr    bool
	}{
		{
			name: "plain",
			stat: "42 (sleep) S 7 42 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 5439488 200 18446744073709551615",
			want: Proc{PID: 42, State: 'S', PPID: 7, PGRP: 42, SID: 7, Start: 123456},
		},
		{
			name: "command name with spaces and parentheses",
			stat: "43 (a) Z (b) Z 1 9 9 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 99 0 0 18446744073709551615",
			want: Proc{PID: 43, State: 'Z', PPID: 1, PGRP: 9, SID: 9, Start: 99},
		},
		{name: "truncated", stat: "44 (sleep) S 7 42", wantErr: true},
		{name: "no command name", stat: "45 sleep S 7 42 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 1 0 0 0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseStat(tt.want.PID, []byte(tt.stat))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: parseStat = %+v, %v; want %+v (error %v)", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestProcessHelpers runs a shell with a child and reads them back as the server tests read MLflow's
// processes: the tree, the command line, the peak RSS, and waiting for them to end.
func TestProcessHelpers(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", "sleep 61 & wait")
	// A session of its own, as localcloud starts a revision: its number is sh's PID wherever the test runs.
	// (This test's own session can read as 0, when its leader is outside the PID namespace.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-sh, syscall.SIGKILL); _ = cmd.Wait() })

	var sleep int
	for deadline := time.Now().Add(10 * time.Second); sleep == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no process below sh (pid %d) within 10s; Descendants = %v", sh, Descendants(sh))
		}
		for _, pid := range Descendants(sh) {
			if Cmdline(pid) == "sleep 61" {
				sleep = pid
			}
		}
	}
	p, err := ReadProc(sleep)
	if err != nil || p.PPID != sh || p.PGRP != sh || p.SID != sh || !p.Alive() || p.Start == 0 {
		t.Errorf("ReadProc(sleep) = %+v, %v; want a live child of %d in its group and session", p, err, sh)
	}
	procs, err := Procs()
	if err != nil || !Below(procs, sleep, sh) || !Below(procs, sleep, os.Getpid()) || Below(procs, sh, sleep) {
		t.Errorf("Below in Procs() (%d processes, %v) does not place sleep %d under sh %d under this test", len(procs), err, sleep, sh)
	}
	if rss, err := PeakRSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("PeakRSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}

	if alive := WaitGone([]Proc{p}, 50*time.Millisecond); !slices.Equal(alive, []Proc{p}) {
		t.Errorf("WaitGone on a running process = %v, want it back", alive)
	}
	// The same PID with another start time is another process: the one asked about has ended.
	if alive := WaitGone([]Proc{{PID: sleep, Start: p.Start + 1}}, time.Second); len(alive) != 0 {
		t.Errorf("WaitGone treats a reused PID as the old process: %v", alive)
	}
	_ = syscall.Kill(-sh, syscall.SIGKILL)
	if alive := WaitGone([]Proc{p, {PID: sh}}, 5*time.Second); len(alive) != 0 {
		t.Errorf("still running 5s after SIGKILL: %v", alive)
	}
}
