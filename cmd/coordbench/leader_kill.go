package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// runLeaderKill starts its own cluster (it must know the pids) and runs
// -rounds rounds: -writers writers Put in a loop (through one client that
// sends to the leader with -target leader; each through one node with rr,
// moving on when it stops answering: see writerPool); after a warm-up the
// Raft leader is SIGKILLed. Measured: kill → a survivor
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

	var newLeader, gaps, restart []time.Duration
	var errs, failovers int
	var rate []float64
	for r := range rounds {
		if e.ctx.Err() != nil {
			return Result{}, e.ctx.Err()
		}
		m, err := leaderKillRound(e, cl, r, warm)
		if err != nil {
			return Result{}, fmt.Errorf("round %d: %w", r, err)
		}
		e.logf("leader-kill run %d round %d: killed %s; new leader after %s; longest write gap %s; %d errors; %d writer failovers; restarted node ready after %s",
			run, r+1, m.killed, m.newLeader.Round(time.Millisecond), m.gap.Round(time.Millisecond), m.errors, m.failovers, m.restartReady.Round(time.Millisecond))
		newLeader = append(newLeader, m.newLeader)
		gaps = append(gaps, m.gap)
		restart = append(restart, m.restartReady)
		errs += m.errors
		failovers += m.failovers
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
		Figure{Key: "failovers", Unit: "count", Value: float64(failovers)},
		Figure{Key: "writes_per_s_before_kill", Unit: "ops/s", Value: median(rate)},
		Figure{Key: "restart_ready_p50_ms", Unit: "ms", Value: ms(percentile(restart, 0.5))},
		Figure{Key: "idle_term_changes", Unit: "count", Value: float64(changes)},
	)
	return Result{Workload: fmt.Sprintf("leader-kill writers=%d", cfg.writers) + e.label(), Run: run, Figures: figs,
		GoalSet: e.goalSet(goalSetIf(cfg.writers == 16, "leader-kill")),
		Params:  map[string]any{"rounds": rounds, "writers": cfg.writers, "idle_s": cfg.idle.Seconds(), "target": e.target()}}, nil
}

// killMeasure is one round of leader-kill.
type killMeasure struct {
	killed                       string
	newLeader, gap, restartReady time.Duration
	errors, failovers            int
	writesPerSec                 float64
}

// writerPool is how leader-kill's writers reach the cluster. With target
// leader: one client of every endpoint, which sends each write to the
// node it believes leads. With rr: one client per node, each given that
// node only, in rr order (from the node after the leader round to the
// leader); writer w starts on node w mod 3 and moves to the next node
// when its node counts as down, as a load balancer or etcd's balancer
// moves off a dead member: a node counts as down for the rest of the round
// once its client's circuit breaker opened (3 failed attempts in a row,
// well under 200 ms after a SIGKILL: connections are refused at once).
// The write in flight then is sent again to the next node (a Put of the
// same key and value: safe to repeat) and counted as a failover, not an
// error.
type writerPool struct {
	cs        []*client.Client
	down      []context.Context // rr only: ended once node k counts as down
	failovers atomic.Int64
	stopWatch func()
}

func newWriterPool(e *env, cl *cluster, leader *node) (*writerPool, error) {
	p := &writerPool{stopWatch: func() {}}
	if e.target() == "leader" {
		c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		p.cs = []*client.Client{c}
		return p, nil
	}
	i := slices.Index(cl.nodes, leader)
	order := append(slices.Clone(cl.nodes[i+1:]), cl.nodes[:i+1]...)
	cancels := make([]context.CancelFunc, len(order))
	for k, n := range order {
		c, err := client.New(e.ctx, client.Config{Endpoints: []string{n.url()}})
		if err != nil {
			for _, cancel := range cancels[:k] {
				cancel()
			}
			p.close()
			return nil, fmt.Errorf("client: %w", err)
		}
		p.cs = append(p.cs, c)
		ctx, cancel := context.WithCancel(context.Background())
		p.down, cancels[k] = append(p.down, ctx), cancel
	}
	watch, stop := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sleepUntil(watch, time.Now().Add(5*time.Millisecond)) {
			for k, c := range p.cs {
				if h := c.Health(); len(h) == 1 && h[0].State == "open" {
					cancels[k]()
				}
			}
		}
		for _, cancel := range cancels {
			cancel()
		}
	}()
	p.stopWatch = func() { stop(); <-done }
	return p, nil
}

// put writes key through writer w's node (*k), moving on to the next node
// while the current one counts as down.
func (p *writerPool) put(ctx context.Context, k *int, key string, val []byte) error {
	if p.down == nil {
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		_, err := p.cs[0].Put(pctx, key, val)
		return err
	}
	var err error
	for range 2 * len(p.cs) {
		if p.down[*k].Err() != nil {
			*k = (*k + 1) % len(p.cs)
			p.failovers.Add(1)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		stop := context.AfterFunc(p.down[*k], cancel)
		_, err = p.cs[*k].Put(pctx, key, val)
		stop()
		cancel()
		if err == nil || p.down[*k].Err() == nil || ctx.Err() != nil {
			return err
		}
	}
	if err == nil {
		err = errors.New("every node counts as down")
	}
	return err
}

func (p *writerPool) close() {
	p.stopWatch()
	closeAll(p.cs)
}

func leaderKillRound(e *env, cl *cluster, round int, warm time.Duration) (killMeasure, error) {
	var m killMeasure
	leader, term, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return m, err
	}
	m.killed = leader.id
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	pool, err := newWriterPool(e, cl, leader)
	if err != nil {
		return m, err
	}
	defer pool.close()
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
			k := w % len(pool.cs)
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				err := pool.put(ctx, &k, fmt.Sprintf("coordbench/leader-kill/%d/%d/%d/%d", stamp, round, w, i), val)
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
	m.failovers = int(pool.failovers.Load())
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
