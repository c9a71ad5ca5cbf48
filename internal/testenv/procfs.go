package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Proc is a process as /proc/PID/stat shows it, for tests that check which processes a program starts
// and that none outlives it.
type Proc struct {
	PID   int
	State byte // R, S, D, T, Z (zombie), X (dead), ...
	PPID  int
	PGRP  int // process group
	SID   int // session
	// Start is when the process started, in clock ticks after boot: with the PID it names one process,
	// also after the PID has been reused.
	Start uint64
}

// Alive reports whether the process still runs; a zombie has ended and only waits to be reaped.
func (p Proc) Alive() bool { return p.State != 'Z' && p.State != 'X' }

// ReadProc reads a process's /proc/PID/stat; the error wraps fs.ErrNotExist when there is no such process.
func ReadProc(pid int) (Proc, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, err
	}
	return parseStat(pid, stat)
}

// parseStat reads the fields of a /proc/PID/stat line that Proc holds. The command name, in parentheses,
// may hold spaces and parentheses itself, so the fields are counted from its last closing parenthesis:
// state (field 3), ppid, pgrp, session, ..., starttime (field 22).
func parseStat(pid int, stat []byte) (Proc, error) {
	i := bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(fields) < 20 || len(fields[0]) != 1 {
		return Proc{}, fmt.Errorf("/proc/%d/stat: not a stat line: %q", pid, stat)
	}
	p := Proc{PID: pid, State: fields[0][0]}
	var errs [4]error
	p.PPID, errs[0] = strconv.Atoi(fields[1])
	p.PGRP, errs[1] = strconv.Atoi(fields[2])
	p.SID, errs[2] = strconv.Atoi(fields[3])
	p.Start, errs[3] = strconv.ParseUint(fields[19], 10, 64)
	for _, err := range errs {
		if err != nil {
			return Proc{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return p, nil
}

// Procs reads every process in /proc, by PID. Processes that end while it reads are left out.
func Procs() (map[int]Proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := map[int]Proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := ReadProc(pid); err == nil {
			out[pid] = p
		}
	}
	return out, nil
}

// Below reports whether the process pid is a descendant of ancestor in procs (a Procs snapshot).
func Below(procs map[int]Proc, pid, ancestor int) bool {
	// The bound guards against a cycle, which a snapshot taken while PIDs are reused could show.
	for p, i := procs[pid].PPID, 0; p > 1 && i < len(procs); p, i = procs[p].PPID, i+1 {
		if p == ancestor {
			return true
		}
	}
	return false
}

// Descendants lists the processes below pid, children, their children, and so on.
func Descendants(pid int) []int {
	procs, _ := Procs()
	var out []int
	for child := range procs {
		if Below(procs, child, pid) {
			out = append(out, child)
		}
	}
	return out
}

// Cmdline returns a process's command line with its arguments separated by spaces, "" once it has gone.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// PeakRSS returns a process's peak resident set size (VmHWM in /proc/PID/status) in bytes.
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q: %w", pid, strings.TrimSpace(v), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM line", pid)
}

// WaitGone waits up to timeout for every process in procs to end, and returns those still running then.
// A process counts as ended when its PID is gone, is a zombie, or (where Start is set) now belongs to a
// process that started at another time.
func WaitGone(procs []Proc, timeout time.Duration) []Proc {
	deadline := time.Now().Add(timeout)
	for {
		var alive []Proc
		for _, want := range procs {
			p, err := ReadProc(want.PID)
			if err == nil && p.Alive() && (want.Start == 0 || p.Start == want.Start) {
				alive = append(alive, want)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond)
	}
}
