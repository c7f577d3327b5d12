package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run scripts/run-cluster.sh (what `make run` runs) and `make
// run` itself on free loopback ports, as a newcomer would use them: stop
// them with a signal, start a second one on the same ports, kill a node.
//
// Time bounds: the script stops every node within 2 s by construction
// (SIGKILL at 1.9 s); on this 2-core machine a stop takes about 0.1 s. The
// tests allow 10 s, so that a loaded machine cannot make them fail, and log
// what they measured.

// scriptRun is one run of the script (or of make run).
type scriptRun struct {
	cmd        *exec.Cmd
	out        *lockedBuffer
	done       chan struct{}
	http, raft []string
	dataDir    string
}

// lockedBuffer collects a process's output for a test reading it meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePorts returns n free loopback ports (numbers only).
func freePorts(t *testing.T, n int) []string {
	var ps []string
	for range n {
		ps = append(ps, strings.TrimPrefix(freePort(t), "127.0.0.1:"))
	}
	return ps
}

// ctlBin builds coordctl next to coordd (once per test binary).
func ctlBin(t *testing.T) string {
	t.Helper()
	ctl := filepath.Join(filepath.Dir(coorddBin), "coordctl")
	if _, err := os.Stat(ctl); err != nil {
		build := exec.Command("go", "build", "-o", ctl, "github.com/coordd/coordd/cmd/coordctl")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building coordctl: %v\n%s", err, out)
		}
	}
	return ctl
}

// startScript runs argv (the script, or make) in ./../.. with env added,
// in a process group of its own. The process is stopped in t.Cleanup if the
// test has not; on failure its output and the nodes' logs are printed.
func startScript(t *testing.T, r *scriptRun, argv []string, env ...string) *scriptRun {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipped: scripts/run-cluster.sh waits for readiness with curl, which is not installed")
	}
	r.out, r.done = &lockedBuffer{}, make(chan struct{})
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Dir = "../.."
	r.cmd.Env = append(append(os.Environ(), "HTTP_PORTS="+strings.Join(r.http, " "), "RAFT_PORTS="+strings.Join(r.raft, " "),
		"DATA_DIR="+r.dataDir), env...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if !r.exited() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(15 * time.Second):
				_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
				<-r.done
			}
		}
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", strings.Join(argv, " "), r.out.String())
			logs, _ := filepath.Glob(filepath.Join(r.dataDir, "n*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("---- %s ----\n%s", l, b)
			}
		}
	})
	return r
}

// newRun picks free ports and a data dir for a cluster of n nodes.
func newRun(t *testing.T, n int) *scriptRun {
	return &scriptRun{http: freePorts(t, n), raft: freePorts(t, n), dataDir: filepath.Join(t.TempDir(), "data")}
}

func (r *scriptRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// waitFor waits until the output contains s.
func (r *scriptRun) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within %s", s, timeout)
		}
		if r.exited() && !strings.Contains(r.out.String(), s) {
			t.Fatalf("exited (%v) before printing %q", r.cmd.ProcessState, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var bannerPID = regexp.MustCompile(`(?m)^  n(\d)  https?://\S+  raft \S+.*  pid (\d+)$`)

// nodePIDs reads each node's pid from the banner.
func (r *scriptRun) nodePIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, m := range bannerPID.FindAllStringSubmatch(r.out.String(), -1) {
		pid, _ := strconv.Atoi(m[2])
		pids = append(pids, pid)
	}
	if len(pids) != len(r.http) {
		t.Fatalf("the banner names %d node pids, want %d:\n%s", len(pids), len(r.http), r.out.String())
	}
	return pids
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || !strings.Contains(string(b), ") Z ")
}

// logSizes returns the size of each node's log now.
func (r *scriptRun) logSizes() []int64 {
	sizes := make([]int64, len(r.http))
	for i := range sizes {
		if fi, err := os.Stat(filepath.Join(r.dataDir, fmt.Sprintf("n%d.log", i+1))); err == nil {
			sizes[i] = fi.Size()
		}
	}
	return sizes
}

// logsSince returns what each node logged after the sizes given.
func (r *scriptRun) logsSince(sizes []int64) []string {
	out := make([]string, len(sizes))
	for i, off := range sizes {
		b, _ := os.ReadFile(filepath.Join(r.dataDir, fmt.Sprintf("n%d.log", i+1)))
		if int64(len(b)) > off {
			out[i] = string(b[off:])
		}
	}
	return out
}

// stopAndCheck sends sig to whom (the script or make) and checks that
// every node is gone and that no node logged an error or handed its
// leadership over while stopping; it returns how long the nodes took.
func (r *scriptRun) stopAndCheck(t *testing.T, whom *os.Process, sig syscall.Signal) time.Duration {
	t.Helper()
	pids := r.nodePIDs(t)
	sizes := r.logSizes()
	start := time.Now()
	if err := whom.Signal(sig); err != nil {
		t.Fatal(err)
	}
	for {
		left := 0
		for _, pid := range pids {
			if running(pid) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d of %d nodes still run 10 s after %v", left, len(pids), sig)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit within 10 s of %v", r.cmd.Path, sig)
	}
	for i, l := range r.logsSince(sizes) {
		if strings.Contains(l, "[ERROR]") || strings.Contains(l, "transferring leadership") || !strings.Contains(l, "coordd node stopped") {
			t.Errorf("n%d while stopping: an error, a handover, or no clean stop:\n%s", i+1, l)
		}
	}
	return took
}

// put writes key=value through node i's HTTP API.
func (r *scriptRun) put(t *testing.T, i int, key, value string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:"+r.http[i]+"/v1/kv/"+key, strings.NewReader(value))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s through n%d: %s", key, i+1, resp.Status)
	}
}

// leaderPID finds the leader through node i and returns the pid its own
// /v1/status reports, as the README's leader kill does.
func (r *scriptRun) leaderPID(t *testing.T, i int) int {
	t.Helper()
	var st struct {
		Leader *struct {
			HTTPAddr string `json:"http_addr"`
		} `json:"leader"`
		PID int `json:"pid"`
	}
	get := func(url string) {
		resp, err := httpc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
	}
	get("http://127.0.0.1:" + r.http[i] + "/v1/status")
	if st.Leader == nil {
		t.Fatal("no leader known")
	}
	get("http://" + st.Leader.HTTPAddr + "/v1/status")
	return st.PID
}

func Test_E2E_RunCluster_SIGTERMStopsEveryNodeWithoutErrorsOrHandover(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			r := startScript(t, newRun(t, 3), []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t))
			r.waitFor(t, "stops every node.", 60*time.Second)
			for i := range 20 {
				r.put(t, i%3, fmt.Sprintf("k%d", i), "v")
			}
			took := r.stopAndCheck(t, r.cmd.Process, sig)
			t.Logf("%v to the script: every node gone after %s", sig, took)
		})
	}
}

func Test_E2E_RunCluster_SecondRunOnBusyPortsFailsAtOnceNamingThem(t *testing.T) {
	first := startScript(t, newRun(t, 3), []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t))
	first.waitFor(t, "stops every node.", 60*time.Second)
	pids := first.nodePIDs(t)
	before := first.logSizes()
	second := &scriptRun{http: first.http, raft: first.raft, dataDir: filepath.Join(t.TempDir(), "data")}
	start := time.Now()
	startScript(t, second, []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t))
	select {
	case <-second.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the second run did not fail within 10 s")
	}
	t.Logf("the second run failed after %s", time.Since(start))
	out := second.out.String()
	if second.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, "cannot start: ports already in use") || strings.Contains(out, "cluster running") {
		t.Fatalf("exit %d:\n%s", second.cmd.ProcessState.ExitCode(), out)
	}
	for i, pid := range pids {
		for _, port := range []string{first.http[i], first.raft[i]} {
			if want := fmt.Sprintf("127.0.0.1:%s (", port); !strings.Contains(out, want) {
				t.Errorf("port %s not named:\n%s", port, out)
			}
			if _, err := exec.LookPath("ss"); err == nil && !strings.Contains(out, fmt.Sprintf("held by pid %d (", pid)) {
				t.Errorf("n%d's pid %d not named as the holder:\n%s", i+1, pid, out)
			}
		}
	}
	if _, err := os.Stat(second.dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second run made its data dir: %v", err)
	}
	// The first cluster noticed nothing.
	if logs := strings.Join(first.logsSince(before), ""); strings.Contains(logs, "[ERROR]") {
		t.Errorf("the first cluster logged errors:\n%s", logs)
	}
	first.stopAndCheck(t, first.cmd.Process, syscall.SIGTERM)
}

func Test_E2E_RunCluster_RestartsAKilledLeaderAndGivesUpOnANodeThatCannotStart(t *testing.T) {
	r := startScript(t, newRun(t, 3), []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t), "RESTART_DELAY=1")
	r.waitFor(t, "stops every node.", 60*time.Second)
	pids := r.nodePIDs(t)
	leader := r.leaderPID(t, 0)
	if err := syscall.Kill(leader, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, fmt.Sprintf("(pid %d) was killed by SIGKILL", leader), 10*time.Second)
	r.waitFor(t, "restarted (pid ", 10*time.Second)
	// A node whose data is damaged cannot start: n3 (or n2, if n3 led and
	// was just restarted) is killed and its raft.db overwritten before
	// its restart, 1 s later.
	victim := 2
	if pids[2] == leader {
		victim = 1
	}
	if err := syscall.Kill(pids[victim], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(r.dataDir, fmt.Sprintf("n%d", victim+1), "raft.db")
	for running(pids[victim]) {
		time.Sleep(time.Millisecond)
	}
	if err := os.WriteFile(db, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("n%d", victim+1)
	r.waitFor(t, "node "+id+" failed to start 3 times in a row: not restarting it", 60*time.Second)
	out := r.out.String()
	if !strings.Contains(out, "node "+id+" (pid ") || !strings.Contains(out, "cannot start") || !strings.Contains(out, "raft.db") {
		t.Fatalf("the reason was not printed:\n%s", out)
	}
	// The other two go on, and stop as usual.
	r.put(t, (victim+1)%3, "after", "x")
	if r.exited() {
		t.Fatal("the script exited with two nodes running")
	}
}

func Test_E2E_MakeRun_SignalToMakeStopsEveryNode(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipped: make is not installed")
	}
	bin := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			r := startScript(t, newRun(t, 3), []string{"make", "-s", "run", "BIN=" + bin})
			r.waitFor(t, "stops every node.", 120*time.Second)
			// Only make gets the signal, as from `kill PID` or a
			// supervisor: it passes SIGTERM on to the script, and the
			// script notices that make took a SIGHUP or SIGINT.
			took := r.stopAndCheck(t, r.cmd.Process, sig)
			t.Logf("%v to make: every node gone after %s", sig, took)
		})
	}
}

func Test_E2E_MakeRun_OneNode(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipped: make is not installed")
	}
	r := startScript(t, newRun(t, 1), []string{"make", "-s", "run", "BIN=" + t.TempDir(), "NODES=1"})
	r.waitFor(t, "coordd 1-node cluster running (leader: n1)", 120*time.Second)
	r.put(t, 0, "alone", "yes")
	r.stopAndCheck(t, r.cmd.Process, syscall.SIGTERM)
}

// Test_E2E_RunCluster_RefusesADataDirOfAnotherCluster: the nodes keep
// their peers' addresses in their data dirs, so `make run NODES=1` (or
// other ports) after a `make run` could never form a cluster on ./data:
// the script says so instead of waiting for a leader that cannot come.
func Test_E2E_RunCluster_RefusesADataDirOfAnotherCluster(t *testing.T) {
	first := startScript(t, newRun(t, 3), []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t))
	first.waitFor(t, "stops every node.", 60*time.Second)
	first.stopAndCheck(t, first.cmd.Process, syscall.SIGTERM)
	one := &scriptRun{http: freePorts(t, 1), raft: freePorts(t, 1), dataDir: first.dataDir}
	startScript(t, one, []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t), "NODES=1")
	select {
	case <-one.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run on another cluster's data dir did not fail within 10 s")
	}
	if out := one.out.String(); one.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, "holds a cluster of other nodes or ports") || strings.Contains(out, "cluster running") {
		t.Fatalf("exit %d:\n%s", one.cmd.ProcessState.ExitCode(), out)
	}
}
