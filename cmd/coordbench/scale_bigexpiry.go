package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// runBigExpiry starts its own cluster and, twice, attaches -big-locks locks
// and -big-keys keys (plus one marker key) to one lease of -big-ttl-ms,
// kept alive meanwhile, while a probe sends small requests at -probe-rate
// a second (open loop, at most -probe-inflight at once; half puts of a few
// keys, half linearizable gets). Then the lease is released: first by
// expiry (its keepalives stop), then, with a fresh lease loaded the same
// way, by a revoke call. The release is seen by a blocking query on the
// marker key. Reported per variant: the probe's longest latency among the
// requests started from the trigger (keepalives stopped, or revoke sent)
// to 2 s after the release was seen (max_stall_ms; the goal is ≤ 50 ms),
// its p99, the longest gap between probe answers in that window, the
// probe's longest latency among the requests started and answered in the
// 2 s before the trigger (baseline), and
// the time to release; max_stall_ms is the worse of the two variants.
func runBigExpiry(e *env, run int) (Result, error) {
	sc := e.cfg.scale
	e.logf("big-expiry run %d: starting an own cluster", run)
	cl, err := startScaleCluster(e, 0)
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	leader, _, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return Result{}, err
	}
	c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	defer c.Close()
	pc, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	defer pc.Close()

	var figs []Figure
	worst := 0.0
	var probeErrs float64
	for _, variant := range []string{"expire", "revoke"} {
		v, err := bigRelease(e, run, variant, leader.url(), c, pc)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", variant, err)
		}
		worst = max(worst, v.maxStall)
		probeErrs += float64(v.errors)
		figs = append(figs,
			Figure{Key: variant + ".max_stall_ms", Unit: "ms", Value: v.maxStall},
			Figure{Key: variant + ".p99_ms", Unit: "ms", Value: v.p99},
			Figure{Key: variant + ".max_gap_ms", Unit: "ms", Value: v.maxGap},
			Figure{Key: variant + ".baseline_max_ms", Unit: "ms", Value: v.baselineMax},
			Figure{Key: variant + ".release_ms", Unit: "ms", Value: v.release},
			Figure{Key: variant + ".load_s", Unit: "s", Value: v.load.Seconds()},
		)
		if variant == "revoke" {
			figs = append(figs, Figure{Key: "revoke.call_ms", Unit: "ms", Value: v.call})
		}
	}
	figs = append([]Figure{{Key: "max_stall_ms", Unit: "ms", Value: worst}}, figs...)
	figs = append(figs, Figure{Key: "probe_errors", Unit: "count", Value: probeErrs})
	return Result{Workload: fmt.Sprintf("big-expiry locks=%d keys=%d", sc.bigLocks, sc.bigKeys), Run: run, Figures: figs,
		GoalSet: goalSetIf(sc.bigLocks == 10000 && sc.bigKeys == 10000, "big-expiry"),
		Params: map[string]any{"locks": sc.bigLocks, "keys": sc.bigKeys, "ttl_ms": sc.bigLeaseMs, "probe_rate": sc.probeRate,
			"note": "max_stall_ms: longest small request started between the trigger and 2 s after the release"}}, nil
}

// bigVariant is what one release measured (milliseconds).
type bigVariant struct {
	maxStall, p99, maxGap, baselineMax, release, call float64
	load                                              time.Duration
	errors                                            int
}

// probeOp is one small request of the probe.
type probeOp struct {
	start, end time.Time
	err        bool
}

// bigRelease loads one lease and releases it (variant expire or revoke);
// leaderURL serves the blocking query that sees the release.
func bigRelease(e *env, run int, variant, leaderURL string, c, pc *client.Client) (bigVariant, error) {
	sc := e.cfg.scale
	ttl := time.Duration(sc.bigLeaseMs) * time.Millisecond
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		return bigVariant{}, fmt.Errorf("grant: %w", err)
	}
	// Keepalives until the trigger; lastAck is the last acknowledged one.
	kctx, stopKeepalive := context.WithCancel(ctx)
	var lastAck atomic.Int64
	lastAck.Store(time.Now().UnixNano())
	var kwg sync.WaitGroup
	kwg.Add(1)
	go func() {
		defer kwg.Done()
		for sleepUntil(kctx, time.Now().Add(ttl/4)) {
			octx, ocancel := context.WithTimeout(kctx, ttl/2)
			_, err := c.KeepAlive(octx, l.ID)
			ocancel()
			if err == nil {
				lastAck.Store(time.Now().UnixNano())
			}
		}
	}()
	defer func() { stopKeepalive(); kwg.Wait() }()

	prefix := fmt.Sprintf("coordbench/big/%d/%s/", run, variant)
	marker := prefix + "marker"
	loadStart := time.Now()
	err = parallel(sc.bigLocks+sc.bigKeys, 64, func(i int) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		defer ocancel()
		if i < sc.bigLocks {
			r, err := c.Lock(octx, fmt.Sprintf("coordbench-big-%d-%s-%05d", run, variant, i), l.ID, 0, client.LockOptions{})
			if err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			if !r.Leader {
				return fmt.Errorf("lock %d not held", i)
			}
			return nil
		}
		if _, err := c.Put(octx, fmt.Sprintf("%s%05d", prefix, i), []byte("x"), client.WithLease(l.ID)); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		return nil
	})
	if err != nil {
		return bigVariant{}, err
	}
	w, err := c.Put(ctx, marker, []byte("m"), client.WithLease(l.ID))
	if err != nil {
		return bigVariant{}, fmt.Errorf("put marker: %w", err)
	}
	load := time.Since(loadStart)
	e.logf("big-expiry run %d %s: lease %d holds %d locks and %d keys (loaded in %s)", run, variant, l.ID, sc.bigLocks, sc.bigKeys, load.Round(time.Millisecond))

	// The probe: open loop at probeRate, up to probeConc in flight.
	var pmu sync.Mutex
	var ops []probeOp
	pctx, stopProbe := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	sem := make(chan struct{}, sc.probeConc)
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		interval := time.Duration(float64(time.Second) / sc.probeRate)
		t0 := time.Now()
		for j := 0; j < 10_000_000; j++ {
			if !sleepUntil(pctx, t0.Add(time.Duration(j)*interval)) {
				return
			}
			select {
			case sem <- struct{}{}:
			case <-pctx.Done():
				return
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				defer func() { <-sem }()
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				defer ocancel()
				s := time.Now()
				var err error
				key := "coordbench/probe/" + strconv.Itoa(j%64)
				if j%2 == 0 {
					_, err = pc.Put(octx, key, []byte(strconv.Itoa(j)))
				} else {
					_, err = pc.Get(octx, key)
					if err != nil && isKeyNotFound(err) {
						err = nil
					}
				}
				op := probeOp{start: s, end: time.Now(), err: err != nil}
				pmu.Lock()
				ops = append(ops, op)
				pmu.Unlock()
			}()
		}
	}()
	stopAll := func() { stopProbe(); pwg.Wait() }
	defer stopAll()
	if !sleepUntil(ctx, time.Now().Add(2*time.Second)) {
		return bigVariant{}, e.ctx.Err()
	}

	// The release, seen by a blocking query on the marker.
	released := make(chan time.Time, 1)
	go func() {
		released <- waitDeleted(ctx, leaderURL, marker, w.ModifyIndex)
	}()
	trigger := time.Now()
	var v bigVariant
	if variant == "expire" {
		stopKeepalive()
		kwg.Wait()
	} else {
		stopKeepalive()
		kwg.Wait()
		trigger = time.Now()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Revoke(rctx, l.ID)
		rcancel()
		v.call = ms(time.Since(trigger))
		if err != nil {
			return bigVariant{}, fmt.Errorf("revoke: %w", err)
		}
	}
	var rel time.Time
	select {
	case rel = <-released:
	case <-time.After(ttl + 60*time.Second):
		return bigVariant{}, fmt.Errorf("the marker key was not deleted within %s of the trigger", ttl+60*time.Second)
	}
	if rel.IsZero() {
		return bigVariant{}, fmt.Errorf("watching the marker key failed")
	}
	if variant == "expire" {
		v.release = ms(rel.Sub(time.Unix(0, lastAck.Load()).Add(ttl))) // past the lease's deadline
	} else {
		v.release = ms(rel.Sub(trigger))
	}
	if !sleepUntil(ctx, rel.Add(2*time.Second)) {
		return bigVariant{}, e.ctx.Err()
	}
	stopAll()

	end := rel.Add(2 * time.Second)
	var in, base []time.Duration
	var ends []time.Time
	for _, op := range ops {
		d := op.end.Sub(op.start)
		switch {
		case !op.start.Before(trigger) && op.start.Before(end):
			in = append(in, d)
			ends = append(ends, op.end)
			if op.err {
				v.errors++
			}
		case op.end.Before(trigger) && !op.start.Before(trigger.Add(-2*time.Second)):
			base = append(base, d)
		}
	}
	if len(in) == 0 {
		return bigVariant{}, fmt.Errorf("no probe requests in the window")
	}
	slices.Sort(in)
	v.maxStall = ms(in[len(in)-1])
	v.p99 = ms(in[rankIndex(len(in), 0.99)])
	slices.Sort(base)
	if len(base) > 0 {
		v.baselineMax = ms(base[len(base)-1])
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	prev := trigger
	for _, t := range ends {
		v.maxGap = max(v.maxGap, ms(t.Sub(prev)))
		prev = t
	}
	v.load = load
	e.logf("big-expiry run %d %s: released %.0f ms %s; probe in the window: %d requests, max %.1f ms, p99 %.1f ms, longest gap %.1f ms (before: max %.1f ms), %d errors",
		run, variant, v.release, map[bool]string{true: "past the deadline", false: "after the revoke call"}[variant == "expire"],
		len(in), v.maxStall, v.p99, v.maxGap, v.baselineMax, v.errors)
	return v, nil
}

// waitDeleted blocks (GET ?index=, linearizable, retried) until key is gone
// and returns when that was seen; zero time when ctx ended first.
func waitDeleted(ctx context.Context, endpoint, key string, index uint64) time.Time {
	hc := &http.Client{}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/kv/%s?index=%d&wait=5m", endpoint, key, index), nil)
		resp, err := hc.Do(req)
		if err != nil {
			sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
			continue
		}
		drain(resp)
		at := time.Now()
		if resp.StatusCode == http.StatusNotFound {
			return at
		}
		if resp.StatusCode != http.StatusOK {
			sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
		}
	}
	return time.Time{}
}

// isKeyNotFound reports a get of a key that does not exist (yet).
func isKeyNotFound(err error) bool { return errors.Is(err, client.ErrKeyNotFound) }
