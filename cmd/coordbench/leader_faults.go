package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/client"
)

// leaderFault is one fault of leader-faults: it starts on the Raft
// leader, holds for a while, and heals.
type leaderFault struct {
	name string
	// hold is how long the fault lasts.
	hold time.Duration
	// start begins the fault on n; heal ends it (and restarts a killed
	// node).
	start func(cl *cluster, n *node) error
	heal  func(cl *cluster, n *node) error
}

func stall(d time.Duration) leaderFault {
	return leaderFault{
		name:  fmt.Sprintf("stall-%gs", d.Seconds()),
		hold:  d,
		start: func(_ *cluster, n *node) error { return signalNode(n, syscall.SIGSTOP) },
		heal:  func(_ *cluster, n *node) error { return signalNode(n, syscall.SIGCONT) },
	}
}

func signalNode(n *node, sig syscall.Signal) error {
	pid := n.pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", n.id)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%v %s: %w", sig, n.id, err)
	}
	return nil
}

// leaderFaults are the faults of the mode, in order.
func leaderFaults(longStall time.Duration) []leaderFault {
	return []leaderFault{
		stall(5 * time.Second),
		stall(longStall),
		{
			// Cut off from both peers (Raft through the proxies); clients
			// still reach it, as a leader behind a broken switch port of
			// the cluster network would be.
			name:  "isolate-5s",
			hold:  5 * time.Second,
			start: func(cl *cluster, n *node) error { return cl.net.Isolate(n.id) },
			heal:  func(cl *cluster, _ *node) error { cl.net.Heal(); return nil },
		},
		{
			name:  "kill",
			hold:  5 * time.Second, // restarted after
			start: func(_ *cluster, n *node) error { n.kill(); return nil },
			heal:  func(_ *cluster, n *node) error { return n.start() },
		},
	}
}

// sessionTTLs are the TTLs of the sessions each trial opens, 20 of each.
var sessionTTLs = []time.Duration{3 * time.Second, time.Second}

const sessionsPerTTL = 20

// runLeaderFaults starts its own cluster, with Raft through loopback
// proxies, and runs -rounds trials of each fault of the Raft leader: a
// 5 s stall (SIGSTOP, then SIGCONT), a -long-stall stall (60 s), an
// isolation from both peers for 5 s, a SIGKILL (restarted 5 s later).
// Each trial opens, through one new client, 20 Sessions with TTL 3 s and
// 20 with TTL 1 s, lets them settle for a second, applies the fault, heals
// it, waits until every node is ready plus a little more than the longest
// TTL, and counts the sessions lost (Done closed) and the sessions that
// believe they live while the leader no longer knows their lease. A
// quorum stays healthy throughout, so every loss is the client's or the
// server's fault.
func runLeaderFaults(e *env, run int) (Result, error) {
	cfg := e.cfg
	trials := cfg.rounds
	if trials == 0 {
		trials = 3
	}
	e.logf("leader-faults run %d: starting an own cluster (Raft through proxies)", run)
	bin, err := coorddBinary(cfg.coordd, cfg.coorddSet)
	if err != nil {
		return Result{}, err
	}
	cl, err := startCluster(e.ctx, clusterOptions{bin: bin, extraArgs: cfg.nodeFlags, proxied: true})
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	var figs []Figure
	params := map[string]any{"trials": trials, "sessions_per_ttl": sessionsPerTTL, "long_stall_s": cfg.longStall.Seconds()}
	for _, f := range leaderFaults(cfg.longStall) {
		if len(cfg.faults) > 0 && !slices.Contains(cfg.faults, f.name) {
			continue
		}
		lost := make([]int, len(sessionTTLs))
		unnoticed, trialsWithLoss := 0, 0
		for tr := range trials {
			if e.ctx.Err() != nil {
				return Result{}, e.ctx.Err()
			}
			l, u, victim, why, err := leaderFaultTrial(e, cl, f)
			if err != nil {
				return Result{}, fmt.Errorf("%s trial %d: %w", f.name, tr+1, err)
			}
			any := u > 0
			for i := range l {
				lost[i] += l[i]
				any = any || l[i] > 0
			}
			if any {
				trialsWithLoss++
			}
			unnoticed += u
			e.logf("leader-faults run %d: %s trial %d/%d on %s: sessions lost: TTL 3s %d/%d, TTL 1s %d/%d; lease gone while the session believed it held: %d%s",
				run, f.name, tr+1, trials, victim, l[0], sessionsPerTTL, l[1], sessionsPerTTL, u, why)
		}
		for i, ttl := range sessionTTLs {
			figs = append(figs, Figure{Key: fmt.Sprintf("%s.ttl%s_lost", f.name, ttl), Unit: "count", Value: float64(lost[i])})
		}
		figs = append(figs,
			Figure{Key: f.name + ".trials_with_loss", Unit: "count", Value: float64(trialsWithLoss)},
			Figure{Key: f.name + ".unnoticed", Unit: "count", Value: float64(unnoticed)})
	}
	return Result{Workload: fmt.Sprintf("leader-faults trials=%d sessions=%dx%d", trials, len(sessionTTLs), sessionsPerTTL),
		Run: run, Figures: figs, GoalSet: "leader-faults", Params: params}, nil
}

// leaderFaultTrial runs one trial of f and returns the sessions lost per
// TTL, the sessions alive whose lease the cluster no longer has, and the
// node the fault hit.
func leaderFaultTrial(e *env, cl *cluster, f leaderFault) (lost []int, unnoticed int, victim, why string, err error) {
	if err := cl.allReady(e.ctx, 60*time.Second); err != nil {
		return nil, 0, "", "", err
	}
	c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return nil, 0, "", "", fmt.Errorf("client: %w", err)
	}
	defer c.Close()
	type sess struct {
		ttl    int
		s      *client.Session
		lostAt time.Time
	}
	var sessions []sess
	var lostMu sync.Mutex
	lostAt := map[*client.Session]time.Time{}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Add(1)
			go func() { defer wg.Done(); _ = s.s.Close(ctx) }()
		}
		wg.Wait()
	}()
	for i, ttl := range sessionTTLs {
		for range sessionsPerTTL {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			s, err := client.NewSession(ctx, c, ttl)
			cancel()
			if err != nil {
				return nil, 0, "", "", fmt.Errorf("session: %w", err)
			}
			sessions = append(sessions, sess{ttl: i, s: s})
			go func() {
				<-s.Done()
				lostMu.Lock()
				lostAt[s] = time.Now()
				lostMu.Unlock()
			}()
		}
	}
	// A few keepalives: the client knows who leads.
	if err := sleepCtx(e.ctx, 1500*time.Millisecond); err != nil {
		return nil, 0, "", "", err
	}
	leader, _, err := cl.leaderNode(e.ctx, 10*time.Second)
	if err != nil {
		return nil, 0, "", "", err
	}
	victim = leader.id
	faultAt := time.Now()
	if err := f.start(cl, leader); err != nil {
		return nil, 0, victim, "", err
	}
	held := sleepCtx(e.ctx, f.hold)
	if err := f.heal(cl, leader); err != nil {
		return nil, 0, victim, "", err
	}
	if held != nil {
		return nil, 0, victim, "", held
	}
	if err := cl.allReady(e.ctx, 60*time.Second); err != nil {
		return nil, 0, victim, "", err
	}
	// A lease that was lost shows up within its TTL; wait a little more
	// than the longest.
	if err := sleepCtx(e.ctx, slices.Max(sessionTTLs)+500*time.Millisecond); err != nil {
		return nil, 0, victim, "", err
	}
	lost = make([]int, len(sessionTTLs))
	lostMu.Lock()
	for i := range sessions {
		sessions[i].lostAt = lostAt[sessions[i].s]
	}
	lostMu.Unlock()
	for _, s := range sessions {
		if s.s.Err() != nil {
			lost[s.ttl]++
			if why == "" {
				at := s.lostAt
				if at.IsZero() { // Done closed a moment ago: at its safe deadline
					at = s.s.Deadline()
				}
				why = fmt.Sprintf(" (first loss, %s into the fault: %v)", at.Sub(faultAt).Round(time.Millisecond), s.s.Err())
			}
			continue
		}
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		_, err := c.TimeToLive(ctx, s.s.Lease())
		cancel()
		switch {
		case errors.Is(err, client.ErrLeaseNotFound) && s.s.Err() == nil:
			unnoticed++
		case err != nil:
			// Not checked is not fine: count it as unnoticed, and say why.
			unnoticed++
			if why == "" {
				why = fmt.Sprintf(" (a live session's lease could not be read back: %v)", err)
			}
		}
	}
	return lost, unnoticed, victim, why, nil
}

// allReady waits until every node answers /readyz 200 (a restarted node
// counts only once ready).
func (c *cluster) allReady(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	for _, n := range c.nodes {
		if _, err := n.waitReady(ctx, start, timeout); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
