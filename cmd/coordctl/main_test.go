//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
)

// syncBuffer collects output written from several goroutines (run and a
// child's output copier).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one run of coordctl.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// fixture is a cluster shared by the subtests of TestCoordctl.
type fixture struct {
	cl  *testcluster.Cluster
	eps string
	c   *client.Client
}

// ctl runs coordctl against the cluster and waits for it.
func (f *fixture) ctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := run(context.Background(), append([]string{"-endpoints", f.eps}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// bg runs coordctl in a goroutine until ctx ends; wait returns its result.
type bg struct {
	cancel      context.CancelFunc
	out, errb   *syncBuffer
	done        chan int
	codeOnce    sync.Once
	code        int
	description string
}

func (f *fixture) start(t *testing.T, args ...string) *bg {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &bg{cancel: cancel, out: &syncBuffer{}, errb: &syncBuffer{}, done: make(chan int, 1), description: strings.Join(args, " ")}
	go func() {
		b.done <- run(ctx, append([]string{"-endpoints", f.eps}, args...), strings.NewReader(""), b.out, b.errb)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			t.Errorf("coordctl %s did not stop", b.description)
		}
	})
	return b
}

// wait returns the exit code once run returns, failing after d.
func (b *bg) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	b.codeOnce.Do(func() {
		select {
		case b.code = <-b.done:
		case <-time.After(d):
			t.Fatalf("coordctl %s still running after %s\nstdout:\n%s\nstderr:\n%s", b.description, d, b.out, b.errb)
		}
		b.done <- b.code // for the cleanup
	})
	return b.code
}

// waitFor polls until the output of b contains s.
func (b *bg) waitFor(t *testing.T, s string) {
	t.Helper()
	testcluster.Poll(t, 15*time.Second, func() error {
		if strings.Contains(b.out.String(), s) {
			return nil
		}
		select {
		case code := <-b.done:
			b.done <- code
			return fmt.Errorf("exited %d before printing %q\nstdout:\n%s\nstderr:\n%s", code, s, b.out, b.errb)
		default:
		}
		return fmt.Errorf("no %q yet in\nstdout:\n%s\nstderr:\n%s", s, b.out, b.errb)
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("decode %q: %v\n%s", r.stdout, err, r)
	}
	return v
}

func expect(t *testing.T, r result, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
		t.Fatalf("want exit %d, stdout containing %q, stderr containing %q; got %s", code, stdout, stderr, r)
	}
}

// newFixture starts a 3-node cluster and a client of it.
func newFixture(t *testing.T) *fixture {
	cl := testcluster.New(t, 3)
	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c, err := client.New(context.Background(), client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fixture{cl: cl, eps: strings.Join(eps, ","), c: c}
}

// TestCoordctl shares one 3-node cluster between its subtests.
func TestCoordctl(t *testing.T) {
	f := newFixture(t)
	t.Run("Usage", f.testUsage)
	t.Run("GlobalFlagsAnywhereHelpOnStdout", f.testGlobalFlagsAnywhere)
	t.Run("KV", f.testKV)
	t.Run("KVWatch", f.testKVWatch)
	t.Run("Lease", f.testLease)
	t.Run("LeaseKeepaliveUntilInterrupted", f.testLeaseKeepalive)
	t.Run("StatusAndMembers", f.testStatusAndMembers)
	t.Run("Check", f.testCheck)
	t.Run("CheckConsistencyAndAlarms", f.testIntegrity)
	t.Run("SnapshotSave", f.testSnapshotSave)
	t.Run("LockRunsTheCommandWithItsToken", f.testLockRunsChild)
	t.Run("LockLost", f.testLockLost)
	t.Run("LockWaitTimesOut", f.testLockWaitTimesOut)
	t.Run("LockInterrupted", f.testLockInterrupted)
	t.Run("ElectAndObserve", f.testElectAndObserve)
	t.Run("ElectLost", f.testElectLost)
	t.Run("TxnAndFencedKV", f.testTxn)
}

func (f *fixture) testUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		msg  string
	}{
		{nil, "usage: coordctl"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"kv"}, "kv needs a subcommand"},
		{[]string{"kv", "fetch"}, `unknown subcommand "fetch" of kv`},
		{[]string{"kv", "get"}, "missing arguments: expected KEY"},
		{[]string{"kv", "get", "a", "b"}, `unexpected arguments ["b"]`},
		{[]string{"kv", "get", "a", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"kv", "put", "k", "v", "-cas", "1", "-create"}, "-cas and -create cannot be combined"},
		{[]string{"kv", "put", "k", "v", "-cas", "x"}, `invalid value "x" for flag -cas`},
		{[]string{"kv", "del", "k", "-cas", "1", "-prefix"}, "-cas and -prefix cannot be combined"},
		{[]string{"lease", "grant", "soon"}, `TTL "soon" is not a duration`},
		{[]string{"lease", "revoke", "0"}, `lease ID "0" must be a positive integer`},
		{[]string{"check", "name", "abc"}, `TOKEN "abc" must be a positive integer`},
		{[]string{"lock", "name", "true"}, `missing "--" before the command`},
		{[]string{"lock", "name", "--"}, `no command after "--"`},
		{[]string{"lock", "name", "--", "/no/such/command"}, `command "/no/such/command"`},
		{[]string{"lock", "-limit", "0", "name", "--", "true"}, "-limit 0 must be at least 1"},
		{[]string{"snapshot", "save"}, "FILE"},
		{[]string{"snapshot", "restore"}, "FILE"},
		{[]string{"snapshot", "restore", "/no/such/file.snap"}, "cannot read /no/such/file.snap"},
		{[]string{"snapshot", "restore", "-bump", "x", "f"}, "invalid value"},
		{[]string{"snapshot", "save", "/no/such/dir/backup.snap"}, "cannot write /no/such/dir/backup.snap.tmp"},
		{[]string{"-o", "yaml", "status"}, `-o "yaml": the output format must be table or json`},
		// The server refuses a TTL under its floor: bad input too.
		{[]string{"lease", "grant", "1ms"}, "refused by the server"},
		{[]string{"-endpoints", "ftp://x", "kv", "get", "k"}, "must be host:port"},
	}
	for _, tc := range cases {
		r := f.ctl(t, "", tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("coordctl %q: want exit 2 and %q on stderr, got %s", tc.args, tc.msg, r)
		}
	}
	r := f.ctl(t, "", "help")
	expect(t, r, exitOK, "Exit codes:", "")
	for _, code := range []string{"0 ", "1 ", "2 ", "3 ", "4 ", "130 "} {
		if !strings.Contains(r.stdout, "\n  "+code) {
			t.Errorf("usage does not document exit code %s", code)
		}
	}
	expect(t, f.ctl(t, "", "kv", "get", "-h"), exitOK, "usage: coordctl kv get KEY", "")
}

func (f *fixture) testKV(t *testing.T) {
	t.Parallel()
	r := f.ctl(t, "", "kv", "put", "cfg/color", "blue")
	expect(t, r, exitOK, "cfg/color", "")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY ") {
		t.Fatalf("put table: %s", r)
	}

	r = f.ctl(t, "", "-o", "json", "kv", "get", "cfg/color")
	kv := decode[client.KV](t, r)
	if kv.Key != "cfg/color" || string(kv.Value) != "blue" || kv.ModifyIndex == 0 || kv.Version != 1 {
		t.Fatalf("get json: %s", r)
	}
	r = f.ctl(t, "", "kv", "get", "cfg/color")
	expect(t, r, exitOK, "blue", "")
	if !strings.Contains(r.stdout, "VALUE") || !strings.Contains(r.stdout, u64(kv.ModifyIndex)) {
		t.Fatalf("get table: %s", r)
	}
	// Flags may come after the key. A stale read may be served by a
	// follower that has not applied the put yet.
	testcluster.Poll(t, 5*time.Second, func() error {
		if r := f.ctl(t, "", "kv", "get", "cfg/color", "-raw", "-stale"); r.code != 0 || r.stdout != "blue" {
			return fmt.Errorf("stale get: %s", r)
		}
		return nil
	})
	if r := f.ctl(t, "", "kv", "get", "cfg/color", "-raw"); r.stdout != "blue" {
		t.Fatalf("raw: %s", r)
	}

	// Compare-and-swap: a stale index is exit 1 with the current index.
	r = f.ctl(t, "", "kv", "put", "cfg/color", "red", "-cas", u64(kv.ModifyIndex-1))
	expect(t, r, exitFailed, "", fmt.Sprintf("compare-and-swap failed: the key's modify index is %d", kv.ModifyIndex))
	expect(t, f.ctl(t, "", "kv", "put", "cfg/color", "x", "-create"), exitFailed, "", "compare-and-swap failed")
	r = f.ctl(t, "", "-o", "json", "kv", "put", "cfg/color", "red", "-cas", u64(kv.ModifyIndex))
	if w := decode[client.WriteResult](t, r); r.code != 0 || w.Version != 2 {
		t.Fatalf("cas put: %s", r)
	}

	// VALUE "-" reads stdin, bytes exactly.
	expect(t, f.ctl(t, "two\nlines\t", "kv", "put", "cfg/motd", "-"), exitOK, "", "")
	if r := f.ctl(t, "", "kv", "get", "cfg/motd", "-raw"); r.stdout != "two\nlines\t" {
		t.Fatalf("stdin value: %s", r)
	}
	// In a table a value that would break the line is quoted.
	expect(t, f.ctl(t, "", "kv", "get", "cfg/motd"), exitOK, `"two\nlines\t"`, "")

	r = f.ctl(t, "", "kv", "ls", "cfg/")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 0 || len(lines) != 3 ||
		!strings.HasPrefix(lines[1], "cfg/color") || !strings.HasPrefix(lines[2], "cfg/motd") {
		t.Fatalf("ls table: %s", r)
	}
	// Columns are aligned: VALUE starts at the same offset on every line.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if col := strings.Index(lines[0], "VALUE"); strings.Index(lines[1], "red") != col {
		t.Fatalf("ls columns not aligned:\n%s", r.stdout)
	}
	r = f.ctl(t, "", "-o", "json", "kv", "ls", "cfg/")
	if kvs := decode[[]client.KV](t, r); len(kvs) != 2 || string(kvs[0].Value) != "red" {
		t.Fatalf("ls json: %s", r)
	}
	r = f.ctl(t, "", "-o", "json", "kv", "ls", "nothing-here/")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("empty ls json: %s", r)
	}

	// Delete, then the key is gone: exit 1.
	r = f.ctl(t, "", "-o", "json", "kv", "del", "cfg/motd")
	if d := decode[client.DeleteResult](t, r); d.Deleted != 1 {
		t.Fatalf("del: %s", r)
	}
	expect(t, f.ctl(t, "", "kv", "get", "cfg/motd"), exitFailed, "", "key not found")
	expect(t, f.ctl(t, "", "kv", "del", "cfg/motd"), exitFailed, "", "key not found")
	expect(t, f.ctl(t, "", "kv", "del", "cfg/color", "-cas", "1"), exitFailed, "", "compare-and-swap failed")
	expect(t, f.ctl(t, "", "kv", "put", "cfg/a", "1"), exitOK, "", "")
	r = f.ctl(t, "", "-o", "json", "kv", "del", "cfg/", "-prefix")
	if d := decode[client.DeleteResult](t, r); d.Deleted != 2 {
		t.Fatalf("del prefix: %s", r)
	}

	// A key attached to a lease.
	r = f.ctl(t, "", "-o", "json", "lease", "grant", "10s")
	l := decode[client.Lease](t, r)
	expect(t, f.ctl(t, "", "kv", "put", "eph", "x", "-lease", u64(l.ID)), exitOK, "", "")
	expect(t, f.ctl(t, "", "lease", "revoke", u64(l.ID)), exitOK, "", "")
	expect(t, f.ctl(t, "", "kv", "get", "eph"), exitFailed, "", "key not found")
	expect(t, f.ctl(t, "", "kv", "put", "eph", "x", "-lease", u64(l.ID)), exitFailed, "", "lease not found")

	// A dead endpoint among live ones is skipped.
	expect(t, f.ctl(t, "", "kv", "put", "live", "yes"), exitOK, "", "")
	var out0, errb0 syncBuffer
	code0 := run(context.Background(), []string{"-endpoints", "127.0.0.1:1," + f.eps, "kv", "get", "live", "-raw"}, nil, &out0, &errb0)
	if code0 != exitOK || out0.String() != "yes" {
		t.Fatalf("with a dead endpoint first: exit %d %q %s", code0, out0.String(), errb0.String())
	}

	// No node answers: exit 1, "cluster unavailable".
	var out, errb syncBuffer
	code := run(context.Background(), []string{"-endpoints", "127.0.0.1:1", "-timeout", "1s", "kv", "get", "k"}, nil, &out, &errb)
	if code != exitFailed || !strings.Contains(errb.String(), "cluster unavailable") {
		t.Fatalf("unreachable: exit %d, %s", code, errb.String())
	}
}

func (f *fixture) testKVWatch(t *testing.T) {
	t.Parallel()
	w := f.start(t, "kv", "watch", "watched")
	w.waitFor(t, "watched: absent")
	expect(t, f.ctl(t, "", "kv", "put", "watched", "one"), exitOK, "", "")
	w.waitFor(t, "watched = one")
	expect(t, f.ctl(t, "", "kv", "put", "watched", "two"), exitOK, "", "")
	w.waitFor(t, "watched = two (modify")
	expect(t, f.ctl(t, "", "kv", "del", "watched"), exitOK, "", "")
	testcluster.Poll(t, 10*time.Second, func() error {
		if strings.Count(w.out.String(), "absent") < 2 {
			return fmt.Errorf("no deletion yet: %s", w.out)
		}
		return nil
	})
	w.cancel()
	if code := w.wait(t, 5*time.Second); code != exitInterrupted {
		t.Fatalf("watch exit %d", code)
	}
}

func (f *fixture) testLease(t *testing.T) {
	t.Parallel()
	r := f.ctl(t, "", "-o", "json", "lease", "grant", "10s")
	l := decode[client.Lease](t, r)
	if l.ID == 0 || l.TTLMs != 10000 {
		t.Fatalf("grant: %s", r)
	}
	id := u64(l.ID)
	r = f.ctl(t, "", "lease", "grant", "5")
	expect(t, r, exitOK, "5s", "")
	r = f.ctl(t, "", "lease", "ls")
	expect(t, r, exitOK, "REMAINING", "")
	if !strings.Contains(r.stdout, "\n"+id+" ") {
		t.Fatalf("ls lacks %s: %s", id, r)
	}
	expect(t, f.ctl(t, "", "kv", "put", "leased/k", "v", "-lease", id), exitOK, "", "")
	expect(t, f.ctl(t, "", "lease", "get", id), exitOK, "key:leased/k", "")
	r = f.ctl(t, "", "-o", "json", "lease", "keepalive", id, "-once")
	if k := decode[client.Lease](t, r); k.ID != l.ID || k.RemainingMs <= 0 {
		t.Fatalf("keepalive -once: %s", r)
	}
	expect(t, f.ctl(t, "", "lease", "revoke", id), exitOK, "true", "")
	expect(t, f.ctl(t, "", "lease", "revoke", id), exitFailed, "", "lease not found")
	expect(t, f.ctl(t, "", "lease", "get", id), exitFailed, "", "lease not found")
	expect(t, f.ctl(t, "", "lease", "keepalive", id, "-once"), exitFailed, "", "lease not found")
	expect(t, f.ctl(t, "", "lease", "keepalive", id), exitFailed, "", "lease not found")
}

func (f *fixture) testLeaseKeepalive(t *testing.T) {
	t.Parallel()
	l, err := f.c.Grant(ctxT(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k := f.start(t, "lease", "keepalive", u64(l.ID))
	// Three times the TTL: alive only because of the keepalives.
	time.Sleep(3 * time.Second)
	if got, err := f.c.TimeToLive(ctxT(t), l.ID); err != nil || got.Remaining() <= 0 {
		t.Fatalf("lease not kept alive: %+v %v\n%s", got, err, k.errb)
	}
	if n := strings.Count(k.out.String(), "kept alive"); n < 5 {
		t.Fatalf("only %d keepalives printed:\n%s", n, k.out)
	}
	// Revoked under it: lost, exit 3.
	if err := f.c.Revoke(ctxT(t), l.ID); err != nil {
		t.Fatal(err)
	}
	if code := k.wait(t, 5*time.Second); code != exitLost || !strings.Contains(k.errb.String(), "lost") {
		t.Fatalf("keepalive of a revoked lease: exit %d\n%s", code, k.errb)
	}
	// Interrupted: 130.
	l2, err := f.c.Grant(ctxT(t), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k2 := f.start(t, "lease", "keepalive", u64(l2.ID))
	k2.waitFor(t, "kept alive")
	k2.cancel()
	if code := k2.wait(t, 5*time.Second); code != exitInterrupted {
		t.Fatalf("interrupted keepalive: exit %d", code)
	}
}

func (f *fixture) testGlobalFlagsAnywhere(t *testing.T) {
	t.Parallel()
	expect(t, f.ctl(t, "", "kv", "put", "gf/k", "v"), exitOK, "", "")
	// Global flags after the command, and after its arguments.
	sts := decode[[]endpointStatus](t, f.ctl(t, "", "status", "-o", "json"))
	if len(sts) != 3 {
		t.Fatalf("status -o json: %+v", sts)
	}
	for _, args := range [][]string{
		{"kv", "get", "gf/k", "-raw", "-endpoints", f.eps},
		{"kv", "-endpoints=" + f.eps, "get", "-timeout", "10s", "gf/k", "-raw"},
		{"-timeout", "10s", "kv", "get", "gf/k", "-endpoints", f.eps, "-raw"},
	} {
		var out, errb syncBuffer
		if code := run(context.Background(), args, nil, &out, &errb); code != exitOK || out.String() != "v" {
			t.Errorf("coordctl %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	kv := decode[client.KV](t, f.ctl(t, "", "kv", "get", "gf/k", "-o=json"))
	if string(kv.Value) != "v" {
		t.Fatalf("kv get -o=json: %+v", kv)
	}
	// After "--" every argument is the command's.
	expect(t, f.ctl(t, "", "lock", "gf/lock", "--", "echo", "-o", "json", "-timeout"), exitOK, "-o json -timeout", "")

	// Help goes to stdout, and is not an error.
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"kv", "get", "-h"}, {"kv", "--help"}, {"status", "-help"}} {
		var out, errb syncBuffer
		code := run(context.Background(), args, nil, &out, &errb)
		if code != exitOK || !strings.Contains(out.String(), "usage:") || !strings.Contains(out.String(), "coordctl ") || errb.String() != "" {
			t.Errorf("coordctl %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	// An unknown flag: one line, and where to look.
	for _, args := range [][]string{{"-nope", "status"}, {"status", "-nope"}, {"kv", "get", "k", "-nope"}, {"lease", "grant", "-nope", "10s"}} {
		r := f.ctl(t, "", args...)
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if r.code != exitUsage || len(lines) != 2 || !strings.Contains(lines[0], "flag provided but not defined: -nope") || lines[1] != "see coordctl help" || r.stdout != "" {
			t.Errorf("coordctl %q: want exit 2 and two lines on stderr, got %s", args, r)
		}
	}
	// version, like coordd version.
	for _, args := range [][]string{{"version"}, {"-version"}} {
		var out, errb syncBuffer
		if code := run(context.Background(), args, nil, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "coordctl ") ||
			!strings.Contains(out.String(), runtime.Version()) {
			t.Errorf("coordctl %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

// TestMembersTransfer_NamesTheNewLeader: the old leader answers as soon as
// it has handed over, often before it has heard from the new leader, and
// the LEADER column was then empty.
func TestMembersTransfer_NamesTheNewLeader(t *testing.T) {
	cl := testcluster.New(t, 3)
	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	ids := map[string]bool{"n1": true, "n2": true, "n3": true}
	for i := range 5 {
		before := cl.Leader().ID
		var out, errb syncBuffer
		code := run(context.Background(), []string{"-endpoints", strings.Join(eps, ","), "-o", "json", "members", "transfer"}, nil, &out, &errb)
		var res struct{ Leader string }
		if err := json.Unmarshal([]byte(out.String()), &res); code != exitOK || err != nil {
			t.Fatalf("transfer %d: exit %d, %v, stdout %q, stderr %q", i, code, err, out.String(), errb.String())
		}
		if !ids[res.Leader] || res.Leader == before {
			t.Fatalf("transfer %d away from %s: LEADER %q", i, before, res.Leader)
		}
		cl.WaitReady(cl.Nodes...)
	}
}

func (f *fixture) testStatusAndMembers(t *testing.T) {
	t.Parallel()
	r := f.ctl(t, "", "status")
	expect(t, r, exitOK, "ENDPOINT", "")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 4 || strings.Count(r.stdout, " Leader ") != 1 {
		t.Fatalf("status: %s", r)
	}
	r = f.ctl(t, "", "-o", "json", "status")
	sts := decode[[]endpointStatus](t, r)
	if len(sts) != 3 || sts[0].Status == nil || sts[0].Status.Leader == nil {
		t.Fatalf("status json: %s", r)
	}
	// A dead endpoint is shown, and the exit code says so.
	var out, errb syncBuffer
	code := run(context.Background(), []string{"-endpoints", f.cl.Nodes[0].HTTPAddr + ",127.0.0.1:1", "status"}, nil, &out, &errb)
	if code != exitFailed || !strings.Contains(out.String(), "127.0.0.1:1") || !strings.Contains(errb.String(), "1 of 2 endpoints") {
		t.Fatalf("status with a dead endpoint: exit %d\n%s\n%s", code, out.String(), errb.String())
	}

	r = f.ctl(t, "", "members", "list")
	expect(t, r, exitOK, "RAFT_ADDR", "")
	for _, n := range f.cl.Nodes {
		if !strings.Contains(r.stdout, n.RaftAddr) || !strings.Contains(r.stdout, n.HTTPAddr) {
			t.Fatalf("members list lacks %s: %s", n.ID, r)
		}
	}
	ms := decode[[]client.Member](t, f.ctl(t, "", "-o", "json", "members", "list"))
	if len(ms) != 3 {
		t.Fatalf("members json: %+v", ms)
	}
	expect(t, f.ctl(t, "", "members", "remove", "n9"), exitFailed, "", "refused by the server")
}

func (f *fixture) testSnapshotSave(t *testing.T) {
	t.Parallel()
	expect(t, f.ctl(t, "", "kv", "put", "snap/k", "v"), exitOK, "", "")
	path := filepath.Join(t.TempDir(), "backup.snap")
	r := f.ctl(t, "", "-o", "json", "snapshot", "save", path)
	expect(t, r, exitOK, `"file"`, "")
	if err := verifySnapshot(path); err != nil {
		t.Fatalf("saved snapshot: %v", err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	// A corrupted copy fails verification.
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.snap")
	os.WriteFile(bad, b, 0o600)
	if err := verifySnapshot(bad); err == nil {
		t.Fatal("a corrupted snapshot passed verification")
	}
}

func (f *fixture) testCheck(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s, err := client.NewSession(ctx, f.c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	m := client.NewMutex(s, "check-me", client.LockOptions{})
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tok := u64(m.Token())
	expect(t, f.ctl(t, "", "check", "check-me", tok), exitOK, "true", "")
	r := f.ctl(t, "", "-o", "json", "check", "check-me", tok)
	if fc := decode[client.FencingCheck](t, r); !fc.Current || fc.Token != m.Token() {
		t.Fatalf("check json: %s", r)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, f.ctl(t, "", "check", "check-me", tok), exitFailed, "false", "")
}

// readEnv waits for the file the child writes its environment to and
// returns the COORDD_ variables in it.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	testcluster.Poll(t, 15*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), "\nEND\n") {
			return fmt.Errorf("child has not written %s yet", path)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "COORDD_") {
				vars[k] = v
			}
		}
		return nil
	})
	return vars
}

const writeEnv = `env > "$1.tmp"; echo "pid=$$" >> "$1.tmp"; printf '\nEND\n' >> "$1.tmp"; mv "$1.tmp" "$1"`

func (f *fixture) testLockRunsChild(t *testing.T) {
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), "env")
	r := f.ctl(t, "", "lock", "job", "-ttl", "5s", "--", "sh", "-c", writeEnv+`; echo child says hi; exit 7`, "sh", envFile)
	// The child's exit code is passed on, its output goes through.
	expect(t, r, 7, "child says hi", "holding \"job\" with fencing token")
	vars := readEnv(t, envFile)
	tok, err := strconv.ParseUint(vars["COORDD_FENCING_TOKEN"], 10, 64)
	if vars["COORDD_LOCK_NAME"] != "job" || err != nil || tok == 0 || vars["COORDD_LEASE"] == "" {
		t.Fatalf("child environment: %v", vars)
	}
	// Unlocked after the child exited, and the session's lease is revoked.
	if fc, err := f.c.CheckToken(ctxT(t), "job", tok); err != nil || fc.Current {
		t.Fatalf("token still current after the child exited: %+v %v", fc, err)
	}
	lease, _ := strconv.ParseUint(vars["COORDD_LEASE"], 10, 64)
	if _, err := f.c.TimeToLive(ctxT(t), lease); err == nil {
		t.Fatalf("session lease %d still exists", lease)
	}
	expect(t, f.ctl(t, "", "lock", "job", "--", "true"), exitOK, "", "")
	// Killed by a signal: 128+N, as shells report it.
	expect(t, f.ctl(t, "", "lock", "job", "--", "sh", "-c", "kill -TERM $$"), 128+int(syscall.SIGTERM), "", "")
}

// The lock is lost while the command runs: the command is killed and lock
// exits 3 promptly.
func (f *fixture) testLockLost(t *testing.T) {
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), "env")
	l := f.start(t, "lock", "lost-lock", "-ttl", "1s", "--", "sh", "-c", writeEnv+`; exec sleep 60`, "sh", envFile)
	vars := readEnv(t, envFile)
	b, _ := os.ReadFile(envFile)
	_, after, _ := strings.Cut(string(b), "pid=")
	pid, err := strconv.Atoi(strings.TrimSpace(strings.Split(after, "\n")[0]))
	if err != nil {
		t.Fatalf("child pid: %q", after)
	}
	lease, err := strconv.ParseUint(vars["COORDD_LEASE"], 10, 64)
	if err != nil {
		t.Fatalf("lease: %v", vars)
	}
	// Past the TTL: the session keeps the lease alive, the child still runs.
	time.Sleep(1500 * time.Millisecond)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("child %d not running while the lock is held: %v\n%s", pid, err, l.errb)
	}
	revoked := time.Now()
	if err := f.c.Revoke(ctxT(t), lease); err != nil {
		t.Fatal(err)
	}
	if code := l.wait(t, 5*time.Second); code != exitLost {
		t.Fatalf("lock after losing the lock: exit %d\n%s", code, l.errb)
	}
	if took := time.Since(revoked); took > 3*time.Second {
		t.Fatalf("took %s to stop after the lock was lost", took)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("child %d still runs after the lock was lost", pid)
	}
	if !strings.Contains(l.errb.String(), `lock "lost-lock" lost`) {
		t.Fatalf("no lost message:\n%s", l.errb)
	}
}

func (f *fixture) testLockWaitTimesOut(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s, err := client.NewSession(ctx, f.c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	m := client.NewMutex(s, "busy", client.LockOptions{})
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := f.ctl(t, "", "lock", "busy", "-wait", "500ms", "--", "sh", "-c", "echo must not run")
	expect(t, r, exitTimeout, "", "timed out after 500ms")
	if strings.Contains(r.stdout, "must not run") || time.Since(start) > 5*time.Second {
		t.Fatalf("wait: %s after %s", r, time.Since(start))
	}
	// The holder still holds; the waiter left the queue.
	if fc, err := f.c.CheckToken(ctx, "busy", m.Token()); err != nil || !fc.Current {
		t.Fatalf("holder lost the lock: %+v %v", fc, err)
	}
	if st, err := f.c.Elections(ctx, "locks"); err != nil {
		t.Fatal(err)
	} else {
		for _, e := range st {
			if e.Name == "busy" && len(e.Candidates) != 0 {
				t.Fatalf("the waiter is still queued: %+v", e.Candidates)
			}
		}
	}
}

func (f *fixture) testLockInterrupted(t *testing.T) {
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), "env")
	l := f.start(t, "lock", "interrupted", "--", "sh", "-c", writeEnv+`; exec sleep 60`, "sh", envFile)
	vars := readEnv(t, envFile)
	tok, _ := strconv.ParseUint(vars["COORDD_FENCING_TOKEN"], 10, 64)
	l.cancel()
	if code := l.wait(t, 8*time.Second); code != exitInterrupted {
		t.Fatalf("interrupted lock: exit %d\n%s", code, l.errb)
	}
	if fc, err := f.c.CheckToken(ctxT(t), "interrupted", tok); err != nil || fc.Current {
		t.Fatalf("still locked after the interruption: %+v %v", fc, err)
	}
}

func (f *fixture) testElectAndObserve(t *testing.T) {
	t.Parallel()
	obs := f.start(t, "-o", "json", "observe", "db-primary")
	obs.waitFor(t, `"leader":null`)

	e1 := f.start(t, "elect", "db-primary", "10.0.0.7:5432", "-ttl", "2s")
	e1.waitFor(t, `leading "db-primary": token`)
	obs.waitFor(t, `"value":"10.0.0.7:5432"`)
	// A second candidate waits behind the first.
	e2 := f.start(t, "-o", "json", "elect", "db-primary", "10.0.0.8:5432", "-ttl", "2s")
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(e2.out.String(), "leading") {
		t.Fatalf("two leaders:\n%s\n%s", e1.out, e2.out)
	}
	// Interrupting the leader resigns: the second leads at once.
	e1.cancel()
	if code := e1.wait(t, 5*time.Second); code != exitInterrupted || !strings.Contains(e1.out.String(), "resigned") {
		t.Fatalf("elect after interrupt: exit %d\n%s\n%s", code, e1.out, e1.errb)
	}
	e2.waitFor(t, `"event":"leading"`)
	obs.waitFor(t, `"value":"10.0.0.8:5432"`)
	if st, err := f.c.Election(ctxT(t), "db-primary"); err != nil || st.Leader == nil || st.Leader.Value != "10.0.0.8:5432" {
		t.Fatalf("leader after hand-off: %+v %v", st, err)
	}
	e2.cancel()
	if code := e2.wait(t, 5*time.Second); code != exitInterrupted {
		t.Fatalf("second elect: exit %d", code)
	}
	// No leader is reported as such.
	testcluster.Poll(t, 10*time.Second, func() error {
		if strings.Count(obs.out.String(), `"leader":null`) < 2 {
			return fmt.Errorf("no 'no leader' event yet:\n%s", obs.out)
		}
		return nil
	})
	obs.cancel()
	if code := obs.wait(t, 5*time.Second); code != exitInterrupted {
		t.Fatalf("observe: exit %d", code)
	}
	// Every line is one JSON document, in order of index.
	var last uint64
	for _, line := range strings.Split(strings.TrimSpace(obs.out.String()), "\n") {
		var ev observeJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Index < last || ev.Name != "db-primary" {
			t.Fatalf("observe line %q: %v", line, err)
		}
		last = ev.Index
	}
}

func (f *fixture) testElectLost(t *testing.T) {
	t.Parallel()
	e := f.start(t, "-o", "json", "elect", "lost-election", "-ttl", "2s")
	e.waitFor(t, `"event":"leading"`)
	var ev electJSON
	if err := json.Unmarshal([]byte(strings.Split(e.out.String(), "\n")[0]), &ev); err != nil || ev.Lease == 0 || ev.Token == 0 {
		t.Fatalf("leading event: %q %v", e.out, err)
	}
	if err := f.c.Revoke(ctxT(t), ev.Lease); err != nil {
		t.Fatal(err)
	}
	if code := e.wait(t, 5*time.Second); code != exitLost || !strings.Contains(e.out.String(), `"event":"lost"`) {
		t.Fatalf("elect after its lease was revoked: exit %d\n%s\n%s", code, e.out, e.errb)
	}
}

// A Raft leader change is not a lost lock: the session's lease survives it
// and the command keeps running.
func TestLock_CommandKeepsRunningThroughARaftLeaderChange(t *testing.T) {
	f := newFixture(t)
	envFile := filepath.Join(t.TempDir(), "env")
	l := f.start(t, "lock", "failover", "-ttl", "3s", "--", "sh", "-c", writeEnv+`; exec sleep 60`, "sh", envFile)
	vars := readEnv(t, envFile)
	tok, _ := strconv.ParseUint(vars["COORDD_FENCING_TOKEN"], 10, 64)
	f.cl.Kill(f.cl.Leader())
	// Longer than the TTL: only keepalives through the new leader keep it.
	time.Sleep(4 * time.Second)
	select {
	case code := <-l.done:
		l.done <- code
		t.Fatalf("lock exited %d during a leader change\n%s", code, l.errb)
	default:
	}
	if fc, err := f.c.CheckToken(ctxT(t), "failover", tok); err != nil || !fc.Current {
		t.Fatalf("token not current after the leader change: %+v %v", fc, err)
	}
	l.cancel()
	if code := l.wait(t, 8*time.Second); code != exitInterrupted {
		t.Fatalf("exit %d\n%s", code, l.errb)
	}
}

// TestSnapshotRestore has a cluster of its own: a restore replaces the
// whole state, which the shared fixture's other subtests would notice.
func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	expect(t, f.ctl(t, "", "kv", "put", "r/k", "backup"), exitOK, "", "")
	path := filepath.Join(t.TempDir(), "backup.snap")
	expect(t, f.ctl(t, "", "snapshot", "save", path), exitOK, "", "")
	expect(t, f.ctl(t, "", "kv", "put", "r/k", "later"), exitOK, "", "")

	b, _ := os.ReadFile(path)
	bad := filepath.Join(t.TempDir(), "bad.snap")
	os.WriteFile(bad, b[:len(b)-1], 0o600)
	expect(t, f.ctl(t, "", "snapshot", "restore", bad), exitUsage, "", "not a sound coordd snapshot, nothing restored")
	expect(t, f.ctl(t, "", "kv", "get", "r/k"), exitOK, "later", "")

	r := f.ctl(t, "", "-o", "json", "snapshot", "restore", "-bump", "10", path)
	expect(t, r, exitOK, `"digest"`, "")
	res := decode[client.RestoreResult](t, r)
	if res.Keys != 1 || res.Index < res.BackupIndex+10 {
		t.Fatalf("restore result %+v", res)
	}
	expect(t, f.ctl(t, "", "kv", "get", "r/k"), exitOK, "backup", "")
}
