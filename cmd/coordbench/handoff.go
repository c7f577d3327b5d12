package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/coordd/coordd/client"
)

// candidate is one side of the handoff: its own client (another process, in
// real life) and a session keeping its lease alive.
type candidate struct {
	c *client.Client
	s *client.Session
}

// runHandoff: two candidates on one election; the holder resigns while
// the other waits in a blocking Campaign. Measured: from the start of the
// Resign call to the waiter's Campaign returning as leader. Two cases,
// alternating round by round: the waiter queued long before
// (-handoff-queued, 200 ms, and seen in the queue), and just before (its Campaign started 0–1 ms before
// the Resign, so it may reach the leader after the resign). The roles swap
// every round. With -target rr each candidate's client talks to one
// follower (rr's first two nodes), with leader both talk to the leader.
func runHandoff(e *env, run int) (Result, error) {
	cfg := e.cfg
	rounds := cfg.rounds
	if rounds == 0 {
		rounds = 500
	}
	var cands [2]candidate
	for i := range cands {
		c, err := e.newClient()
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		ctx, cancel := e.bounded(30 * time.Second)
		s, err := client.NewSession(ctx, c, 30*time.Second)
		cancel()
		if err != nil {
			return Result{}, fmt.Errorf("session: %w", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Close(ctx)
		}()
		cands[i] = candidate{c: c, s: s}
	}
	name := fmt.Sprintf("coordbench/handoff/%d", time.Now().UnixNano())
	ctx, cancel := e.bounded(10 * time.Second)
	first, err := cands[0].c.Campaign(ctx, name, cands[0].s.Lease(), "", 0)
	cancel()
	if err != nil || !first.Leader {
		return Result{}, fmt.Errorf("first campaign on %s: %+v %w", name, first, err)
	}
	holder, token := 0, first.Token

	e.logf("handoff run %d: %d rounds of each case on %s (target %s, long case queued %s before)", run, rounds, name, e.target(), cfg.handoffQueued)
	var long, just, longResign, justResign []time.Duration
	deadline := time.Now().Add(time.Duration(rounds) * (2*time.Second + cfg.handoffQueued)) // far above the expected queued+~10 ms/round
	for r := 0; r < 2*rounds; r++ {
		if e.ctx.Err() != nil {
			return Result{}, e.ctx.Err()
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("handoff: %d rounds not done by the deadline", 2*rounds)
		}
		longCase := r%2 == 0
		took, resign, tok, err := handoffRound(e.ctx, name, cands[holder], cands[1-holder], token, longCase, cfg.handoffQueued)
		if err != nil {
			return Result{}, fmt.Errorf("round %d: %w", r, err)
		}
		if longCase {
			long, longResign = append(long, took), append(longResign, resign)
		} else {
			just, justResign = append(just, took), append(justResign, resign)
		}
		holder, token = 1-holder, tok
		if (r+1)%200 == 0 {
			e.logf("handoff run %d: %d/%d rounds", run, r+1, 2*rounds)
		}
	}
	// The resign call's own latency tells a slow commit from a slow
	// wake-up of the waiter.
	figs := latencyFigures("long.", long)
	figs = append(figs, latencyFigures("just.", just)...)
	figs = append(figs, latencyFigures("long.resign_call_", longResign)[:2]...)
	figs = append(figs, latencyFigures("just.resign_call_", justResign)[:2]...)
	wl, set := "handoff", "handoff"
	if cfg.handoffQueued != 200*time.Millisecond {
		wl, set = fmt.Sprintf("handoff queued=%s", cfg.handoffQueued), ""
	}
	return Result{Workload: wl + e.label(), Run: run, Figures: figs, GoalSet: e.goalSet(set),
		Params: map[string]any{"rounds": rounds, "queued_ms": cfg.handoffQueued.Milliseconds(), "target": e.target()}}, nil
}

// handoffRound: waiter campaigns (blocking), holder resigns; it returns
// the time from the resign call to the waiter leading, how long the resign
// call itself took, and the waiter's token.
func handoffRound(ctx context.Context, name string, holder, waiter candidate, token uint64, longCase bool, queued time.Duration) (took, resign time.Duration, tok uint64, err error) {
	type won struct {
		at  time.Time
		res *client.CampaignResult
		err error
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	done := make(chan won, 1)
	started := time.Now()
	go func() {
		res, err := waiter.c.Campaign(ctx, name, waiter.s.Lease(), "", 10*time.Second)
		done <- won{time.Now(), res, err}
	}()
	if longCase {
		// Queued for sure, and for at least queued.
		for {
			st, err := holder.c.Election(ctx, name)
			if err == nil && slices.ContainsFunc(st.Candidates, func(c client.Candidate) bool { return c.Lease == waiter.s.Lease() }) {
				break
			}
			if ctx.Err() != nil {
				return 0, 0, 0, fmt.Errorf("waiter never queued: %w", ctx.Err())
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Until(started.Add(queued)))
	} else {
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond))))
	}
	t0 := time.Now()
	if _, err := holder.c.Resign(ctx, name, holder.s.Lease(), token); err != nil {
		return 0, 0, 0, fmt.Errorf("resign: %w", err)
	}
	resign = time.Since(t0)
	select {
	case w := <-done:
		if w.err != nil {
			return 0, 0, 0, fmt.Errorf("waiter's campaign: %w", w.err)
		}
		if !w.res.Leader {
			return 0, 0, 0, errors.New("the waiter's campaign returned without leading")
		}
		return w.at.Sub(t0), resign, w.res.Token, nil
	case <-ctx.Done():
		return 0, 0, 0, fmt.Errorf("waiter did not lead: %w", ctx.Err())
	}
}
