package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coordd/coordd/api"
)

// startScaleCluster starts the own cluster of a scale mode: the limit-lifting
// flags of scaleNodeFlags, then extra, then -node-flags (which win). It
// raises coordbench's file limit first: the nodes inherit it.
func startScaleCluster(e *env, watchers int, extra ...string) (*cluster, error) {
	if n, err := raiseNofile(); err != nil {
		e.logf("%s: file limit: %v (now %d)", e.cfg.mode, err, n)
	}
	bin, err := coorddBinary(e.cfg.coordd, e.cfg.coorddSet)
	if err != nil {
		return nil, err
	}
	args := append(append(scaleNodeFlags(watchers), extra...), e.cfg.nodeFlags...)
	return startCluster(e.ctx, clusterOptions{bin: bin, extraArgs: args})
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit and returns
// the soft limit now in force.
func raiseNofile() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur >= r.Max {
		return r.Cur, nil
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return r.Cur, nil
}

// nofile is the soft RLIMIT_NOFILE.
func nofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// rssBytes is a process's resident set size from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("rss of pid %d: no VmRSS line", pid)
}

// scrapeMetrics reads the named unlabelled metrics from a node's /metrics
// (Prometheus text format).
func scrapeMetrics(ctx context.Context, baseURL string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := probeHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: HTTP %d", baseURL, resp.StatusCode)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || !want[name] {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return out, fmt.Errorf("metrics of %s: no %s", baseURL, n)
		}
	}
	return out, nil
}

// memSample is a node's memory at one moment.
type memSample struct {
	rss, heap float64 // bytes; heap: go_memstats_heap_alloc_bytes
	ok        bool
}

// sampleMem reads a node's RSS and Go heap. With gc, it first has the node
// collect garbage (GET /debug/pprof/heap?gc=1: nodes started with -pprof),
// so that the heap is the live heap; else the heap holds garbage too.
func sampleMem(ctx context.Context, n *node, gc bool) memSample {
	pid := n.pid()
	if pid == 0 {
		return memSample{}
	}
	if gc {
		gctx, cancel := context.WithTimeout(ctx, time.Minute)
		req, err := http.NewRequestWithContext(gctx, http.MethodGet, n.url()+"/debug/pprof/heap?gc=1", nil)
		if err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				drain(resp)
			}
		}
		cancel()
	}
	rss, err := rssBytes(pid)
	if err != nil {
		return memSample{}
	}
	m, err := scrapeMetrics(ctx, n.url(), "go_memstats_heap_alloc_bytes")
	if err != nil {
		return memSample{}
	}
	return memSample{rss: float64(rss), heap: m["go_memstats_heap_alloc_bytes"], ok: true}
}

// procsOf returns the nodes of an own cluster as nodeProcs (leader marked).
func procsOf(cl *cluster, leader *node) []nodeProc {
	var out []nodeProc
	for _, n := range cl.nodes {
		out = append(out, nodeProc{id: n.id, pid: n.pid(), leader: n == leader})
	}
	return out
}

// perNodeCPU returns the CPU of each node over window, in % of one core
// (nil when a sample is missing).
func perNodeCPU(before, after []procStat, window float64) []float64 {
	if before == nil || after == nil {
		return nil
	}
	out := make([]float64, len(before))
	for i := range before {
		out[i] = cpuPercent(before[i], after[i], window)
	}
	return out
}

// manyConnsHTTP is an HTTP client for many concurrent long requests to a
// few loopback nodes: no cap on connections per host, an idle pool as large
// as the number of requests, no overall timeout (each request has its
// context).
func manyConnsHTTP(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// drain reads and closes a response body so its connection is reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// naFig is a figure that could not be measured.
func naFig(key, unit string) Figure { return Figure{Key: key, Unit: unit, NA: true} }

// snapshotOf reads the latest snapshot of a node from GET /v1/status (nil:
// none yet, or no answer).
func snapshotOf(ctx context.Context, baseURL string) *api.SnapshotStatus {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/v1/status", nil)
	if err != nil {
		return nil
	}
	resp, err := probeHTTP.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st api.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st.Snapshot
}
