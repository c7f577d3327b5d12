package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// runKeepalive holds -leases leases of -ttl (10 s) and renews each every
// TTL/3 with KeepAliveMany in batches of -batch (or, with -batch 1, one
// KeepAlive per lease), the batches spread evenly over the period. The
// renewals start while the leases are still being granted, so that none
// expires before the measured window, which starts one period after the
// last grant and lasts -duration. With -target rr the renewals of worker w
// go through node w mod 3 (one client per node), with leader through one
// client that sends them to the leader. Reported: batch latency, renewals/s, CPU
// of the three nodes over the window (% of one core, from /proc/PID/stat;
// loopback endpoints only), ids the leader did not know during the run,
// and, after the run, leases of ours that no longer exist.
func runKeepalive(e *env, run int) (Result, error) {
	cfg := e.cfg
	ttl := cfg.ttl
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	period := ttl / 3
	n, size := cfg.leases, min(cfg.batch, cfg.leases)
	nb := (n + size - 1) / size
	cs, err := e.clients(e.spread())
	if err != nil {
		return Result{}, err
	}
	defer closeAll(cs)
	c := cs[0] // grants spread over cs too; revoke and list
	nodes, cpuNote := e.nodePIDs()
	if cpuNote != "" {
		e.logf("keepalive: CPU n/a: %s", cpuNote)
	}

	ids := make([]uint64, n)
	granted := make([]atomic.Int32, nb) // leases granted, per batch
	var notFound, sendErrs atomic.Int64
	var firstSendErr atomic.Value

	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	t0 := time.Now()
	var measureFrom, measureTo atomic.Int64 // unix ns; 0 until known
	// Each worker renews its batches in turn, so one slow answer delays
	// the worker's later batches: with 64 workers and 10,000 single
	// renewals per TTL/3, answers slower than ~20 ms on average (a profiled
	// or loaded cluster) made the schedule slip until leases expired that
	// the cluster had never been asked to renew in time. 256 workers keep
	// the schedule up to ~80 ms per answer.
	workers := min(nb, 256)
	lats := make([][]time.Duration, workers)
	sent := make([]int, workers) // lease renewals in the window
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 1_000_000; k++ {
				for b := w; b < nb; b += workers {
					at := t0.Add(time.Duration(k)*period + time.Duration(b)*period/time.Duration(nb))
					if to := measureTo.Load(); to != 0 && at.UnixNano() >= to {
						return
					}
					if !sleepUntil(ctx, at) {
						return
					}
					lo, hi := b*size, min((b+1)*size, n)
					if int(granted[b].Load()) < hi-lo {
						continue // not all granted yet
					}
					s := time.Now()
					nf, err := renew(ctx, cs[w%len(cs)], ids[lo:hi])
					took := time.Since(s)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						sendErrs.Add(1)
						firstSendErr.CompareAndSwap(nil, err)
						continue
					}
					notFound.Add(int64(nf))
					if from := measureFrom.Load(); from != 0 && s.UnixNano() >= from {
						lats[w] = append(lats[w], took)
						sent[w] += hi - lo
					}
				}
			}
		}()
	}

	e.logf("keepalive run %d: granting %d leases of %s (renewed every %s in %d batches of %d, target %s)", run, n, ttl, period.Round(time.Millisecond), nb, size, e.target())
	grantErr := parallel(n, 64, func(i int) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
		defer gcancel()
		l, err := cs[i%len(cs)].Grant(gctx, ttl)
		if err != nil {
			return fmt.Errorf("grant: %w", err)
		}
		ids[i] = l.ID
		granted[i/size].Add(1)
		return nil
	})
	grantTook := time.Since(t0)
	defer func() {
		cancel()
		wg.Wait()
		e.revoke(c, ids, 20*time.Second)
	}()
	if grantErr != nil {
		return Result{}, grantErr
	}
	// The window starts at a period boundary one full period after the
	// last grant: every batch is then in its steady rhythm.
	k := int64(grantTook/period) + 2
	from := t0.Add(time.Duration(k) * period)
	to := from.Add(cfg.duration)
	measureFrom.Store(from.UnixNano())
	measureTo.Store(to.UnixNano())
	e.logf("keepalive run %d: granted in %s (%.0f/s); measuring %s from %s on", run, grantTook.Round(time.Millisecond),
		float64(n)/grantTook.Seconds(), cfg.duration, from.Sub(t0).Round(time.Millisecond))

	if !sleepUntil(ctx, from) {
		return Result{}, e.ctx.Err()
	}
	before := sampleCPU(nodes)
	if !sleepUntil(ctx, to) {
		return Result{}, e.ctx.Err()
	}
	after := sampleCPU(nodes)
	wg.Wait() // the workers stop at the end of the window
	window := to.Sub(from).Seconds()

	// Every lease must still exist.
	lctx, lcancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer lcancel()
	list, err := c.Leases(lctx)
	if err != nil {
		return Result{}, fmt.Errorf("list leases after the run: %w", err)
	}
	alive := make(map[uint64]bool, len(list))
	for _, l := range list {
		alive[l.ID] = true
	}
	expired := 0
	for _, id := range ids {
		if !alive[id] {
			expired++
		}
	}
	if v := sendErrs.Load(); v > 0 {
		e.logf("keepalive run %d: %d renewal calls failed, the first: %v", run, v, firstSendErr.Load())
	}

	var all []time.Duration
	renewals := 0
	for w := range workers {
		all = append(all, lats[w]...)
		renewals += sent[w]
	}
	figs := latencyFigures("batch_", all)
	figs = append(figs, Figure{Key: "renewals_per_s", Unit: "1/s", Value: float64(renewals) / window})
	figs = append(figs, cpuFigures(nodes, before, after, window)...)
	figs = append(figs,
		Figure{Key: "not_found_during_run", Unit: "count", Value: float64(notFound.Load())},
		Figure{Key: "expired", Unit: "count", Value: float64(expired)},
		Figure{Key: "failed_calls", Unit: "count", Value: float64(sendErrs.Load())},
		Figure{Key: "grant_per_s", Unit: "1/s", Value: float64(n) / grantTook.Seconds()},
	)
	// The goals of 10,000 leases of 10 s: single calls, batches (of
	// any size), and, for other counts, only that none expires.
	set := "keepalive-hold"
	switch {
	case n == 10000 && ttl == 10*time.Second && size == 1:
		set = "keepalive-single"
	case n == 10000 && ttl == 10*time.Second:
		set = "keepalive"
	}
	return Result{Workload: fmt.Sprintf("keepalive leases=%d batch=%d", n, size) + e.label(), Run: run, Figures: figs, GoalSet: e.goalSet(set),
		Params: map[string]any{"leases": n, "batch": size, "ttl_ms": ttl.Milliseconds(), "duration_s": cfg.duration.Seconds(), "target": e.target()}}, nil
}

// renew renews ids with one KeepAliveMany, or one KeepAlive when there is
// one id, and returns how many the leader did not know.
func renew(ctx context.Context, c *client.Client, ids []uint64) (notFound int, err error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if len(ids) == 1 {
		_, err := c.KeepAlive(ctx, ids[0])
		if errors.Is(err, client.ErrLeaseNotFound) {
			return 1, nil
		}
		if err != nil {
			return 0, fmt.Errorf("keepalive: %w", err)
		}
		return 0, nil
	}
	res, err := c.KeepAliveMany(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("keepalive of %d leases: %w", len(ids), err)
	}
	return len(res.NotFound), nil
}

// sleepUntil sleeps until t, or returns false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
