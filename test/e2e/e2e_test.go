// Package e2e starts real coordd processes (built from this tree) on
// loopback and checks the cluster from the outside, the way users run it.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var coorddBin string

func TestMain(m *testing.M) {
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
	cmd                                      *exec.Cmd
	exited                                   chan struct{}
}

func (p *proc) url() string { return "http://" + p.httpAddr }

func (p *proc) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(coorddBin, p.args...)
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
func (p *proc) term(t *testing.T, timeout time.Duration) {
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

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster starts n bootstrapped coordd processes and waits until each
// is ready. Every process is killed in t.Cleanup.
func startCluster(t *testing.T, n int) []*proc {
	t.Helper()
	dir := t.TempDir()
	var procs []*proc
	var peers []string
	for i := range n {
		p := &proc{id: fmt.Sprintf("n%d", i+1), raftAddr: freePort(t), httpAddr: freePort(t)}
		p.dataDir = filepath.Join(dir, p.id)
		p.logPath = filepath.Join(dir, p.id+".log")
		peers = append(peers, fmt.Sprintf("%s=%s,%s", p.id, p.raftAddr, p.httpAddr))
		procs = append(procs, p)
	}
	for _, p := range procs {
		p.args = []string{"-id", p.id, "-data-dir", p.dataDir, "-raft-addr", p.raftAddr,
			"-http-addr", p.httpAddr, "-bootstrap", strings.Join(peers, ";"), "-log-level", "debug"}
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
	for _, p := range procs {
		waitReady(t, p, 20*time.Second)
	}
	return procs
}

var httpc = &http.Client{Timeout: 3 * time.Second}

func waitReady(t *testing.T, p *proc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := httpc.Get(p.url() + "/readyz")
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
			t.Fatalf("%s not ready after %s (last error %v)", p.id, timeout, err)
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

func leaderOf(t *testing.T, procs []*proc) *proc {
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

func Test_E2E_LeaderSIGKILLedUnderWrites_NothingAcknowledgedLost(t *testing.T) {
	procs := startCluster(t, 3)

	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		ackTime []time.Time
		errs    int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	const writers, perWriter = 4, 2000
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWriter {
				select {
				case <-stopWriters:
					return
				case <-ctx.Done():
					return
				default:
				}
				p := procs[rng.IntN(len(procs))]
				key, val := fmt.Sprintf("e2e/w%d/%05d", w, i), fmt.Sprintf("v-%d-%d", w, i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.url()+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := httpc.Do(req)
				if err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == http.StatusOK {
					acked[key] = val
					ackTime = append(ackTime, time.Now())
				} else {
					errs++
				}
				mu.Unlock()
				if resp.StatusCode != http.StatusOK {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}

	time.Sleep(time.Second)
	old := leaderOf(t, procs)
	killedAt := time.Now()
	old.kill()
	t.Logf("SIGKILLed leader %s", old.id)

	// Time until another node reports itself leader.
	var survivors []*proc
	for _, p := range procs {
		if p != old {
			survivors = append(survivors, p)
		}
	}
	newLeader := leaderOf(t, survivors)
	electedAfter := time.Since(killedAt)

	time.Sleep(1500 * time.Millisecond)
	old.start(t)
	waitReady(t, old, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	close(stopWriters)
	wg.Wait()

	mu.Lock()
	var firstAfter time.Duration = -1
	for _, at := range ackTime {
		if at.After(killedAt) {
			firstAfter = at.Sub(killedAt)
			break
		}
	}
	// The longest stretch without any acknowledged write around the kill.
	var gap time.Duration
	for i := 1; i < len(ackTime); i++ {
		if ackTime[i].After(killedAt) && ackTime[i-1].Before(killedAt.Add(3*time.Second)) {
			gap = max(gap, ackTime[i].Sub(ackTime[i-1]))
		}
	}
	t.Logf("failover: new leader %s reported %s after SIGKILL; first write acknowledged %s after; longest write gap %s; %d writes acknowledged, %d failed or refused",
		newLeader.id, electedAfter.Round(time.Millisecond), firstAfter.Round(time.Millisecond), gap.Round(time.Millisecond), len(acked), errs)
	if firstAfter < 0 {
		t.Fatal("no write was acknowledged after the leader was killed")
	}
	mu.Unlock()

	// Every acknowledged write is there, through a linearizable read, and
	// nothing is there that was never written.
	check := func(p *proc, query string) error {
		got, code, err := list(p, query)
		if err != nil {
			return fmt.Errorf("%s list: %d %v", p.id, code, err)
		}
		have := map[string]string{}
		for _, e := range got {
			have[e.Key] = e.Value
		}
		for k, v := range acked {
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
	if err := check(newLeader, ""); err != nil {
		t.Fatal(err)
	}
	// The restarted node caught up: its own local state has it all.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check(old, "&stale")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node did not catch up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// SIGTERM stops every node cleanly.
	for _, p := range procs {
		p.term(t, 15*time.Second)
	}
}
