package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/coordd/coordd/client"
)

const lockSynopsis = "lock NAME [-ttl 10s] [-wait D] [-limit N] [-lock-delay D] [-kill-timeout 5s] -- CMD [ARGS...]"

// cmdLock runs a command only while holding a lock, like `consul lock`:
// the command starts once the lock is held and is stopped (SIGTERM, then
// SIGKILL after -kill-timeout) as soon as the lock is lost. The command and
// its children run in their own process group, which is what gets the
// signals.
//
// Holding the lock in this process does not stop a paused command from
// acting after the lock is lost: pass COORDD_FENCING_TOKEN to the resource
// with every write (see package fencing).
func cmdLock(e *env, args []string) int {
	fs := e.newFlags(lockSynopsis)
	ttl := fs.Duration("ttl", 10*time.Second, "TTL of the session's lease")
	wait := fs.Duration("wait", 0, "how long to wait for the lock (0: forever); exit 4 when it runs out")
	limit := fs.Int("limit", 1, "a counting semaphore of this many holders")
	lockDelay := fs.Duration("lock-delay", 0, "keep the lock free this long after a holder fails")
	killTimeout := fs.Duration("kill-timeout", 5*time.Second, "after SIGTERM, how long the command has before SIGKILL")
	sep := slices.Index(args, "--")
	if sep < 0 {
		if slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
			fs.Usage()
			return exitOK
		}
		e.usagef("missing \"--\" before the command to run")
		fs.Usage()
		return exitUsage
	}
	pos, err := e.parseArgs(fs, args[:sep], 1, 1, "NAME")
	if err != nil {
		return parseDone(err)
	}
	name, argv := pos[0], args[sep+1:]
	switch {
	case len(argv) == 0:
		return e.usagef("no command after \"--\"")
	case *ttl <= 0:
		return e.usagef("-ttl %s must be positive", *ttl)
	case *wait < 0:
		return e.usagef("-wait %s must not be negative", *wait)
	case *limit < 1:
		return e.usagef("-limit %d must be at least 1", *limit)
	case *lockDelay < 0:
		return e.usagef("-lock-delay %s must not be negative", *lockDelay)
	case *killTimeout <= 0:
		return e.usagef("-kill-timeout %s must be positive", *killTimeout)
	}
	// Find the command before taking the lock: a typo must not cost a
	// hand-off.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return e.usagef("command %q: %v", argv[0], err)
	}

	c, err := e.newClient(e.ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	s, code := e.startSession(c, *ttl)
	if s == nil {
		return code
	}
	defer e.closeSession(s)
	m := client.NewMutex(s, name, client.LockOptions{Limit: *limit, LockDelay: *lockDelay})
	lctx, cancel := e.ctx, context.CancelFunc(func() {})
	if *wait > 0 {
		lctx, cancel = context.WithTimeout(e.ctx, *wait)
	}
	err = m.Lock(lctx)
	cancel()
	switch {
	case err == nil:
	case e.ctx.Err() != nil:
		return e.fail(err)
	case errors.Is(err, context.DeadlineExceeded) && lctx.Err() != nil:
		e.warnf("timed out after %s waiting for lock %q", *wait, name)
		return exitTimeout
	default:
		return e.fail(err)
	}
	token, held := m.Token(), m.Context()
	unlock := func() {
		lost := held.Err() != nil // Unlock ends held too
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := m.Unlock(ctx); err != nil && !lost {
			e.warnf("unlock %q: %v", name, err)
		}
	}

	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(os.Environ(),
		"COORDD_LOCK_NAME="+name,
		"COORDD_FENCING_TOKEN="+strconv.FormatUint(token, 10),
		"COORDD_LEASE="+strconv.FormatUint(s.Lease(), 10))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	// Output copied by a grandchild that outlives the command must not
	// keep us waiting.
	cmd.WaitDelay = time.Second
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		unlock()
		e.warnf("start %s: %v", argv[0], err)
		return exitFailed
	}
	e.warnf("holding %q with fencing token %d (lease %d); running %s (pid %d)", name, token, s.Lease(), argv[0], cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case err := <-exited:
		unlock()
		return childExitCode(e, argv[0], cmd, err)
	case <-held.Done():
		e.warnf("lock %q lost (%v): stopping %s", name, context.Cause(held), argv[0])
		stopChild(e, cmd, exited, *killTimeout)
		return exitLost
	case <-e.ctx.Done():
		e.warnf("interrupted: stopping %s", argv[0])
		stopChild(e, cmd, exited, *killTimeout)
		unlock()
		return exitInterrupted
	}
}

// stopChild sends SIGTERM to the command's process group, then SIGKILL if
// it has not exited after grace, and waits for it.
func stopChild(e *env, cmd *exec.Cmd, exited <-chan error, grace time.Duration) {
	if err := signalGroup(cmd, syscall.SIGTERM); err != nil {
		e.warnf("SIGTERM: %v", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
		return
	case <-t.C:
	}
	e.warnf("still running after %s: SIGKILL", grace)
	if err := signalGroup(cmd, syscall.SIGKILL); err != nil {
		e.warnf("SIGKILL: %v", err)
	}
	<-exited
}

// childExitCode passes on the command's exit code (128+N when signal N
// killed it, as shells do).
func childExitCode(e *env, name string, cmd *exec.Cmd, err error) int {
	st := cmd.ProcessState
	if st == nil {
		e.warnf("wait for %s: %v", name, err)
		return exitFailed
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && st.ExitCode() == 0 {
		// Exited 0, but its output could not be copied in time.
		e.warnf("%s: %v", name, err)
	}
	return st.ExitCode()
}

func cmdCheck(e *env, args []string) int {
	fs := e.newFlags("check NAME TOKEN")
	pos, err := e.parseArgs(fs, args, 2, 2, "NAME TOKEN")
	if err != nil {
		return parseDone(err)
	}
	token, ok := e.parseID("TOKEN", pos[1])
	if !ok {
		return exitUsage
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		res, err := c.CheckToken(ctx, pos[0], token)
		if err != nil {
			return e.fail(err)
		}
		e.show(res, []string{"NAME", "TOKEN", "CURRENT", "HOLDER_TOKEN"}, func() [][]string {
			return [][]string{{pos[0], u64(token), strconv.FormatBool(res.Current), u64(res.Token)}}
		})
		if !res.Current {
			return exitFailed
		}
		return exitOK
	})
}
