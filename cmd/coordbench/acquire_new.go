package main

import (
	"context"
	"fmt"
	"time"

	"github.com/coordd/coordd/client"
)

// runAcquireNew: one op is a new lease and a lock on a fresh name in one
// call (client.LockNew: one Raft entry), or, with -two-calls, Grant then
// Lock (two entries, two round trips). The leases made are revoked at the
// end (for at most 30 s; the rest expire by their TTL).
func runAcquireNew(e *env, run int) (Result, error) {
	cfg := e.cfg
	clients, err := e.clients(cfg.clients)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(clients)
	ttl := cfg.ttl
	if ttl == 0 {
		// Outlives the run, so no lease expires while measuring.
		ttl = max(30*time.Second, 2*(cfg.warmup+cfg.duration))
	}
	made := make([][]uint64, len(clients)) // leases made, per worker
	stamp := time.Now().UnixNano()
	how := "LockNew"
	if cfg.twoCalls {
		how = "Grant+Lock"
	}
	e.logf("acquire-new run %d: %d clients (target %s), %s, %s warm-up, %s measured", run, len(clients), e.target(), how, cfg.warmup, cfg.duration)
	cpu := e.watchCPU()
	r := closedLoop(e.ctx, len(clients), cfg.warmup, cfg.duration, cpu, func(ctx context.Context, w, i int) error {
		name := fmt.Sprintf("coordbench/acquire-new/%d/%d/%d", stamp, w, i)
		c := clients[w]
		var res *client.CampaignResult
		if cfg.twoCalls {
			l, err := c.Grant(ctx, ttl)
			if err != nil {
				return fmt.Errorf("grant: %w", err)
			}
			made[w] = append(made[w], l.ID)
			if res, err = c.Lock(ctx, name, l.ID, 0, client.LockOptions{}); err != nil {
				return fmt.Errorf("lock %s: %w", name, err)
			}
		} else {
			var err error
			if res, err = c.LockNew(ctx, name, ttl, 0, client.LockOptions{}); err != nil {
				return fmt.Errorf("lock-new %s: %w", name, err)
			}
			made[w] = append(made[w], res.Lease)
		}
		if !res.Leader || res.Lease == 0 {
			return fmt.Errorf("lock %s: a fresh name, yet not the holder (lease %d, position %d)", name, res.Lease, res.Position)
		}
		return nil
	})
	var all []uint64
	for _, m := range made {
		all = append(all, m...)
	}
	start := time.Now()
	e.revoke(clients[0], all, 30*time.Second)
	e.logf("acquire-new run %d: revoked %d leases in %s", run, len(all), time.Since(start).Round(time.Millisecond))
	if e.ctx.Err() != nil {
		return Result{}, e.ctx.Err()
	}
	if r.firstErr != nil {
		e.logf("acquire-new run %d: %d errors, the first: %v", run, r.errors, r.firstErr)
	}
	wl := fmt.Sprintf("acquire-new clients=%d", cfg.clients)
	if cfg.twoCalls {
		wl += " two-calls"
	}
	wl += e.label()
	return Result{Workload: wl, Run: run, Figures: append(r.figures(), cpu.figures()...), GoalSet: e.goalSet(goalSetIf(cfg.clients == 64, "acquire-new")),
		Params: map[string]any{"clients": cfg.clients, "duration_s": cfg.duration.Seconds(), "two_calls": cfg.twoCalls, "ttl_ms": ttl.Milliseconds(), "target": e.target()}}, nil
}
