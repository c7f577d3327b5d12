package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// millionDefault is the size million holds unless -hold-leases is given.
const millionDefault = 1_000_000

// runMillion holds many leases (1,000,000 unless -hold-leases; -quick's
// 5,000) on its own cluster: granted by 256 concurrent callers, kept alive
// every TTL/3 (TTL -ttl, default 10 s as in keepalive: a period over the
// 5 s lease checkpoint interval would checkpoint every lease through Raft
// each period) with KeepAliveMany in batches of
// client.MaxKeepAliveBatch from the first grant on, then held for -hold.
// Reported: leader RSS and live Go heap (the nodes run with -pprof, and
// coordbench has the leader collect garbage first) before and after, per
// lease; CPU of the
// three members during the hold (keepalives only); leases found gone
// during the run and at the end (unintended expiries: the goal is 0); the
// Raft snapshot of the full state (size, time to write, on the leader:
// the nodes run with -snapshot-interval 10s so that one is taken during the
// hold) and a backup streamed from the leader's GET /v1/snapshot
// (client.SaveSnapshot: size, time); a
// follower SIGKILLed and restarted: time to /readyz 200.
//
// With -project-from A,B it measures sizes A and B instead (each on its own
// cluster), reports both, and reports -hold-leases' figures projected
// linearly from them (workload "... projected"): extensive figures (RSS,
// heap, CPU, snapshot, restart) on the line through the two points, the
// memory per lease as the slope between them, expiries as the sum of both
// runs'.
func runMillion(e *env, run int) (Result, error) {
	target := millionDefault
	if e.cfg.scale.holdLeasesSet || e.cfg.quick {
		target = e.cfg.holdLeases
	}
	if len(e.cfg.scale.projectFrom) == 0 {
		r, _, err := millionOnce(e, run, target)
		return r, err
	}
	a, b := e.cfg.scale.projectFrom[0], e.cfg.scale.projectFrom[1]
	ra, fa, err := millionOnce(e, run, a)
	if err != nil {
		return Result{}, err
	}
	e.rep.add(ra)
	rb, fb, err := millionOnce(e, run, b)
	if err != nil {
		return Result{}, err
	}
	e.rep.add(rb)
	return projectMillion(run, target, a, b, fa, fb), nil
}

// millionFigs are the numbers of one measured size, for the projection.
type millionFigs map[string]float64

// projectMillion projects the figures of sizes a and b to n.
func projectMillion(run, n, a, b int, fa, fb millionFigs) Result {
	// A line through two noisy points can fall with the size (a snapshot
	// that happened to be slower at the smaller size) and even below 0;
	// no figure here shrinks as leases are added, so the projection is
	// at least the larger size's measurement.
	line := func(k string) float64 { return max(fa[k]+(fb[k]-fa[k])/float64(b-a)*float64(n-a), fb[k]) }
	slope := func(k string) float64 { return (fb[k] - fa[k]) / float64(b-a) }
	var figs []Figure
	for _, k := range []struct{ key, unit string }{
		{"grant_s", "s"}, {"rss_after_mib", "MiB"}, {"heap_after_mib", "MiB"},
		{"keepalive_cpu_pct_one_core", "%"}, {"keepalive_cpu_pct_leader", "%"},
		{"snapshot_mib", "MiB"}, {"snapshot_ms", "ms"}, {"backup_mib", "MiB"}, {"backup_ms", "ms"},
		{"restart_ready_ms", "ms"},
	} {
		_, okA := fa[k.key]
		_, okB := fb[k.key]
		if !okA || !okB {
			figs = append(figs, naFig(k.key, k.unit))
			continue
		}
		figs = append(figs, Figure{Key: k.key, Unit: k.unit, Value: line(k.key)})
	}
	figs = append(figs,
		Figure{Key: "rss_bytes_per_lease", Unit: "B", Value: slope("rss_after_mib") * (1 << 20)},
		Figure{Key: "heap_bytes_per_lease", Unit: "B", Value: slope("heap_after_mib") * (1 << 20)},
		Figure{Key: "expired", Unit: "count", Value: fa["expired"] + fb["expired"]},
		Figure{Key: "not_found_during_run", Unit: "count", Value: fa["not_found_during_run"] + fb["not_found_during_run"]},
	)
	return Result{Workload: fmt.Sprintf("million leases=%d projected from %d,%d", n, a, b), Run: run, Figures: figs,
		GoalSet: goalSetIf(n == millionDefault, "million"),
		Params:  map[string]any{"leases": n, "projected_from": []int{a, b}, "note": "linear projection from two measured sizes; expiries are the sum of both runs'"}}
}

// millionOnce measures one size on a fresh cluster.
func millionOnce(e *env, run, n int) (Result, millionFigs, error) {
	cfg := e.cfg
	ttl := cfg.ttl
	if ttl == 0 {
		// TTL/3 under the 5 s lease checkpoint interval, as in keepalive:
		// a lease not renewed for that long is checkpointed through Raft.
		ttl = 10 * time.Second
	}
	period := ttl / 3
	size := min(client.MaxKeepAliveBatch, n)
	nb := (n + size - 1) / size
	e.logf("million run %d: %d leases of %s, renewed every %s in %d batches of %d; starting an own cluster", run, n, ttl, period.Round(time.Millisecond), nb, size)
	cl, err := startScaleCluster(e, 0, "-snapshot-interval", "10s", "-pprof")
	if err != nil {
		return Result{}, nil, err
	}
	defer cl.stop()
	leader, _, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return Result{}, nil, err
	}
	var follower *node
	for _, nd := range cl.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	memBefore := sampleMem(e.ctx, leader, true)
	const granters, grantClients = 256, 8
	cs := make([]*client.Client, 0, grantClients)
	for range grantClients {
		c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
		if err != nil {
			closeAll(cs)
			return Result{}, nil, fmt.Errorf("client: %w", err)
		}
		cs = append(cs, c)
	}
	defer closeAll(cs)
	kc := cs[0] // the keepalives' client

	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// ids[i] is 0 until granted; a batch is renewed as far as granted (a
	// slow grant phase must not let its first leases expire).
	ids := make([]atomic.Uint64, n)
	batchIDs := func(lo, hi int) []uint64 {
		out := make([]uint64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			if id := ids[i].Load(); id != 0 {
				out = append(out, id)
			}
		}
		return out
	}
	var notFound, failedCalls atomic.Int64
	var firstErr atomic.Value
	var measureFrom, measureTo atomic.Int64 // unix ns; batch latencies in [from, to)
	t0 := time.Now()
	workers := min(nb, 16)
	lats := make([][]time.Duration, workers)
	renewed := make([]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 1_000_000; k++ {
				for b := w; b < nb; b += workers {
					at := t0.Add(time.Duration(k)*period + time.Duration(b)*period/time.Duration(nb))
					if !sleepUntil(ctx, at) {
						return
					}
					if time.Since(at) > period {
						continue // a slot missed by more than a period is dropped, not caught up
					}
					batch := batchIDs(b*size, min((b+1)*size, n))
					if len(batch) == 0 {
						continue
					}
					s := time.Now()
					nf, err := renew(ctx, kc, batch)
					took := time.Since(s)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						failedCalls.Add(1)
						firstErr.CompareAndSwap(nil, err)
						continue
					}
					notFound.Add(int64(nf))
					if from, to := measureFrom.Load(), measureTo.Load(); from != 0 && s.UnixNano() >= from && s.UnixNano() < to {
						lats[w] = append(lats[w], took)
						renewed[w] += int64(len(batch))
					}
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	var grantFailed atomic.Int64
	lastLog := time.Now()
	var logMu sync.Mutex
	var done atomic.Int64
	grantErr := parallel(n, granters, func(i int) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for attempt := 0; ; attempt++ {
			gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
			l, err := cs[i%grantClients].Grant(gctx, ttl)
			gcancel()
			if err == nil {
				ids[i].Store(l.ID)
				break
			}
			grantFailed.Add(1)
			if attempt == 2 || ctx.Err() != nil {
				return fmt.Errorf("grant: %w", err)
			}
		}
		if d := done.Add(1); d%50_000 == 0 {
			logMu.Lock()
			if time.Since(lastLog) > 5*time.Second {
				e.logf("million run %d: %d granted (%.0f/s)", run, d, float64(d)/time.Since(t0).Seconds())
				lastLog = time.Now()
			}
			logMu.Unlock()
		}
		return nil
	})
	grantTook := time.Since(t0)
	if grantErr != nil {
		return Result{}, nil, fmt.Errorf("%d grants failed: %w", grantFailed.Load(), grantErr)
	}
	e.logf("million run %d: %d granted in %s (%.0f/s, %d failed attempts retried); holding for %s", run, n,
		grantTook.Round(time.Millisecond), float64(n)/grantTook.Seconds(), grantFailed.Load(), cfg.scale.hold)
	st, err := getStatus(ctx, leader.url(), 5*time.Second)
	if err != nil {
		return Result{}, nil, err
	}
	fullIndex := st.AppliedIndex

	// The CPU window: the hold, from one period after the last grant (every
	// batch in its rhythm), at least one period long.
	holdEnd := time.Now().Add(cfg.scale.hold)
	from := time.Now().Add(period)
	if holdEnd.Sub(from) < period {
		holdEnd = from.Add(period)
	}
	measureTo.Store(holdEnd.UnixNano())
	measureFrom.Store(from.UnixNano())
	nodes := procsOf(cl, leader)
	if !sleepUntil(ctx, from) {
		return Result{}, nil, e.ctx.Err()
	}
	cpu0, w0 := sampleCPU(nodes), time.Now()
	// The snapshot of the whole state, taken by -snapshot-interval during
	// the hold (or by the threshold after the last grant).
	var snapMiB, snapMs float64
	snapOK := false
	for time.Now().Before(holdEnd) && ctx.Err() == nil {
		if s := snapshotOf(ctx, leader.url()); s != nil && s.Index >= fullIndex {
			snapMiB, snapMs, snapOK = mib(s.SizeBytes), float64(s.DurationMS), true
			break
		}
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
	}
	if !sleepUntil(ctx, holdEnd) {
		return Result{}, nil, e.ctx.Err()
	}
	cpu1, w1 := sampleCPU(nodes), time.Now()
	memAfter := sampleMem(e.ctx, leader, true)
	if !snapOK {
		// Not seen during the hold: wait a little longer, keepalives go on.
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if s := snapshotOf(ctx, leader.url()); s != nil && s.Index >= fullIndex {
				snapMiB, snapMs, snapOK = mib(s.SizeBytes), float64(s.DurationMS), true
				break
			}
			sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
		}
	}
	window := w1.Sub(w0).Seconds()

	// A backup of the whole state, streamed from the leader.
	bs := time.Now()
	_, backupBytes, backupErr := kc.SaveSnapshot(ctx, io.Discard)
	backupTook := time.Since(bs)
	if backupErr != nil {
		e.logf("million run %d: backup: %v", run, backupErr)
	}

	// A follower SIGKILLed and restarted: time to ready.
	follower.kill()
	rs := time.Now()
	if err := follower.start(); err != nil {
		return Result{}, nil, err
	}
	_, ready, err := timeToReady(e.ctx, follower, rs, 5*time.Minute)
	if err != nil {
		return Result{}, nil, err
	}
	e.logf("million run %d: follower %s ready %s after its restart", run, follower.id, ready.Round(time.Millisecond))

	// Every lease must still exist: one more renewal of all of them, with
	// the workers stopped.
	cancel()
	wg.Wait()
	expired := 0
	for lo := 0; lo < n; lo += size {
		nf, err := renew(e.ctx, kc, batchIDs(lo, min(lo+size, n)))
		if err != nil {
			return Result{}, nil, fmt.Errorf("final check of the leases: %w", err)
		}
		expired += nf
	}
	if v := failedCalls.Load(); v > 0 {
		e.logf("million run %d: %d keepalive calls failed, the first: %v", run, v, firstErr.Load())
	}

	var all []time.Duration
	var renewals int64
	for w := range workers {
		all = append(all, lats[w]...)
		renewals += renewed[w]
	}
	f := millionFigs{
		"grant_s": grantTook.Seconds(), "expired": float64(expired), "not_found_during_run": float64(notFound.Load()),
		"restart_ready_ms": ms(ready),
	}
	figs := []Figure{
		{Key: "leases", Unit: "count", Value: float64(n)},
		{Key: "grant_per_s", Unit: "1/s", Value: float64(n) / grantTook.Seconds()},
		{Key: "grant_s", Unit: "s", Value: grantTook.Seconds()},
	}
	if memBefore.ok && memAfter.ok {
		f["rss_after_mib"], f["heap_after_mib"] = memAfter.rss/(1<<20), memAfter.heap/(1<<20)
		figs = append(figs,
			Figure{Key: "rss_before_mib", Unit: "MiB", Value: memBefore.rss / (1 << 20)},
			Figure{Key: "rss_after_mib", Unit: "MiB", Value: memAfter.rss / (1 << 20)},
			Figure{Key: "heap_after_mib", Unit: "MiB", Value: memAfter.heap / (1 << 20)},
			Figure{Key: "rss_bytes_per_lease", Unit: "B", Value: (memAfter.rss - memBefore.rss) / float64(n)},
			Figure{Key: "heap_bytes_per_lease", Unit: "B", Value: (memAfter.heap - memBefore.heap) / float64(n)})
	} else {
		figs = append(figs, naFig("rss_after_mib", "MiB"), naFig("rss_bytes_per_lease", "B"), naFig("heap_bytes_per_lease", "B"))
	}
	if cpu := perNodeCPU(cpu0, cpu1, window); cpu != nil {
		total, lead := 0.0, 0.0
		for i, p := range cpu {
			total += p
			if nodes[i].leader {
				lead = p
			}
		}
		f["keepalive_cpu_pct_one_core"], f["keepalive_cpu_pct_leader"] = total, lead
		figs = append(figs, Figure{Key: "keepalive_cpu_pct_one_core", Unit: "%", Value: total},
			Figure{Key: "keepalive_cpu_pct_leader", Unit: "%", Value: lead})
	} else {
		figs = append(figs, naFig("keepalive_cpu_pct_one_core", "%"), naFig("keepalive_cpu_pct_leader", "%"))
	}
	figs = append(figs, latencyFigures("batch_", all)...)
	figs = append(figs, Figure{Key: "renewals_per_s", Unit: "1/s", Value: float64(renewals) / window})
	if snapOK {
		f["snapshot_mib"], f["snapshot_ms"] = snapMiB, snapMs
		figs = append(figs, Figure{Key: "snapshot_mib", Unit: "MiB", Value: snapMiB}, Figure{Key: "snapshot_ms", Unit: "ms", Value: snapMs})
	} else {
		e.logf("million run %d: no snapshot of the whole state seen on the leader", run)
		figs = append(figs, naFig("snapshot_mib", "MiB"), naFig("snapshot_ms", "ms"))
	}
	if backupErr == nil {
		f["backup_mib"], f["backup_ms"] = mib(backupBytes), ms(backupTook)
		figs = append(figs, Figure{Key: "backup_mib", Unit: "MiB", Value: mib(backupBytes)}, Figure{Key: "backup_ms", Unit: "ms", Value: ms(backupTook)})
	} else {
		figs = append(figs, naFig("backup_mib", "MiB"), naFig("backup_ms", "ms"))
	}
	figs = append(figs,
		Figure{Key: "restart_ready_ms", Unit: "ms", Value: ms(ready)},
		Figure{Key: "not_found_during_run", Unit: "count", Value: float64(notFound.Load())},
		Figure{Key: "expired", Unit: "count", Value: float64(expired)},
		Figure{Key: "failed_calls", Unit: "count", Value: float64(failedCalls.Load())},
	)
	// How much of the keepalive load went through Raft: leases checkpointed
	// (not renewed for -lease-checkpoint-interval) and the entries that
	// renewed them. Counted by the leader, as long as it led.
	lm, err := scrapeMetrics(e.ctx, leader.url(), "coordd_lease_checkpointed_total", "coordd_lease_renew_commits_total", "coordd_lease_renewed_total")
	if err != nil {
		e.logf("million run %d: %v", run, err)
	}
	e.logf("million run %d: the leader checkpointed %.0f leases and renewed %.0f of them in %.0f entries", run,
		lm["coordd_lease_checkpointed_total"], lm["coordd_lease_renewed_total"], lm["coordd_lease_renew_commits_total"])
	figs = append(figs,
		Figure{Key: "checkpointed", Unit: "count", Value: lm["coordd_lease_checkpointed_total"]},
		Figure{Key: "renew_commits", Unit: "count", Value: lm["coordd_lease_renew_commits_total"]})
	return Result{Workload: fmt.Sprintf("million leases=%d", n), Run: run, Figures: figs,
		GoalSet: goalSetIf(n == millionDefault, "million"),
		Params: map[string]any{"leases": n, "ttl_ms": ttl.Milliseconds(), "batch": size, "hold_s": cfg.scale.hold.Seconds(),
			"cpu_window_s": window}}, f, nil
}
