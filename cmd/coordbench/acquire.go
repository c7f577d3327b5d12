package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coordd/coordd/client"
)

// runAcquire: -clients clients, each with its own lease granted before the
// clock starts; one op locks a fresh lock name with the client's lease (one
// Raft entry, no wait). The leases are revoked at the end, which drops
// their locks.
func runAcquire(e *env, run int) (Result, error) {
	cfg := e.cfg
	clients, err := e.clients(cfg.clients)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(clients)
	// Long enough for the whole run; revoked at the end anyway.
	ttl := max(60*time.Second, 3*(cfg.warmup+cfg.duration))
	leases := make([]uint64, len(clients))
	if err := parallel(len(clients), 64, func(i int) error {
		ctx, cancel := e.bounded(30 * time.Second)
		defer cancel()
		l, err := clients[i].Grant(ctx, ttl)
		if err != nil {
			return fmt.Errorf("grant: %w", err)
		}
		leases[i] = l.ID
		return nil
	}); err != nil {
		return Result{}, err
	}
	defer e.revoke(clients[0], leases, 30*time.Second)

	stamp := time.Now().UnixNano()
	e.logf("acquire run %d: %d clients (target %s), %s warm-up, %s measured", run, len(clients), e.target(), cfg.warmup, cfg.duration)
	cpu := e.watchCPU()
	r := closedLoop(e.ctx, len(clients), cfg.warmup, cfg.duration, cpu, func(ctx context.Context, w, i int) error {
		name := fmt.Sprintf("coordbench/acquire/%d/%d/%d", stamp, w, i)
		res, err := clients[w].Lock(ctx, name, leases[w], 0, client.LockOptions{})
		if err != nil {
			return fmt.Errorf("lock %s: %w", name, err)
		}
		if !res.Leader {
			return fmt.Errorf("lock %s: a fresh name, yet not the holder (position %d)", name, res.Position)
		}
		return nil
	})
	if e.ctx.Err() != nil {
		return Result{}, e.ctx.Err()
	}
	if r.firstErr != nil {
		e.logf("acquire run %d: %d errors, the first: %v", run, r.errors, r.firstErr)
	}
	return Result{Workload: fmt.Sprintf("acquire clients=%d", cfg.clients) + e.label(), Run: run, Figures: append(r.figures(), cpu.figures()...),
		GoalSet: e.goalSet(goalSetIf(cfg.clients == 64, "acquire")),
		Params:  map[string]any{"clients": cfg.clients, "duration_s": cfg.duration.Seconds(), "target": e.target()}}, nil
}

// clients returns the run's next n clients of the cluster under test
// (endpoints by -target: see endpointsFor).
func (e *env) clients(n int) ([]*client.Client, error) {
	out := make([]*client.Client, 0, n)
	for range n {
		c, err := e.newClient()
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func closeAll(cs []*client.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// revoke revokes leases (ids of 0 are skipped) from 64 goroutines, for at
// most timeout; what is left expires on its own. It logs what it could
// not revoke.
func (e *env) revoke(c *client.Client, ids []uint64, timeout time.Duration) {
	// Not e.ctx: an interrupted run still cleans up, briefly.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(ids) > 5000 {
		e.logf("revoking %d leases (for at most %s)", len(ids), timeout)
	}
	var failed int
	var firstErr error
	err := parallel(len(ids), 64, func(i int) error {
		if ids[i] == 0 || ctx.Err() != nil {
			return nil
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		if err := c.Revoke(rctx, ids[i]); err != nil && !isNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		failed, firstErr = 1, err
	}
	if ctx.Err() != nil {
		e.logf("revoke: stopped after %s; the leases left expire by their TTL", timeout)
	} else if failed > 0 {
		e.logf("revoke: %v (the leases left expire by their TTL)", firstErr)
	}
}

// isNotFound reports a lease that is already gone.
func isNotFound(err error) bool { return errors.Is(err, client.ErrLeaseNotFound) }
