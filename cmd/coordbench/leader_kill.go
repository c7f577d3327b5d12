package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// runLeaderKill starts its own cluster (it must know the pids) and runs
// -rounds rounds: -writers writers Put in a loop through one client; after
// a warm-up the Raft leader is SIGKILLed. Measured: kill → a survivor
// reports itself leader of a newer term (status polled every 2 ms), the
// longest gap between successive successful writes (over all writers),
// and the calls the client failed. The killed node is restarted (time to
// /readyz 200) before the next round. Then, with no load, the terms are
// watched for -idle: any change is a spurious election.
func runLeaderKill(e *env, run int) (Result, error) {
	cfg := e.cfg
	rounds := cfg.rounds
	if rounds == 0 {
		rounds = 3
	}
	warm := 2 * time.Second
	if cfg.quick {
		warm = 500 * time.Millisecond
	}
	e.logf("leader-kill run %d: starting an own cluster", run)
	cl, err := startOwnCluster(e.ctx, &cfg, nil)
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	defer c.Close()

	var newLeader, gaps, restart []time.Duration
	var errs int
	var rate []float64
	for r := range rounds {
		if e.ctx.Err() != nil {
			return Result{}, e.ctx.Err()
		}
		m, err := leaderKillRound(e, cl, c, r, warm)
		if err != nil {
			return Result{}, fmt.Errorf("round %d: %w", r, err)
		}
		e.logf("leader-kill run %d round %d: killed %s; new leader after %s; longest write gap %s; %d errors; restarted node ready after %s",
			run, r+1, m.killed, m.newLeader.Round(time.Millisecond), m.gap.Round(time.Millisecond), m.errors, m.restartReady.Round(time.Millisecond))
		newLeader = append(newLeader, m.newLeader)
		gaps = append(gaps, m.gap)
		restart = append(restart, m.restartReady)
		errs += m.errors
		rate = append(rate, m.writesPerSec)
	}

	e.logf("leader-kill run %d: %s idle, watching the terms", run, cfg.idle)
	changes, err := idleTermChanges(e.ctx, cl, cfg.idle)
	if err != nil {
		return Result{}, err
	}
	figs := latencyFigures("new_leader_", newLeader)
	figs = append(figs,
		Figure{Key: "max_write_gap_ms", Unit: "ms", Value: ms(slices.Max(gaps))},
		Figure{Key: "write_gap_p50_ms", Unit: "ms", Value: ms(percentile(gaps, 0.5))},
		Figure{Key: "errors", Unit: "count", Value: float64(errs)},
		Figure{Key: "writes_per_s_before_kill", Unit: "ops/s", Value: median(rate)},
		Figure{Key: "restart_ready_p50_ms", Unit: "ms", Value: ms(percentile(restart, 0.5))},
		Figure{Key: "idle_term_changes", Unit: "count", Value: float64(changes)},
	)
	return Result{Workload: fmt.Sprintf("leader-kill writers=%d", cfg.writers), Run: run, Figures: figs,
		GoalSet: goalSetIf(cfg.writers == 16, "leader-kill"),
		Params:  map[string]any{"rounds": rounds, "writers": cfg.writers, "idle_s": cfg.idle.Seconds()}}, nil
}

// killMeasure is one round of leader-kill.
type killMeasure struct {
	killed                       string
	newLeader, gap, restartReady time.Duration
	errors                       int
	writesPerSec                 float64
}

func leaderKillRound(e *env, cl *cluster, c *client.Client, round int, warm time.Duration) (killMeasure, error) {
	var m killMeasure
	leader, term, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return m, err
	}
	m.killed = leader.id
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	writers := e.cfg.writers
	acks := make([][]time.Time, writers)
	var errCount atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stamp := time.Now().UnixNano()
	val := make([]byte, 64)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				pctx, pcancel := context.WithTimeout(ctx, opTimeout)
				_, err := c.Put(pctx, fmt.Sprintf("coordbench/leader-kill/%d/%d/%d/%d", stamp, round, w, i), val)
				pcancel()
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				acks[w] = append(acks[w], time.Now())
			}
		}()
	}
	start := time.Now()
	time.Sleep(warm)
	killed := time.Now()
	leader.kill()
	var found time.Time
	for deadline := killed.Add(15 * time.Second); found.IsZero(); {
		for _, n := range cl.nodes {
			if n == leader {
				continue
			}
			st, err := getStatus(ctx, n.url(), 200*time.Millisecond)
			if err == nil && st.State == "Leader" && st.Term > term {
				found = time.Now()
				break
			}
		}
		if found.IsZero() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				close(stop)
				wg.Wait()
				return m, fmt.Errorf("no new leader 15 s after killing %s", leader.id)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	m.newLeader = found.Sub(killed)
	time.Sleep(2 * time.Second) // writes go on under the new leader
	close(stop)
	wg.Wait()

	var all []time.Time
	before := 0
	for _, a := range acks {
		all = append(all, a...)
		for _, t := range a {
			if t.Before(killed) {
				before++
			}
		}
	}
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(all); i++ {
		m.gap = max(m.gap, all[i].Sub(all[i-1]))
	}
	if len(all) == 0 {
		return m, fmt.Errorf("no write succeeded (first error: %v)", firstErr.Load())
	}
	m.errors = int(errCount.Load())
	if m.errors > 0 {
		e.logf("leader-kill: %d write errors, the first: %v", m.errors, firstErr.Load())
	}
	m.writesPerSec = float64(before) / killed.Sub(start).Seconds()

	restarted := time.Now()
	if err := leader.start(); err != nil {
		return m, err
	}
	if m.restartReady, err = leader.waitReady(e.ctx, restarted, 60*time.Second); err != nil {
		return m, err
	}
	return m, nil
}

// idleTermChanges watches every node's term for d with no load and
// returns how many times the highest term seen went up.
func idleTermChanges(ctx context.Context, cl *cluster, d time.Duration) (int, error) {
	if _, _, err := cl.leaderNode(ctx, 15*time.Second); err != nil {
		return 0, err
	}
	highest := func() uint64 {
		var t uint64
		for _, n := range cl.nodes {
			if st, err := getStatus(ctx, n.url(), 500*time.Millisecond); err == nil {
				t = max(t, st.Term)
			}
		}
		return t
	}
	term := highest()
	changes := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return 0, ctx.Err()
		}
		if t := highest(); t > term {
			changes += int(t - term)
			term = t
		}
	}
	return changes, nil
}

// median of v (0 for none).
func median(v []float64) float64 {
	s, _ := summarize(v)
	return s.Median
}
