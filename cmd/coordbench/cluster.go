package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/internal/loopport"
	"github.com/coordd/coordd/test/jepsen/netproxy"
)

// cluster is a 3-node coordd cluster coordbench started on loopback, with
// its data under a temporary directory removed at the end.
type cluster struct {
	dir   string
	nodes []*node
	// net, when the cluster was started with proxied Raft links: every
	// node dials its peers through loopback proxies, which can cut a node
	// off (clients still reach every node directly).
	net *netproxy.Net
}

// node is one coordd node of an own cluster. Its data dir survives
// restarts.
type node struct {
	id, raftAddr, httpAddr, dataDir, logPath string
	bin                                      string
	args                                     []string
	p                                        *proc
}

func (n *node) url() string { return "http://" + n.httpAddr }

// start starts the node's process (again) on its data dir, appending to its
// log.
func (n *node) start() error {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", n.id, err)
	}
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd, logf)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	n.p = p
	return nil
}

// kill SIGKILLs the node and waits until it is reaped.
func (n *node) kill() { n.p.kill() }

// pid is the node's current process id (0 when not running).
func (n *node) pid() int {
	if n.p == nil || !n.p.running() {
		return 0
	}
	return n.p.pid()
}

// waitReady polls /readyz every 5 ms until it answers 200, and returns the
// time since since.
func (n *node) waitReady(ctx context.Context, since time.Time, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if ok, _ := httpOK(ctx, n.url()+"/readyz"); ok {
			return time.Since(since), nil
		}
		if n.p != nil && !n.p.running() {
			return 0, fmt.Errorf("%s exited while starting; its log ends:\n%s", n.id, tailFile(n.logPath, 15))
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s not ready after %s: %w; its log ends:\n%s", n.id, timeout, ctx.Err(), tailFile(n.logPath, 15))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// clusterOptions configure startCluster.
type clusterOptions struct {
	bin       string   // coordd binary
	extraArgs []string // added to every node's flags
	logLevel  string
	// proxied: Raft between nodes goes through netproxy links.
	proxied bool
}

// startCluster starts 3 bootstrapped coordd nodes on free loopback ports
// below the ephemeral range and waits until each is ready.
func startCluster(ctx context.Context, o clusterOptions) (*cluster, error) {
	dir, err := theReaper.tempDir("coordbench-cluster-")
	if err != nil {
		return nil, err
	}
	ports, err := loopport.Free(6, rand.IntN)
	if err != nil {
		theReaper.removeDir(dir)
		return nil, err
	}
	if o.logLevel == "" {
		o.logLevel = "warn"
	}
	c := &cluster{dir: dir}
	var peers []string
	for i := range 3 {
		n := &node{
			id:       fmt.Sprintf("n%d", i+1),
			raftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			httpAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			bin:      o.bin,
		}
		n.dataDir = filepath.Join(dir, n.id)
		n.logPath = filepath.Join(dir, n.id+".log")
		peers = append(peers, fmt.Sprintf("%s=%s,%s", n.id, n.raftAddr, n.httpAddr))
		c.nodes = append(c.nodes, n)
	}
	if o.proxied {
		real := map[string]string{}
		for _, n := range c.nodes {
			real[n.id] = n.raftAddr
		}
		if c.net, err = netproxy.New(real); err != nil {
			theReaper.removeDir(dir)
			return nil, fmt.Errorf("own cluster: raft proxies: %w", err)
		}
	}
	for _, n := range c.nodes {
		n.args = append([]string{"-id", n.id, "-data-dir", n.dataDir, "-raft-addr", n.raftAddr,
			"-http-addr", n.httpAddr, "-bootstrap", strings.Join(peers, ";"), "-log-level", o.logLevel}, o.extraArgs...)
		if c.net != nil {
			pa, err := c.net.PeerAddrs(n.id)
			if err != nil {
				c.stop()
				return nil, err
			}
			var via []string
			for id, addr := range pa {
				via = append(via, id+"="+addr)
			}
			n.args = append(n.args, "-peer-raft-addrs", strings.Join(via, ","))
		}
		if err := n.start(); err != nil {
			c.stop()
			return nil, err
		}
	}
	start := time.Now()
	for _, n := range c.nodes {
		if _, err := n.waitReady(ctx, start, 30*time.Second); err != nil {
			c.stop()
			return nil, fmt.Errorf("own cluster: %w", err)
		}
	}
	return c, nil
}

// endpoints are the nodes' HTTP URLs.
func (c *cluster) endpoints() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.url())
	}
	return out
}

// stop kills every node and removes the data.
func (c *cluster) stop() {
	if c == nil {
		return
	}
	for _, n := range c.nodes {
		n.kill()
	}
	if c.net != nil {
		_ = c.net.Close()
	}
	theReaper.removeDir(c.dir)
}

// nodeStatus is the part of GET /v1/status coordbench reads directly
// (client.Status lacks the snapshot fields).
type nodeStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader *struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastIndex     uint64 `json:"last_index"`
	Ready         bool   `json:"ready"`
	FirstLogIndex uint64 `json:"first_log_index"`
	PID           int    `json:"pid"`
	Snapshot      *struct {
		Index     uint64 `json:"index"`
		SizeBytes int64  `json:"size_bytes"`
	} `json:"snapshot"`
}

// probeHTTP is for status and readiness polls: short timeouts, never
// retried.
var probeHTTP = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}

// getStatus reads GET /v1/status of one node, with a timeout.
func getStatus(ctx context.Context, baseURL string, timeout time.Duration) (nodeStatus, error) {
	var st nodeStatus
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/v1/status", nil)
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", baseURL, err)
	}
	resp, err := probeHTTP.Do(req)
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status of %s: HTTP %d", baseURL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("status of %s: decode: %w", baseURL, err)
	}
	return st, nil
}

// httpOK reports whether GET url answers 200 (within a short timeout).
func httpOK(ctx context.Context, url string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := probeHTTP.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// leaderNode polls the nodes until one of those running reports itself
// leader and ready, and returns it with its term.
func (c *cluster) leaderNode(ctx context.Context, timeout time.Duration) (*node, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		for _, n := range c.nodes {
			if n.pid() == 0 {
				continue
			}
			if st, err := getStatus(ctx, n.url(), 500*time.Millisecond); err == nil && st.State == "Leader" && st.Ready {
				return n, st.Term, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("no ready leader after %s: %w", timeout, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var (
	coorddMu   sync.Mutex
	coorddPath string // built by coorddBinary, while it exists
)

// coorddBinary returns the coordd binary to run: path if it exists; else,
// when path is the default and does not exist, coordd built from this
// module with `go build` into a temporary directory (once, while that
// directory lasts).
func coorddBinary(path string, explicit bool) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return filepath.Abs(path)
	} else if explicit {
		return "", fmt.Errorf("-coordd %s: %w", path, err)
	}
	coorddMu.Lock()
	defer coorddMu.Unlock()
	if coorddPath != "" {
		if _, err := os.Stat(coorddPath); err == nil {
			return coorddPath, nil
		}
	}
	dir, err := theReaper.tempDir("coordbench-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "coordd")
	cmd := exec.Command("go", "build", "-o", out, "github.com/coordd/coordd/cmd/coordd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("no %s, and `go build` of coordd failed (run from the module, or pass -coordd): %w", path, err)
	}
	coorddPath = out
	return out, nil
}
