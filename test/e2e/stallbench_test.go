package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/test/jepsen/netproxy"
)

// TestStallBench is make bench-stall: a 3-node cluster with the default
// Raft timing, whose Raft traffic goes through loopback proxies
// (test/jepsen/netproxy). Its leader is faulted for COORDD_STALL_SECONDS
// (default 5; "5,60" for both) COORDD_STALL_TRIALS times (default 20) by
// each of COORDD_STALL_FAULTS (default "stop"; "stop,isolate" for both):
// stop is SIGSTOP (a stall), isolate cuts the leader off from both peers,
// both ways, while it keeps running and serving HTTP. 50 ms into each
// fault every kind of request is sent to both other nodes at once, and the
// time to its answer recorded. It prints, per fault, duration and request
// kind, the median and maximum answer time and how the requests were
// answered, and every answer that took longer than a second (with the
// nodes' logs copied to COORDD_STALL_BENCH_LOGS if set). Set
// COORDD_E2E_BIN to measure another build. Only runs with
// COORDD_STALL_BENCH=1.
func TestStallBench(t *testing.T) {
	if os.Getenv("COORDD_STALL_BENCH") == "" {
		t.Skip("set COORDD_STALL_BENCH=1 (make bench-stall)")
	}
	trials := 20
	if n, err := strconv.Atoi(os.Getenv("COORDD_STALL_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	stalls := []time.Duration{5 * time.Second}
	if s := os.Getenv("COORDD_STALL_SECONDS"); s != "" {
		stalls = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				t.Fatalf("COORDD_STALL_SECONDS=%q: want seconds, comma-separated", s)
			}
			stalls = append(stalls, time.Duration(n)*time.Second)
		}
	}
	faults := []string{"stop"}
	if s := os.Getenv("COORDD_STALL_FAULTS"); s != "" {
		faults = nil
		for _, f := range strings.Split(s, ",") {
			f = strings.TrimSpace(f)
			if f != "stop" && f != "isolate" {
				t.Fatalf("COORDD_STALL_FAULTS=%q: want stop and/or isolate, comma-separated", s)
			}
			faults = append(faults, f)
		}
	}
	level := "info"
	if os.Getenv("COORDD_STALL_BENCH_LOGS") != "" {
		level = "debug"
	}
	procs, pnet := startClusterProxied(t, 3, level, 20*time.Second, "-pprof")
	var report strings.Builder
	fmt.Fprintf(&report, "binary %s, %d trials per fault, each kind sent to both healthy nodes 50 ms into the fault\n", coorddBin, trials)
	fmt.Fprintf(&report, "%-8s %-6s %-16s %9s %9s  %s\n", "fault", "length", "request", "median", "max", "answers")
	for _, fault := range faults {
		for _, stall := range stalls {
			hc := &http.Client{Timeout: stall + 30*time.Second}
			byKind := map[string][]stallAnswer{}
			seq := 0
			for trial := range trials {
				leader, lease := stallSetup(t, procs)
				if err := faultLeader(pnet, leader, fault, true); err != nil {
					t.Fatal(err)
				}
				stopped := time.Now()
				time.Sleep(50 * time.Millisecond)
				done := make(chan []stallAnswer, 1)
				go func() { done <- stallWave(hc, others(procs, leader), lease, &seq) }()
				if dir := os.Getenv("COORDD_STALL_BENCH_LOGS"); dir != "" {
					// A wave still waiting after 1.5 s: what the healthy nodes are doing.
					go func() {
						time.Sleep(1500 * time.Millisecond)
						select {
						case a := <-done:
							done <- a
						default:
							dumpGoroutines(t, others(procs, leader), filepath.Join(dir, fmt.Sprintf("%s-%s-trial%d", fault, stall, trial+1)))
						}
					}()
				}
				var answers []stallAnswer
				select {
				case answers = <-done:
					time.Sleep(time.Until(stopped.Add(stall)))
				case <-time.After(time.Until(stopped.Add(stall))):
				}
				if err := faultLeader(pnet, leader, fault, false); err != nil {
					t.Fatal(err)
				}
				if answers == nil {
					answers = <-done
				}
				slow := false
				for _, a := range answers {
					byKind[a.kind] = append(byKind[a.kind], a)
					if a.took > time.Second {
						slow = true
						t.Logf("%s %s trial %d: %s to %s answered after %s: %d %s %v", fault, stall, trial+1, a.kind, a.node, a.took.Round(time.Millisecond), a.status, a.code, a.err)
					}
				}
				if dir := os.Getenv("COORDD_STALL_BENCH_LOGS"); slow && dir != "" {
					keepLogs(t, procs, filepath.Join(dir, fmt.Sprintf("%s-%s-trial%d", fault, stall, trial+1)))
				}
				for _, p := range procs {
					waitReady(t, p, 30*time.Second)
				}
				t.Logf("%s %s trial %d done", fault, stall, trial+1)
			}
			for _, k := range stallKinds {
				as := byKind[k.name]
				var took []time.Duration
				codes := map[string]int{}
				for _, a := range as {
					took = append(took, a.took)
					switch {
					case a.err != nil:
						codes["error"]++
					case a.status == http.StatusOK:
						codes["200"]++
					default:
						codes[fmt.Sprintf("%d %s", a.status, a.code)]++
					}
				}
				slices.Sort(took)
				var parts []string
				for c, n := range codes {
					parts = append(parts, fmt.Sprintf("%s×%d", c, n))
				}
				slices.Sort(parts)
				fmt.Fprintf(&report, "%-8s %-6s %-16s %9s %9s  %s\n", fault, stall, k.name,
					took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), strings.Join(parts, " "))
			}
		}
	}
	t.Log("\n" + report.String())
	if out := os.Getenv("COORDD_STALL_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// keepLogs copies the nodes' logs into dir, for a trial worth a look.
func keepLogs(t *testing.T, procs []*proc, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	for _, p := range procs {
		if b, err := os.ReadFile(p.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dir, p.id+".log"), b, 0o644)
		}
	}
	t.Logf("logs kept in %s", dir)
}

// dumpGoroutines saves the goroutines of procs into dir.
func dumpGoroutines(t *testing.T, procs []*proc, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	for _, p := range procs {
		resp, err := httpc.Get(p.url() + "/debug/pprof/goroutine?debug=2")
		if err != nil {
			t.Logf("goroutines of %s: %v", p.id, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = os.WriteFile(filepath.Join(dir, p.id+".goroutines"), b, 0o644)
	}
}

// faultLeader starts (on) or ends the fault on leader: "stop" is SIGSTOP
// and SIGCONT, "isolate" cuts its Raft traffic to and from every peer
// through the proxies and heals the network.
func faultLeader(pnet *netproxy.Net, leader *proc, fault string, on bool) error {
	switch {
	case fault == "stop" && on:
		return leader.cmd.Process.Signal(syscall.SIGSTOP)
	case fault == "stop":
		return leader.cmd.Process.Signal(syscall.SIGCONT)
	case on:
		return pnet.Isolate(leader.id)
	default:
		pnet.Heal()
		return nil
	}
}

// stallSetup waits until the cluster serves again after a stall (the old
// leader may still say it leads for a moment after it is continued, or a
// new one not be ready) and grants a lease through its leader, which it
// returns.
func stallSetup(t *testing.T, procs []*proc) (*proc, uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		leader := leaderOf(t, procs)
		var l leaseResp
		resp, err := httpc.Post(leader.url()+"/v1/leases", "application/json", strings.NewReader(`{"ttl":"120s"}`))
		if err == nil {
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&l) == nil
			resp.Body.Close()
			if ok {
				if st, err := getStatus(leader); err == nil && st.State == "Leader" {
					return leader, l.ID
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease granted within a minute of the stall: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
