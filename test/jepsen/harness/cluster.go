package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/internal/loopport"
	"github.com/coordd/coordd/test/jepsen/netproxy"
)

// Build compiles coordd from this module into a new temporary directory,
// with the race detector if race is set, and returns the binary's path and a
// function that removes the directory.
func Build(ctx context.Context, race bool) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "coordd-jepsen-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "coordd")
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/coordd/coordd/cmd/coordd")
	cmd := exec.CommandContext(ctx, gobin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("harness: go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, cleanup, nil
}

// Node is one coordd process of a Cluster. Its data dir and log file
// outlive the process: a restart reuses both (the log is appended to).
type Node struct {
	ID       string
	RaftAddr string // the node's own Raft listener (peers reach it through proxies)
	HTTPAddr string // clients reach every node directly here
	DataDir  string
	LogPath  string

	bin  string
	args []string
	logf func(format string, args ...any)

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has exited
	paused  bool
	stopReq bool // the harness killed or stopped it: an exit is expected
	// skewed: the lease clock of the current process was changed (a
	// restart starts a fresh clock).
	skewed  bool
	starts  int
	crashes []string // exits the harness did not cause
	codes   []string // non-zero exit codes after a graceful stop
}

// URL is the node's HTTP base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// Running reports whether the process is up (paused or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *Node) runningLocked() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Skewed reports whether the lease clock of the running process was jumped
// or sped up.
func (n *Node) Skewed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.skewed && n.runningLocked()
}

// Paused reports whether the process is stopped with SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused && n.runningLocked()
}

// Start starts the process if it is not running. It does not wait for the
// node to be ready.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return nil
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	n.starts++
	fmt.Fprintf(logf, "=== harness: start %d of %s at %s: %s %s\n", n.starts, n.ID,
		time.Now().Format(time.RFC3339Nano), n.bin, strings.Join(n.args, " "))
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (signals go to the group), and SIGKILLed if
	// the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("harness: start %s: %w", n.ID, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited, n.paused, n.stopReq, n.skewed = cmd, exited, false, false, false
	go func() {
		werr := cmd.Wait()
		n.mu.Lock()
		if !n.stopReq {
			msg := fmt.Sprintf("%s (pid %d) exited by itself at %s: %v", n.ID, cmd.Process.Pid,
				time.Now().Format("15:04:05.000"), werr)
			n.crashes = append(n.crashes, msg)
			n.logf("harness: %s", msg)
		}
		n.mu.Unlock()
		fmt.Fprintf(logf, "=== harness: %s exited: %v\n", n.ID, werr)
		logf.Close()
		close(exited)
	}()
	return nil
}

// Kill SIGKILLs the process group and waits for the exit.
func (n *Node) Kill() {
	n.mu.Lock()
	if !n.runningLocked() {
		n.mu.Unlock()
		return
	}
	n.stopReq = true
	pid, exited := n.cmd.Process.Pid, n.exited
	n.mu.Unlock()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-exited
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// Pause stops the process group with SIGSTOP.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process group with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return fmt.Errorf("harness: %s is not running", n.ID)
	}
	if err := syscall.Kill(-n.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("harness: %v to %s: %w", sig, n.ID, err)
	}
	n.paused = paused
	return nil
}

// Stop continues the process if it is paused, sends SIGTERM and waits up to
// timeout for it to exit, then sends SIGQUIT (a goroutine dump into its log)
// and SIGKILL. A non-zero exit code or a hang is remembered (see
// Cluster.Exits).
func (n *Node) Stop(timeout time.Duration) {
	n.mu.Lock()
	if !n.runningLocked() {
		n.mu.Unlock()
		return
	}
	n.stopReq = true
	cmd, exited := n.cmd, n.exited
	pid := cmd.Process.Pid
	n.mu.Unlock()
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			n.mu.Lock()
			n.codes = append(n.codes, fmt.Sprintf("%s exited with code %d after SIGTERM", n.ID, code))
			n.mu.Unlock()
		}
	case <-time.After(timeout):
		// SIGQUIT makes the Go runtime dump every goroutine's stack into
		// the node's log before it exits: that is where it hangs.
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
		n.mu.Lock()
		n.codes = append(n.codes, fmt.Sprintf("%s did not exit within %s of SIGTERM: sent SIGQUIT (goroutine dump at the end of %s)",
			n.ID, timeout, n.LogPath))
		n.mu.Unlock()
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

// Cluster is a set of real coordd processes on loopback whose Raft traffic
// goes through a netproxy.Net, so that the network between them can fail.
// Clients reach every node directly.
type Cluster struct {
	Nodes []*Node
	Net   *netproxy.Net

	logf func(format string, args ...any)
	hc   *http.Client
}

// ClusterConfig configures NewCluster.
type ClusterConfig struct {
	Bin   string // the coordd binary
	Dir   string // each node's data dir and log file go here
	Nodes int    // 3 or 5
	// Rand picks the ports (below the kernel's ephemeral range, so that an
	// outgoing connection cannot take a killed node's port before it is
	// restarted).
	Rand *rand.Rand
	Logf func(format string, args ...any)
}

// NewCluster chooses the nodes' addresses and starts the proxies between
// them; Start starts the processes.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, errors.New("harness: no nodes")
	}
	ports, err := loopport.Free(2*cfg.Nodes, cfg.Rand.IntN)
	if err != nil {
		return nil, err
	}
	c := &Cluster{logf: cfg.Logf, hc: &http.Client{Timeout: time.Second}}
	raftAddrs := map[string]string{}
	var peers []string
	for i := range cfg.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		n := &Node{
			ID:       id,
			RaftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			HTTPAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			DataDir:  filepath.Join(cfg.Dir, id),
			LogPath:  filepath.Join(cfg.Dir, id+".log"),
			bin:      cfg.Bin,
			logf:     cfg.Logf,
		}
		raftAddrs[id] = n.RaftAddr
		// The bootstrap configuration holds the real addresses; each node
		// dials its peers at its own proxies (-peer-raft-addrs).
		peers = append(peers, fmt.Sprintf("%s=%s,%s", id, n.RaftAddr, n.HTTPAddr))
		c.Nodes = append(c.Nodes, n)
	}
	c.Net, err = netproxy.New(raftAddrs)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		pa, err := c.Net.PeerAddrs(n.ID)
		if err != nil {
			c.Net.Close()
			return nil, err
		}
		var via []string
		for _, p := range slices.Sorted(maps.Keys(pa)) {
			via = append(via, p+"="+pa[p])
		}
		n.args = []string{
			"-id", n.ID, "-data-dir", n.DataDir,
			"-raft-addr", n.RaftAddr, "-http-addr", n.HTTPAddr,
			"-bootstrap", strings.Join(peers, ";"),
			"-peer-raft-addrs", strings.Join(via, ","),
			"-unsafe-lease-clock-control",
			"-log-level", "debug",
		}
	}
	return c, nil
}

// Node returns the node with this id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// IDs returns the node ids in order.
func (c *Cluster) IDs() []string {
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// URLs returns every node's HTTP base URL.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return urls
}

// Start starts every node that is not running and waits until each one is
// ready (knows a leader and has caught up), for at most timeout.
func (c *Cluster) Start(ctx context.Context, timeout time.Duration) error {
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, n := range c.Nodes {
		if err := c.waitReady(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, n *Node) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/readyz", nil)
		resp, err := c.hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if !n.Running() {
			return fmt.Errorf("harness: %s exited while starting (see %s)", n.ID, n.LogPath)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: %s not ready: %v (last: %v)", n.ID, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// status is the part of GET /v1/status the harness uses.
type status struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Term  uint64 `json:"term"`
}

// Leader returns the id of the node that says it is the Raft leader (the
// one with the highest term if several do, as a deposed leader may still
// believe it leads for a moment), or "" if none answers that it is. Killed
// and paused nodes are not asked.
func (c *Cluster) Leader(ctx context.Context) string {
	type answer struct {
		id   string
		term uint64
	}
	var (
		mu   sync.Mutex
		best answer
		wg   sync.WaitGroup
	)
	for _, n := range c.Nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		wg.Go(func() {
			st, err := c.status(ctx, n)
			if err != nil || st.State != "Leader" {
				return
			}
			mu.Lock()
			if st.Term > best.term || best.id == "" {
				best = answer{n.ID, st.Term}
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return best.id
}

func (c *Cluster) status(ctx context.Context, n *Node) (status, error) {
	var st status
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/status", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WaitLeader polls until a node leads and is ready to serve, for at most
// timeout, and returns its id.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if id := c.Leader(ctx); id != "" {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			err := c.waitReady(rctx, c.Node(id))
			rcancel()
			if err == nil {
				return id, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("harness: no ready leader within %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LeaseClock posts a lease clock change to node n (debug endpoint, enabled
// by -unsafe-lease-clock-control): jump moves it forward, a rate > 0 sets
// its rate. It returns the clock's state as the node reports it.
func (c *Cluster) LeaseClock(ctx context.Context, n *Node, jump time.Duration, rate float64) (string, error) {
	body := map[string]any{}
	if jump > 0 {
		body["jump"] = jump.String()
	}
	if rate > 0 {
		body["rate"] = rate
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.URL()+"/v1/debug/lease-clock", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("harness: lease clock of %s: %w", n.ID, err)
	}
	defer resp.Body.Close()
	var out struct {
		AheadMs int64   `json:"ahead_ms"`
		Rate    float64 `json:"rate"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("harness: lease clock of %s: status %d", n.ID, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("harness: lease clock of %s: %w", n.ID, err)
	}
	n.mu.Lock()
	n.skewed = out.AheadMs != 0 || out.Rate != 1
	n.mu.Unlock()
	return fmt.Sprintf("ahead %dms, rate %g", out.AheadMs, out.Rate), nil
}

// TransferLeadership asks node n (the leader) to hand leadership to the most
// up-to-date voter.
func (c *Cluster) TransferLeadership(ctx context.Context, n *Node) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.URL()+"/v1/cluster/transfer-leadership", nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("harness: transfer leadership from %s: %w", n.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("harness: transfer leadership from %s: %d %s", n.ID, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// Stop stops every node gracefully (SIGCONT, SIGTERM, SIGKILL after
// timeout), concurrently, then closes the proxies.
func (c *Cluster) Stop(timeout time.Duration) {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(func() { n.Stop(timeout) })
	}
	wg.Wait()
	c.Net.Close()
}

// Kill SIGKILLs every node and closes the proxies (for a harness that gives
// up).
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
	c.Net.Close()
}

// Crashes lists the exits that the harness did not cause, of every node.
func (c *Cluster) Crashes() []string {
	var out []string
	for _, n := range c.Nodes {
		n.mu.Lock()
		out = append(out, n.crashes...)
		n.mu.Unlock()
	}
	return out
}

// Exits lists the non-zero exit codes after graceful stops.
func (c *Cluster) Exits() []string {
	var out []string
	for _, n := range c.Nodes {
		n.mu.Lock()
		out = append(out, n.codes...)
		n.mu.Unlock()
	}
	return out
}

// LogPaths lists every node's log file.
func (c *Cluster) LogPaths() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.LogPath)
	}
	return out
}
