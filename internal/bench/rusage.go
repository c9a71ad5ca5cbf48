package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// rusageFlag makes this program a small parent that runs the command after it and reports the command's
// wall time and wait4 ru_maxrss as JSON on file descriptor 3.
//
// Why not wait4 the action directly: Go starts children with vfork semantics (CLONE_VM), and at exec
// Linux folds the shared address space's high-water RSS, the parent's, into the child's ru_maxrss. A child
// of this benchmark would report the benchmark's own peak (over 100 MiB after the registry group) when
// smaller. Started from this fresh, small process instead, the action's figure carries at most this
// helper's few MiB.
const rusageFlag = "-rusage-of"

type usage struct {
	Wall   time.Duration
	MaxRSS int64 // bytes
	Err    string
}

// rusageMain is main for rusageFlag: args are the command and its arguments.
func rusageMain(args []string) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	u := usage{Wall: time.Since(start)}
	if err != nil {
		u.Err = err.Error()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSS = ru.Maxrss << 10
	}
	if err := json.NewEncoder(os.NewFile(3, "usage")).Encode(u); err != nil {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(2)
	}
}

// measured runs cmd under the rusage helper (this executable) and returns the command's usage.
func measured(cmd *exec.Cmd) (usage, []byte, error) {
	self, err := os.Executable()
	if err != nil {
		return usage{}, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return usage{}, nil, err
	}
	defer r.Close()
	cmd.Args = append([]string{self, rusageFlag, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = self
	cmd.ExtraFiles = []*os.File{w}
	var u usage
	done := make(chan error, 1)
	go func() { done <- json.NewDecoder(r).Decode(&u) }()
	out, err := cmd.CombinedOutput()
	w.Close()
	if derr := <-done; derr != nil && err == nil {
		err = fmt.Errorf("reading the command's usage: %w", derr)
	}
	if err == nil && u.Err != "" {
		err = fmt.Errorf("%s", u.Err)
	}
	return u, out, err
}
