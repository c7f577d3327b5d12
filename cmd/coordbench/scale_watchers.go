package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/client"
)

// runWatchers starts its own cluster and opens, on one node (-watch-node:
// the leader, or a follower with ?stale so that it serves them itself),
// -watchers blocking queries (GET /v1/kv/K?index=N&wait=10m, each
// re-armed as soon as it answers) over -watch-keys keys and -streams
// Server-Sent Events streams over as many elections. For -watch-for, one
// writer puts the keys and another proclaims new values of the elections,
// each at -write-rate per second, round robin. Reported: fan-out latency
// from a write's acknowledgement to each watcher's answer carrying its
// index (p50/p99/max; an answer that arrives before the writer saw the
// acknowledgement counts as 0, and answers_before_ack counts them), the
// same from the moment the write was sent (from_send.*), CPU of that node
// during the window, its
// RSS and Go heap with the watchers connected (and per watcher above the
// idle node), and the watch requests that failed or were refused.
//
// The nodes run with -max-watchers raised above the total and -rate-limit 0
// (every watcher comes from 127.0.0.1, one client to the rate limiter);
// coordbench raises its own RLIMIT_NOFILE to the hard limit, and the nodes
// inherit it.
func runWatchers(e *env, run int) (Result, error) {
	sc := e.cfg.scale
	total := sc.watchers + sc.streams
	if lim := nofile(); lim > 0 && uint64(total)+512 > lim {
		if n, _ := raiseNofile(); uint64(total)+512 > n {
			return Result{}, fmt.Errorf("%d watchers need more open files than RLIMIT_NOFILE allows (%d): raise the hard limit", total, n)
		}
	}
	e.logf("watchers run %d: starting an own cluster", run)
	cl, err := startScaleCluster(e, total)
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	leader, _, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return Result{}, err
	}
	target := leader
	if sc.watchNode == "follower" {
		for _, n := range cl.nodes {
			if n != leader {
				target = n
				break
			}
		}
	}
	c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	defer c.Close()

	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// The keys and the elections, each held by one lease kept alive.
	keys := make([]string, sc.watchKeys)
	names := make([]string, sc.watchKeys)
	tokens := make([]uint64, sc.watchKeys)
	lease, err := c.Grant(ctx, 30*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("grant: %w", err)
	}
	go func() {
		for sleepUntil(ctx, time.Now().Add(5*time.Second)) {
			kctx, kcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = c.KeepAlive(kctx, lease.ID)
			kcancel()
		}
	}()
	err = parallel(sc.watchKeys, 16, func(i int) error {
		keys[i] = fmt.Sprintf("coordbench/watch/%05d", i)
		names[i] = fmt.Sprintf("coordbench-watch-%05d", i)
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		defer ocancel()
		if _, err := c.Put(octx, keys[i], []byte("0")); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		r, err := c.Campaign(octx, names[i], lease.ID, "0", 0)
		if err != nil {
			return fmt.Errorf("campaign: %w", err)
		}
		if !r.Leader {
			return fmt.Errorf("campaign of %s: not leader", names[i])
		}
		tokens[i] = r.Token
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	idle := sampleMem(ctx, target, false)

	// The watchers. Each records (index, time) of every answer.
	type answer struct {
		index uint64
		at    time.Time
	}
	hc := manyConnsHTTP(total)
	defer hc.CloseIdleConnections()
	answers := make([][]answer, total)
	var watchErrs, refused atomic.Int64
	var firstWatchErr atomic.Value
	var armed atomic.Int64
	noteErr := func(err error) {
		watchErrs.Add(1)
		firstWatchErr.CompareAndSwap(nil, err)
	}
	stale := ""
	if target != leader {
		stale = "&stale"
	}
	var wg sync.WaitGroup
	blocking := func(i int) {
		defer wg.Done()
		key := keys[i%len(keys)]
		var index uint64
		first := true
		for ctx.Err() == nil {
			u := fmt.Sprintf("%s/v1/kv/%s?index=%d&wait=10m%s", target.url(), key, max(index, 1), stale)
			if index == 0 {
				u = fmt.Sprintf("%s/v1/kv/%s?wait=10m%s", target.url(), key, stale)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if index > 0 && first {
				first = false
				armed.Add(1)
			}
			resp, err := hc.Do(req)
			at := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					noteErr(err)
					sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
				}
				continue
			}
			var kv api.KV
			derr := json.NewDecoder(resp.Body).Decode(&kv)
			drain(resp)
			if resp.StatusCode == http.StatusTooManyRequests {
				refused.Add(1)
				sleepUntil(ctx, time.Now().Add(time.Second))
				continue
			}
			if resp.StatusCode != http.StatusOK || derr != nil {
				noteErr(fmt.Errorf("blocking query: HTTP %d (%v)", resp.StatusCode, derr))
				sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
				continue
			}
			if kv.ModifyIndex > index {
				if index > 0 {
					answers[i] = append(answers[i], answer{kv.ModifyIndex, at})
				}
				index = kv.ModifyIndex
			}
		}
	}
	stream := func(i int) {
		defer wg.Done()
		name := names[(i-sc.watchers)%len(names)]
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target.url()+"/v1/elections/"+url.PathEscape(name), nil)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := hc.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					noteErr(err)
					sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
				}
				continue
			}
			if resp.StatusCode == http.StatusTooManyRequests {
				drain(resp)
				refused.Add(1)
				sleepUntil(ctx, time.Now().Add(time.Second))
				continue
			}
			if resp.StatusCode != http.StatusOK {
				drain(resp)
				noteErr(fmt.Errorf("stream: HTTP %d", resp.StatusCode))
				sleepUntil(ctx, time.Now().Add(100*time.Millisecond))
				continue
			}
			br := bufio.NewReader(resp.Body)
			firstEvent := true
			var last uint64
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					break
				}
				if v, ok := strings.CutPrefix(line, "id: "); ok {
					idx, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					if perr != nil {
						continue
					}
					if firstEvent {
						firstEvent, last = false, idx
						armed.Add(1)
						continue // the state as it was
					}
					if idx > last { // not a known-leader change of the same state
						answers[i] = append(answers[i], answer{idx, time.Now()})
						last = idx
					}
				}
			}
			resp.Body.Close()
			if ctx.Err() == nil {
				noteErr(fmt.Errorf("stream of %s ended", name))
			}
		}
	}
	e.logf("watchers run %d: opening %d blocking queries and %d streams on %s (%s)", run, sc.watchers, sc.streams, target.id, map[bool]string{true: "leader", false: "follower, ?stale"}[target == leader])
	openStart := time.Now()
	for i := range total {
		wg.Add(1)
		if i < sc.watchers {
			go blocking(i)
		} else {
			go stream(i)
		}
		if i%500 == 499 {
			sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) // ~10,000 a second
		}
	}
	defer func() { cancel(); wg.Wait() }()
	// Wait until every watcher is armed (a blocking query sent with its
	// index, a stream past its first event) and the node counts them.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := scrapeMetrics(ctx, target.url(), "coordd_http_watchers")
		if armed.Load() >= int64(total) && err == nil && m["coordd_http_watchers"] >= float64(total) {
			break
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("after %s, %d of %d watchers armed, the node serves %v (errors %d, the first: %v)",
				time.Since(openStart).Round(time.Second), armed.Load(), total, m["coordd_http_watchers"], watchErrs.Load(), firstWatchErr.Load())
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return Result{}, e.ctx.Err()
		}
	}
	e.logf("watchers run %d: %d watchers armed in %s; writing %g keys/s and %g proclaims/s for %s", run, total,
		time.Since(openStart).Round(time.Millisecond), sc.writeRate, sc.writeRate, sc.watchFor)

	// The writers: acknowledged index → time.
	var ackMu sync.Mutex
	type write struct{ sent, ack time.Time }
	acks := map[uint64]write{}
	var writeErrs atomic.Int64
	nodes := []nodeProc{{id: target.id, pid: target.pid(), leader: target == leader}}
	cpu0, w0 := sampleCPU(nodes), time.Now()
	end := w0.Add(sc.watchFor)
	interval := time.Duration(float64(time.Second) / sc.writeRate)
	var wwg sync.WaitGroup
	for _, kind := range []string{"put", "proclaim"} {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for j := 0; ; j++ {
				at := w0.Add(time.Duration(j) * interval)
				if !at.Before(end) || !sleepUntil(ctx, at) {
					return
				}
				k := j % len(keys)
				sent := time.Now()
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				var idx uint64
				var err error
				if kind == "put" {
					var r *client.WriteResult
					if r, err = c.Put(octx, keys[k], []byte(strconv.Itoa(j))); err == nil {
						idx = r.ModifyIndex
					}
				} else {
					var st *client.ElectionState
					if st, err = c.Proclaim(octx, names[k], lease.ID, tokens[k], strconv.Itoa(j)); err == nil {
						idx = st.Index
					}
				}
				ocancel()
				t := time.Now()
				if err != nil {
					writeErrs.Add(1)
					continue
				}
				ackMu.Lock()
				acks[idx] = write{sent, t}
				ackMu.Unlock()
			}
		}()
	}
	wwg.Wait()
	cpu1, w1 := sampleCPU(nodes), time.Now()
	loaded := sampleMem(ctx, target, false)
	// Let the last answers arrive, then stop the watchers.
	sleepUntil(ctx, time.Now().Add(2*time.Second))
	cancel()
	wg.Wait()

	var blockLat, streamLat, all, fromSend []time.Duration
	early := 0
	for i, as := range answers {
		for _, a := range as {
			wr, ok := acks[a.index]
			if !ok {
				continue // not a write of the window (or its ack was lost)
			}
			fromSend = append(fromSend, a.at.Sub(wr.sent))
			d := a.at.Sub(wr.ack)
			if d < 0 {
				d, early = 0, early+1
			}
			if i < sc.watchers {
				blockLat = append(blockLat, d)
			} else {
				streamLat = append(streamLat, d)
			}
			all = append(all, d)
		}
	}
	figs := latencyFigures("fanout_", all)
	figs = append(figs, latencyFigures("blocking.", blockLat)...)
	figs = append(figs, latencyFigures("sse.", streamLat)...)
	figs = append(figs, latencyFigures("from_send.", fromSend)...)
	figs = append(figs,
		Figure{Key: "answers", Unit: "count", Value: float64(len(all))},
		Figure{Key: "answers_before_ack", Unit: "count", Value: float64(early)},
	)
	if cpu := perNodeCPU(cpu0, cpu1, w1.Sub(w0).Seconds()); cpu != nil {
		figs = append(figs, Figure{Key: "cpu_pct_node", Unit: "%", Value: cpu[0]})
	} else {
		figs = append(figs, naFig("cpu_pct_node", "%"))
	}
	if idle.ok && loaded.ok {
		figs = append(figs,
			Figure{Key: "rss_mib", Unit: "MiB", Value: loaded.rss / (1 << 20)},
			Figure{Key: "heap_mib", Unit: "MiB", Value: loaded.heap / (1 << 20)},
			Figure{Key: "rss_kib_per_watcher", Unit: "KiB", Value: (loaded.rss - idle.rss) / 1024 / float64(total)})
	} else {
		figs = append(figs, naFig("rss_mib", "MiB"), naFig("heap_mib", "MiB"), naFig("rss_kib_per_watcher", "KiB"))
	}
	if v := watchErrs.Load(); v > 0 {
		e.logf("watchers run %d: %d watch errors, the first: %v", run, v, firstWatchErr.Load())
	}
	figs = append(figs,
		Figure{Key: "watch_errors", Unit: "count", Value: float64(watchErrs.Load())},
		Figure{Key: "refused", Unit: "count", Value: float64(refused.Load())},
		Figure{Key: "write_errors", Unit: "count", Value: float64(writeErrs.Load())},
	)
	return Result{Workload: fmt.Sprintf("watchers blocking=%d sse=%d node=%s", sc.watchers, sc.streams, sc.watchNode), Run: run, Figures: figs,
		Params: map[string]any{"watchers": sc.watchers, "streams": sc.streams, "keys": sc.watchKeys, "write_rate": sc.writeRate,
			"window_s": sc.watchFor.Seconds(), "node": sc.watchNode}}, nil
}
