package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// proc is a child process coordbench started: a coordd node or a holder
// child. It runs in its own process group, is SIGKILLed if coordbench dies
// (Pdeathsig), and is registered with the reaper so that Ctrl-C and every
// exit path kill it.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process was reaped
}

// startProc starts cmd (whose Stdout/Stderr the caller set) under those
// rules. closeAfter is closed once the process exits (a log file).
func startProc(cmd *exec.Cmd, closeAfter io.Closer) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		if closeAfter != nil {
			closeAfter.Close()
		}
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	theReaper.add(p)
	go func() {
		_ = cmd.Wait()
		if closeAfter != nil {
			closeAfter.Close()
		}
		theReaper.remove(p)
		close(p.exited)
	}()
	return p, nil
}

// pid is the process id (and process group id).
func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process group and waits until the process is reaped.
func (p *proc) kill() {
	if p == nil || !p.running() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.exited
}

// reaper knows every process and temporary directory coordbench made, so
// that they are removed on any exit, Ctrl-C included.
type reaper struct {
	mu    sync.Mutex
	procs map[*proc]struct{}
	dirs  []string
}

var theReaper = &reaper{procs: map[*proc]struct{}{}}

func (r *reaper) add(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs[p] = struct{}{}
}

func (r *reaper) remove(p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.procs, p)
}

// tempDir makes a temporary directory removed by cleanup.
func (r *reaper) tempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", fmt.Errorf("make temp dir: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append(r.dirs, d)
	return d, nil
}

// removeDir removes a directory made by tempDir now.
func (r *reaper) removeDir(d string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.dirs {
		if x == d {
			r.dirs = append(r.dirs[:i], r.dirs[i+1:]...)
			break
		}
	}
	_ = os.RemoveAll(d)
}

// cleanup kills every live child process group, waits for each, and
// removes every temporary directory. Safe to call more than once.
func (r *reaper) cleanup() {
	r.mu.Lock()
	procs := make([]*proc, 0, len(r.procs))
	for p := range r.procs {
		procs = append(procs, p)
	}
	dirs := r.dirs
	r.dirs = nil
	r.mu.Unlock()
	for _, p := range procs {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	for _, p := range procs {
		<-p.exited
	}
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
