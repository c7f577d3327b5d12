package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmoke_TargetRRReachesFollowers runs acquire against a cluster of the
// test's own with -target rr, then with -target leader, and reads every
// node's /metrics after each: with rr both followers receive lock requests
// from clients and forward them (coordd_http_forwarded_total, when the
// node still has that counter); with leader the followers receive next to
// none.
func TestSmoke_TargetRRReachesFollowers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real coordd cluster")
	}
	defer theReaper.cleanup() // the coordd built by coorddBinary
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := coorddBinary("./bin/coordd", false)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := startCluster(ctx, clusterOptions{bin: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.stop()
	leader, _, err := cl.leaderNode(ctx, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	// run runs acquire with target and returns, per node, the lock requests
	// it received and the requests it forwarded meanwhile (-1: no such
	// counter), and the ops the run counted.
	run := func(target string) (locks, fwd map[*node]float64, ops float64) {
		t.Helper()
		before := scrapeAll(t, cl)
		var stderr, js bytes.Buffer
		cfg, err := parseFlags([]string{"-mode", "acquire", "-target", target, "-runs", "1", "-clients", "6",
			"-duration", "1s", "-warmup", "200ms", "-endpoints", strings.Join(cl.endpoints(), ",")}, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		rep := newReporter(&stderr, &js)
		if failed := runPlan(ctx, cfg, rep); failed != 0 {
			t.Fatalf("target %s: %d runs failed:\n%s", target, failed, stderr.String())
		}
		after := scrapeAll(t, cl)
		locks, fwd = map[*node]float64{}, map[*node]float64{}
		for _, n := range cl.nodes {
			locks[n] = after[n].locks - before[n].locks
			fwd[n] = -1
			if after[n].hasForwarded {
				fwd[n] = after[n].forwarded - before[n].forwarded
			}
		}
		var line struct {
			Workload string             `json:"workload"`
			Figures  map[string]float64 `json:"figures"`
		}
		if err := json.Unmarshal(bytes.SplitN(js.Bytes(), []byte("\n"), 2)[0], &line); err != nil {
			t.Fatalf("JSON: %v\n%s", err, js.String())
		}
		if !strings.HasSuffix(line.Workload, " target="+target) {
			t.Errorf("workload %q lacks target=%s", line.Workload, target)
		}
		if line.Figures["errors"] != 0 {
			t.Errorf("target %s: %v errors", target, line.Figures["errors"])
		}
		t.Logf("target %s: %s: %.0f ops/s; lock requests received per node %v, forwarded %v", target, line.Workload, line.Figures["ops_per_s"], byID(locks), byID(fwd))
		return locks, fwd, line.Figures["ops_per_s"]
	}

	locks, fwd, _ := run("rr")
	for _, n := range cl.nodes {
		if locks[n] < 10 {
			t.Errorf("rr: %s (leader %v) received %v lock requests, want its share of the 6 clients' load", n.id, n == leader, locks[n])
		}
		if n != leader && fwd[n] == 0 {
			t.Errorf("rr: follower %s forwarded nothing", n.id)
		}
	}
	rrFollowers := 0.0
	for _, n := range cl.nodes {
		if n != leader {
			rrFollowers += locks[n]
		}
	}

	locks, _, _ = run("leader")
	if locks[leader] < 10 {
		t.Errorf("leader: the leader %s received %v lock requests", leader.id, locks[leader])
	}
	for _, n := range cl.nodes {
		if n != leader && locks[n] > rrFollowers/20 {
			t.Errorf("leader: follower %s received %v lock requests (rr: %v for both followers)", n.id, locks[n], rrFollowers)
		}
	}
}

func byID(m map[*node]float64) map[string]float64 {
	out := map[string]float64{}
	for n, v := range m {
		out[n.id] = v
	}
	return out
}

// nodeCounters are the counters the test reads from a node's /metrics.
type nodeCounters struct {
	locks        float64 // coordd_http_requests_total of POST /v1/locks/{name}
	forwarded    float64 // coordd_http_forwarded_total
	hasForwarded bool
}

func scrapeAll(t *testing.T, cl *cluster) map[*node]nodeCounters {
	t.Helper()
	out := map[*node]nodeCounters{}
	for _, n := range cl.nodes {
		c, err := scrape(n.url() + "/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.id, err)
		}
		out[n] = c
	}
	return out
}

func scrape(url string) (nodeCounters, error) {
	var c nodeCounters
	resp, err := http.Get(url)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "coordd_http_requests_total{") && strings.Contains(line, `route="POST /v1/locks/{name}"`):
			c.locks += v
		case strings.HasPrefix(line, "coordd_http_forwarded_total "):
			c.forwarded, c.hasForwarded = v, true
		}
	}
	return c, sc.Err()
}
