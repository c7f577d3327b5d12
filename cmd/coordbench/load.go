package main

import (
	"context"
	"sync"
	"time"
)

// opTimeout bounds one operation of a load loop.
const opTimeout = 10 * time.Second

// loadResult is what a closed-loop load measured in its window.
type loadResult struct {
	lat      []time.Duration // latency of each op started and ended in the window
	ops      int             // ops that ended in the window
	errors   int             // ops that failed, in the window or not
	firstErr error
	window   time.Duration
}

// closedLoop runs op in a loop on each of workers goroutines: warmup first,
// then a measured window of measure. Every op has opTimeout, each worker
// stops at the end of the window (or after maxOpsPerWorker ops), and the
// whole load stops when ctx ends.
// cpu, if not nil, is sampled at the start and the end of the window.
func closedLoop(ctx context.Context, workers int, warmup, measure time.Duration, cpu *cpuWatch, op func(ctx context.Context, w, i int) error) loadResult {
	const maxOpsPerWorker = 10_000_000
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+measure)
	if cpu != nil {
		go func() {
			if sleepUntil(ctx, from) {
				cpu.begin()
			}
			if sleepUntil(ctx, to) {
				cpu.end()
			}
		}()
	}
	type part struct {
		lat      []time.Duration
		ops, err int
		firstErr error
	}
	parts := make([]part, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[w]
			for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				err := op(octx, w, i)
				cancel()
				t1 := time.Now()
				if err != nil {
					p.err++
					if p.firstErr == nil {
						p.firstErr = err
					}
					continue
				}
				if !t1.Before(from) && !t1.After(to) {
					p.ops++
					if !t0.Before(from) {
						p.lat = append(p.lat, t1.Sub(t0))
					}
				}
			}
		}()
	}
	wg.Wait()
	var r loadResult
	r.window = measure
	for _, p := range parts {
		r.lat = append(r.lat, p.lat...)
		r.ops += p.ops
		r.errors += p.err
		if r.firstErr == nil {
			r.firstErr = p.firstErr
		}
	}
	return r
}

// figures are ops/s, p50/p99/max latency and errors.
func (r loadResult) figures() []Figure {
	f := []Figure{{Key: "ops_per_s", Unit: "ops/s", Value: float64(r.ops) / r.window.Seconds()}}
	f = append(f, latencyFigures("", r.lat)...)
	return append(f, Figure{Key: "errors", Unit: "count", Value: float64(r.errors)})
}

// parallel runs f(i) for i in [0, n) on up to workers goroutines and
// returns the first error (all calls run regardless).
func parallel(n, workers int, f func(i int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
