package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// idleSettle is how long an idle run waits, once every node is ready and
// has applied all it knows of, before it measures: the start-up work
// (member records, cluster id, the first digests) is done by then.
const idleSettle = 3 * time.Second

// idleProfileEnv names a directory: when set, the idle mode also fetches a
// CPU profile of every node over the measured window (run with
// -node-flags -pprof), as DIR/idle-run<R>-<node>.pprof. For finding where
// the time goes; the profiling itself costs CPU, so figures of such runs
// are not the ones to quote.
const idleProfileEnv = "COORDBENCH_IDLE_PROFILE"

// runIdle starts its own 3-node cluster (it must know the pids and must be
// the only one talking to it), waits until it is ready and settled, then
// sends nothing for -idle and reads the CPU time of the three processes
// from /proc before and after: the cost of three idle members (heartbeats,
// tickers, metrics), in % of one core, all together and per node. The
// terms are read before and after the window (no polls inside it): a
// change is a spurious election.
func runIdle(e *env, run int) (Result, error) {
	cfg := e.cfg
	window := cfg.idle
	if window <= 0 {
		window = 20 * time.Second
	}
	settle := idleSettle
	if cfg.quick {
		settle = 500 * time.Millisecond
	}
	e.logf("idle run %d: starting an own cluster", run)
	cl, err := startOwnCluster(e.ctx, &cfg, nil)
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	leader, _, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return Result{}, err
	}
	if err := waitSettled(e.ctx, cl, 15*time.Second); err != nil {
		return Result{}, err
	}
	if !sleepUntil(e.ctx, time.Now().Add(settle)) {
		return Result{}, e.ctx.Err()
	}
	termBefore, err := highestTerm(e.ctx, cl)
	if err != nil {
		return Result{}, err
	}
	// The status reads above leave idle keep-alive connections, which
	// cost the nodes nothing while unused; close them anyway.
	probeHTTP.CloseIdleConnections()

	var profiles sync.WaitGroup
	if dir := os.Getenv(idleProfileEnv); dir != "" {
		for _, n := range cl.nodes {
			profiles.Add(1)
			go func() {
				defer profiles.Done()
				out := filepath.Join(dir, fmt.Sprintf("idle-run%d-%s.pprof", run, n.id))
				if err := fetchProfile(e.ctx, n.url(), window, out); err != nil {
					e.logf("idle run %d: profile of %s: %v", run, n.id, err)
				}
			}()
		}
	}

	e.logf("idle run %d: measuring %s with no load (leader %s)", run, window, leader.id)
	pids := make([]nodeProc, len(cl.nodes))
	for i, n := range cl.nodes {
		pids[i] = nodeProc{id: n.id, pid: n.pid(), leader: n == leader}
	}
	t0, before := time.Now(), sampleCPU(pids)
	if before == nil {
		return Result{}, fmt.Errorf("cannot read the CPU time of the nodes")
	}
	if !sleepUntil(e.ctx, t0.Add(window)) {
		return Result{}, e.ctx.Err()
	}
	t1, after := time.Now(), sampleCPU(pids)
	if after == nil {
		return Result{}, fmt.Errorf("cannot read the CPU time of the nodes at the end (did one exit?)")
	}
	profiles.Wait()
	termAfter, err := highestTerm(e.ctx, cl)
	if err != nil {
		return Result{}, err
	}

	secs := t1.Sub(t0).Seconds()
	var total, followers float64
	figs := []Figure{{Key: "cpu_pct_one_core_3_members", Unit: "%"}}
	for i, n := range pids {
		p := cpuPercent(before[i], after[i], secs)
		total += p
		if n.leader {
			figs = append(figs, Figure{Key: "cpu_pct_leader", Unit: "%", Value: p})
		} else {
			followers = max(followers, p)
		}
	}
	figs[0].Value = total
	figs = append(figs,
		Figure{Key: "cpu_pct_follower_max", Unit: "%", Value: followers},
		Figure{Key: "term_changes", Unit: "count", Value: float64(termAfter - termBefore)})
	for i, n := range pids {
		figs = append(figs, Figure{Key: "cpu_pct_" + n.id, Unit: "%", Value: cpuPercent(before[i], after[i], secs)})
	}
	return Result{Workload: "idle", Run: run, Figures: figs,
		GoalSet: goalSetIf(window >= 10*time.Second, "idle"),
		Params:  map[string]any{"idle_s": window.Seconds(), "leader": leader.id}}, nil
}

// waitSettled waits until every node knows the same leader and has applied
// everything it knows to be committed.
func waitSettled(ctx context.Context, cl *cluster, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		settled, leader := true, ""
		for _, n := range cl.nodes {
			st, err := getStatus(ctx, n.url(), 500*time.Millisecond)
			if err != nil || st.Leader == nil || !st.Ready || st.AppliedIndex < st.CommitIndex ||
				(leader != "" && st.Leader.ID != leader) {
				settled = false
				break
			}
			leader = st.Leader.ID
		}
		if settled {
			return nil
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return fmt.Errorf("cluster not settled after %s", timeout)
		}
	}
}

// highestTerm is the highest term any node reports.
func highestTerm(ctx context.Context, cl *cluster) (uint64, error) {
	var t uint64
	var lastErr error
	ok := 0
	for _, n := range cl.nodes {
		st, err := getStatus(ctx, n.url(), time.Second)
		if err != nil {
			lastErr = err
			continue
		}
		ok++
		t = max(t, st.Term)
	}
	if ok == 0 {
		return 0, lastErr
	}
	return t, nil
}

// fetchProfile saves a CPU profile of d from the node at base to path.
func fetchProfile(ctx context.Context, base string, d time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Round(time.Second).Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (is -node-flags -pprof set?)", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
