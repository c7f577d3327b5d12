// Package e2e starts real coordd processes (built from this tree) on
// loopback and checks the cluster from the outside, the way users run it.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/internal/loopport"
	"github.com/coordd/coordd/test/jepsen/netproxy"
)

var coorddBin string

func TestMain(m *testing.M) {
	// COORDD_E2E_BIN runs the tests against a prebuilt binary (for
	// example one built from an older revision, to measure a change).
	if bin := os.Getenv("COORDD_E2E_BIN"); bin != "" {
		coorddBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "coordd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	coorddBin = filepath.Join(dir, "coordd")
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-o", coorddBin, "github.com/coordd/coordd/cmd/coordd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building coordd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one coordd process.
type proc struct {
	id, raftAddr, httpAddr, dataDir, logPath string
	args                                     []string
	// bin and env, when set, start another build and add to the
	// environment (the digest tests' perturbing build).
	bin    string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) url() string { return "http://" + p.httpAddr }

func (p *proc) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bin := coorddBin
	if p.bin != "" {
		bin = p.bin
	}
	p.cmd = exec.Command(bin, p.args...)
	if len(p.env) > 0 {
		p.cmd.Env = append(os.Environ(), p.env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Own process group, and killed if this test process dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", p.id, err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process group and waits for the exit.
func (p *proc) kill() {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// term sends SIGTERM and waits up to timeout for a clean exit.
func (p *proc) term(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM", p.id, code)
		}
	case <-time.After(timeout):
		t.Errorf("%s did not stop within %s of SIGTERM", p.id, timeout)
		p.kill()
	}
}

// freePort returns a loopback address whose port was free a moment ago,
// below the kernel's ephemeral range (see package loopport).
func freePort(t testing.TB) string {
	t.Helper()
	ports, err := loopport.Free(1, rand.IntN)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(ports[0])
}

// startCluster starts n bootstrapped coordd processes and waits until each
// is ready. Every process is killed in t.Cleanup.
func startCluster(t testing.TB, n int) []*proc {
	t.Helper()
	return startClusterWith(t, n, "debug", 20*time.Second)
}

// startClusterWith is startCluster with a log level, a readiness deadline
// and extra flags for every node. On failure the tail of each node's log is
// printed.
func startClusterWith(t testing.TB, n int, logLevel string, readyWithin time.Duration, extra ...string) []*proc {
	t.Helper()
	procs := launchCluster(t, n, logLevel, nil, extra...)
	for _, p := range procs {
		waitReady(t, p, readyWithin)
	}
	return procs
}

// startClusterProxied is startClusterWith for a cluster whose Raft
// traffic goes through loopback proxies, one per ordered pair of nodes, so
// that a test can cut a node off from its peers (netproxy.Net.Isolate)
// while clients still reach it. The proxies close in t.Cleanup.
func startClusterProxied(t testing.TB, n int, logLevel string, readyWithin time.Duration, extra ...string) ([]*proc, *netproxy.Net) {
	t.Helper()
	procs := newProcs(t, n)
	raftAddrs := map[string]string{}
	for _, p := range procs {
		raftAddrs[p.id] = p.raftAddr
	}
	pnet, err := netproxy.New(raftAddrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pnet.Close() })
	startProcs(t, procs, logLevel, func(p *proc) []string {
		pa, err := pnet.PeerAddrs(p.id)
		if err != nil {
			t.Fatal(err)
		}
		var via []string
		for _, peer := range slices.Sorted(maps.Keys(pa)) {
			via = append(via, peer+"="+pa[peer])
		}
		return []string{"-peer-raft-addrs", strings.Join(via, ",")}
	}, extra...)
	for _, p := range procs {
		waitReady(t, p, readyWithin)
	}
	return procs, pnet
}

// launchCluster starts n bootstrapped coordd processes with extra flags
// for every node and perNode's for each (perNode may be nil), without
// waiting for them. Every process is killed in t.Cleanup; on failure the
// tail of each node's log is printed.
func launchCluster(t testing.TB, n int, logLevel string, perNode func(p *proc) []string, extra ...string) []*proc {
	t.Helper()
	procs := newProcs(t, n)
	startProcs(t, procs, logLevel, perNode, extra...)
	return procs
}

// newProcs chooses the addresses, data dirs and log files of n nodes
// without starting them.
func newProcs(t testing.TB, n int) []*proc {
	t.Helper()
	dir := t.TempDir()
	var procs []*proc
	for i := range n {
		p := &proc{id: fmt.Sprintf("n%d", i+1), raftAddr: freePort(t), httpAddr: freePort(t)}
		p.dataDir = filepath.Join(dir, p.id)
		p.logPath = filepath.Join(dir, p.id+".log")
		procs = append(procs, p)
	}
	return procs
}

// startProcs starts procs (from newProcs) as one bootstrapped cluster, as
// launchCluster does.
func startProcs(t testing.TB, procs []*proc, logLevel string, perNode func(p *proc) []string, extra ...string) {
	t.Helper()
	var peers []string
	for _, p := range procs {
		peers = append(peers, fmt.Sprintf("%s=%s,%s", p.id, p.raftAddr, p.httpAddr))
	}
	for _, p := range procs {
		p.args = append([]string{"-id", p.id, "-data-dir", p.dataDir, "-raft-addr", p.raftAddr,
			"-http-addr", p.httpAddr, "-bootstrap", strings.Join(peers, ";"), "-log-level", logLevel}, extra...)
		if perNode != nil {
			p.args = append(p.args, perNode(p)...)
		}
		p.start(t)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range procs {
				b, _ := os.ReadFile(p.logPath)
				if len(b) > 48<<10 {
					b = b[len(b)-48<<10:]
				}
				t.Logf("---- %s log ----\n%s", p.id, b)
			}
		}
	})
}

var httpc = &http.Client{Timeout: 3 * time.Second}

func waitReady(t testing.TB, p *proc, timeout time.Duration) {
	t.Helper()
	waitReadyAt(t, httpc, p.url(), p, timeout)
}

// waitReadyAt polls p's /readyz at base (its http or https URL) until it
// answers 200, p exits, or timeout passes.
func waitReadyAt(t testing.TB, hc *http.Client, base string, p *proc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.running() {
			t.Fatalf("%s exited while waiting for it to be ready", p.id)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after %s (last error %v)", p.id, base, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type status struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader *struct {
		ID string `json:"id"`
	} `json:"leader"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

func getStatus(p *proc) (status, error) {
	var st status
	resp, err := httpc.Get(p.url() + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func leaderOf(t testing.TB, procs []*proc) *proc {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if !p.running() {
				continue
			}
			if st, err := getStatus(p); err == nil && st.State == "Leader" {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader found")
	return nil
}

type kv struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func list(p *proc, query string) ([]kv, int, error) {
	resp, err := httpc.Get(p.url() + "/v1/kv/e2e/?prefix" + query)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("%s", b)
	}
	var out []kv
	return out, resp.StatusCode, json.Unmarshal(b, &out)
}

// writers keeps writing unique keys through random nodes and records which
// writes were acknowledged and when. Bounded in count and time.
type writers struct {
	mu      sync.Mutex
	acked   map[string]string
	ackTime []time.Time
	errs    int
	stop    chan struct{}
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func startWriters(procs []*proc, n, perWriter int) *writers {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	ws := &writers{acked: map[string]string{}, stop: make(chan struct{}), cancel: cancel}
	for w := range n {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := range perWriter {
				select {
				case <-ws.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				p := procs[rng.IntN(len(procs))]
				key, val := fmt.Sprintf("e2e/w%d/%05d", w, i), fmt.Sprintf("v-%d-%d", w, i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.url()+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := httpc.Do(req)
				ok := false
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == http.StatusOK
				}
				ws.mu.Lock()
				if ok {
					ws.acked[key] = val
					ws.ackTime = append(ws.ackTime, time.Now())
				} else {
					ws.errs++
				}
				ws.mu.Unlock()
				if !ok {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	return ws
}

func (ws *writers) finish() {
	close(ws.stop)
	ws.wg.Wait()
	ws.cancel()
}

// gapAround returns the longest stretch without an acknowledged write that
// ends within 5 s after at, and the delay of the first ack after at.
func (ws *writers) gapAround(at time.Time) (gap, first time.Duration) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	first = -1
	for i, t := range ws.ackTime {
		if t.After(at) && first < 0 {
			first = t.Sub(at)
		}
		if i > 0 && t.After(at) && t.Before(at.Add(5*time.Second)) {
			gap = max(gap, t.Sub(ws.ackTime[i-1]))
		}
	}
	return gap, first
}

// checkAll verifies, through p, that every acknowledged write is there and
// that nothing is there that was never written.
func (ws *writers) checkAll(p *proc, query string) error {
	got, code, err := list(p, query)
	if err != nil {
		return fmt.Errorf("%s list: %d %v", p.id, code, err)
	}
	have := map[string]string{}
	for _, e := range got {
		have[e.Key] = e.Value
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for k, v := range ws.acked {
		if have[k] != v {
			return fmt.Errorf("%s: acknowledged %s=%s missing (have %q)", p.id, k, v, have[k])
		}
	}
	for k, v := range have {
		var w, i int
		if _, err := fmt.Sscanf(k, "e2e/w%d/%05d", &w, &i); err != nil || v != fmt.Sprintf("v-%d-%d", w, i) {
			return fmt.Errorf("%s: unexpected %s=%s", p.id, k, v)
		}
	}
	return nil
}

func others(procs []*proc, not *proc) []*proc {
	var out []*proc
	for _, p := range procs {
		if p != not {
			out = append(out, p)
		}
	}
	return out
}

// waitCaughtUp polls until p's own local state holds every acknowledged write.
func waitCaughtUp(t *testing.T, ws *writers, p *proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := ws.checkAll(p, "&stale")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not catch up: %v", p.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func Test_E2E_LeaderSIGKILLedUnderWrites_NothingAcknowledgedLost(t *testing.T) {
	procs := startCluster(t, 3)
	ws := startWriters(procs, 4, 3000)
	time.Sleep(time.Second)

	old := leaderOf(t, procs)
	killedAt := time.Now()
	old.kill()
	newLeader := leaderOf(t, others(procs, old))
	electedAfter := time.Since(killedAt)

	time.Sleep(1500 * time.Millisecond)
	old.start(t)
	waitReady(t, old, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	ws.finish()

	gap, first := ws.gapAround(killedAt)
	t.Logf("SIGKILL of leader %s: new leader %s reported after %s; first write acknowledged after %s; longest write gap %s; %d writes acknowledged, %d failed or refused",
		old.id, newLeader.id, electedAfter.Round(time.Millisecond), first.Round(time.Millisecond), gap.Round(time.Millisecond), len(ws.acked), ws.errs)
	if first < 0 {
		t.Fatal("no write was acknowledged after the leader was killed")
	}
	if err := ws.checkAll(newLeader, ""); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, ws, old)

	// /metrics carries Raft's own metrics next to coordd's.
	resp, err := httpc.Get(newLeader.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"coordd_raft_commit_time_seconds", "coordd_raft_is_leader 1", "coordd_http_requests_total", "go_goroutines"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics of the leader lacks %s", m)
		}
	}

	// SIGTERM stops every node cleanly.
	for _, p := range procs {
		p.term(t, 15*time.Second)
	}
}

func Test_E2E_LeaderSIGTERMed_HandsLeadershipOverAndExitsCleanly(t *testing.T) {
	procs := startCluster(t, 3)
	ws := startWriters(procs, 4, 3000)
	time.Sleep(time.Second)

	old := leaderOf(t, procs)
	termAt := time.Now()
	old.term(t, 15*time.Second)
	stoppedAfter := time.Since(termAt)
	newLeader := leaderOf(t, others(procs, old))

	time.Sleep(time.Second)
	old.start(t)
	waitReady(t, old, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	ws.finish()

	gap, first := ws.gapAround(termAt)
	t.Logf("SIGTERM of leader %s: exited after %s; new leader %s; first write acknowledged after %s; longest write gap %s; %d acknowledged, %d failed or refused",
		old.id, stoppedAfter.Round(time.Millisecond), newLeader.id, first.Round(time.Millisecond), gap.Round(time.Millisecond), len(ws.acked), ws.errs)
	if err := ws.checkAll(newLeader, ""); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, ws, old)
	for _, p := range procs {
		p.term(t, 15*time.Second)
	}
}

func Test_E2E_LockSurvivesLeaderSIGKILL_ThenPassesToTheStandbyWhenTheHolderStops(t *testing.T) {
	procs := startCluster(t, 3)
	pick := func(i int) *proc {
		for j := range procs {
			if p := procs[(i+j)%len(procs)]; p.running() {
				return p
			}
		}
		t.Fatal("no node running")
		return nil
	}
	holder := grantLease(t, pick(0), "2s")
	var c campaignResp
	if code, _ := post(t, pick(0).url()+"/v1/locks/job", fmt.Sprintf(`{"lease":%d}`, holder), &c); code != http.StatusOK || !c.Leader {
		t.Fatalf("lock: %d %+v", code, c)
	}
	// The holder keeps its lease alive through any node, every 400 ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(400 * time.Millisecond):
			}
			if resp, err := httpc.Post(fmt.Sprintf("%s/v1/leases/%d/keepalive", pick(i).url(), holder), "application/json", nil); err == nil {
				resp.Body.Close()
			}
		}
	}()
	leader := leaderOf(t, procs)
	leader.kill()
	leaderOf(t, others(procs, leader))
	time.Sleep(3 * time.Second) // longer than the TTL, across the failover
	var e electionResp
	resp, err := httpc.Get(pick(1).url() + "/v1/locks/job")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if e.Leader == nil || e.Leader.Lease != holder || e.Leader.Token != c.Token {
		t.Fatalf("after the failover the lock is %+v, want lease %d token %d", e.Leader, holder, c.Token)
	}
	// The holder stops; a standby waiting for the lock takes over with a
	// higher token.
	standby := grantLease(t, pick(1), "10s")
	close(stop)
	wg.Wait()
	var s campaignResp
	if code, _ := post(t, pick(1).url()+"/v1/locks/job", fmt.Sprintf(`{"lease":%d,"wait":"10s"}`, standby), &s); code != http.StatusOK || !s.Leader || s.Token <= c.Token {
		t.Fatalf("standby: %d %+v", code, s)
	}
	for _, p := range procs {
		p.term(t, 15*time.Second)
	}
}
