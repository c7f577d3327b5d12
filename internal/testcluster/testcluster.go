// Package testcluster starts in-process coordd clusters for tests: real
// Raft, real bbolt files in t.TempDir(), real HTTP and Raft TCP on loopback.
// Node logs are kept in memory and printed only when the test fails.
package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/server"
)

// Cluster is a set of in-process coordd nodes.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	HTTP  *http.Client
	tune  func(*server.Config)
}

// Node is one member of a Cluster.
type Node struct {
	ID       string
	DataDir  string
	RaftAddr string
	HTTPAddr string
	srv      atomic.Pointer[server.Server] // nil while stopped
	// raftLn and httpLn hold the ports from bind until the first start.
	raftLn, httpLn net.Listener
	cfg            server.Config
	logs           *syncBuffer
}

// Server is the running server, nil while the node is stopped. Safe to call
// while another goroutine stops or restarts the node.
func (n *Node) Server() *server.Server { return n.srv.Load() }

// URL returns the node's HTTP base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// Option adjusts every node's config.
type Option func(*server.Config)

// New starts an n-node cluster bootstrapped from a fixed peer list and
// waits until every node is ready. Nodes are shut down in t.Cleanup.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, HTTP: &http.Client{Timeout: 30 * time.Second}}
	c.tune = func(cfg *server.Config) {
		for _, o := range opts {
			o(cfg)
		}
	}
	var peers []server.Peer
	for i := range n {
		node := &Node{ID: fmt.Sprintf("n%d", i+1), DataDir: t.TempDir(), logs: &syncBuffer{}}
		node.bind(t)
		peers = append(peers, server.Peer{ID: node.ID, RaftAddr: node.RaftAddr, HTTPAddr: node.HTTPAddr})
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		node.cfg = c.config(node)
		node.cfg.Bootstrap = peers
		c.start(node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			c.Stop(node)
		}
		if t.Failed() {
			for _, node := range c.Nodes {
				t.Logf("---- logs of %s ----\n%s", node.ID, node.logs.tail(64<<10))
			}
		}
	})
	c.WaitReady(c.Nodes...)
	return c
}

func (c *Cluster) config(node *Node) server.Config {
	cfg := server.Config{
		NodeID:   node.ID,
		DataDir:  node.DataDir,
		RaftAddr: node.RaftAddr,
		HTTPAddr: node.HTTPAddr,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: node.ID, Level: hclog.Debug, Output: node.logs,
		}),
		// Twice the production Raft timing: these clusters share the
		// test process (and the machine) with many others, and a test of
		// what the API does must not be disturbed by elections that CPU
		// starvation causes. The defaults are exercised by the end-to-end
		// and fault-injection tests, which start real processes.
		HeartbeatTimeout:   2 * server.DefaultHeartbeatTimeout,
		ElectionTimeout:    2 * server.DefaultElectionTimeout,
		LeaderLeaseTimeout: 2 * server.DefaultLeaderLeaseTimeout,
	}
	c.tune(&cfg)
	return cfg
}

// AddJoining starts a new node that joins through the HTTP API of via.
func (c *Cluster) AddJoining(via *Node, nonVoter bool) *Node {
	c.t.Helper()
	node := &Node{ID: fmt.Sprintf("n%d", len(c.Nodes)+1), DataDir: c.t.TempDir(), logs: &syncBuffer{}}
	node.bind(c.t)
	node.cfg = c.config(node)
	node.cfg.Join = via.HTTPAddr
	node.cfg.NonVoter = nonVoter
	c.Nodes = append(c.Nodes, node)
	c.start(node)
	return node
}

func (c *Cluster) start(node *Node) {
	c.t.Helper()
	cfg := node.cfg
	cfg.Registry = nil // a fresh registry per start
	// The first start uses the listeners bound in bind, so that no other
	// test can take the ports in between; a restart binds the addresses.
	cfg.RaftListener, cfg.HTTPListener = node.raftLn, node.httpLn
	node.raftLn, node.httpLn = nil, nil
	var err error
	var srv *server.Server
	// The ports were free a moment ago; on a busy machine a restart may
	// race with TIME_WAIT or another process, so retry briefly.
	for deadline := time.Now().Add(5 * time.Second); ; {
		srv, err = server.Start(context.Background(), cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		cfg.RaftListener, cfg.HTTPListener = nil, nil // closed by the failed start
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", node.ID, err)
	}
	node.srv.Store(srv)
}

// Stop shuts a node down gracefully (a leader hands leadership over first).
func (c *Cluster) Stop(node *Node) {
	srv := node.srv.Swap(nil)
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		c.t.Logf("shutdown %s: %v", node.ID, err)
	}
}

// Kill stops a node at once, without handing leadership over.
func (c *Cluster) Kill(node *Node) {
	srv := node.srv.Swap(nil)
	if srv == nil {
		return
	}
	if err := srv.Abort(); err != nil {
		c.t.Logf("abort %s: %v", node.ID, err)
	}
}

// Restart starts a stopped node again from its data dir, on the same
// addresses. Bootstrap/join settings are kept but ignored by a node that
// has Raft state.
func (c *Cluster) Restart(node *Node) {
	c.t.Helper()
	if node.Server() != nil {
		c.t.Fatalf("restart %s: still running", node.ID)
	}
	c.start(node)
}

// Running returns the nodes that are up.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Server() != nil {
			out = append(out, n)
		}
	}
	return out
}

// WaitReady polls /readyz of the given nodes until each answers 200.
func (c *Cluster) WaitReady(nodes ...*Node) {
	c.t.Helper()
	for _, n := range nodes {
		Poll(c.t, 20*time.Second, func() error {
			resp, err := c.HTTP.Get(n.URL() + "/readyz")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("%s not ready: %s", n.ID, b)
			}
			return nil
		})
	}
}

// Leader waits until exactly one running node leads and is ready, and
// returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var leader *Node
	Poll(c.t, 20*time.Second, func() error {
		leader = nil
		for _, n := range c.Running() {
			if srv := n.Server(); srv != nil && srv.IsLeader() && srv.Ready() == nil {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.ID, n.ID)
				}
				leader = n
			}
		}
		if leader == nil {
			return fmt.Errorf("no ready leader among %d running nodes", len(c.Running()))
		}
		return nil
	})
	return leader
}

// Followers returns the running nodes other than the leader.
func (c *Cluster) Followers() []*Node {
	c.t.Helper()
	l := c.Leader()
	var out []*Node
	for _, n := range c.Running() {
		if n != l {
			out = append(out, n)
		}
	}
	return out
}

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// ErrorCode returns the code of a JSON error body, or "".
func (r *Response) ErrorCode() string {
	var e api.ErrorBody
	if json.Unmarshal(r.Body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// Do sends one request and returns the answer; transport errors fail the
// test.
func (c *Cluster) Do(method, url string, body string) *Response {
	c.t.Helper()
	r, err := c.Try(method, url, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// Call sends a request as a patient client does: an answer the API
// documents as retryable (no_leader, not_leader, leader_not_ready,
// catching_up, forward_failed — an election under CPU starvation) is
// retried for up to 15 s, as is outcome_unknown when the request carries
// an Idempotency-Key (the retry then gets the recorded result, never a
// second apply). It returns the first other answer; transport errors are
// retried too, and fail the test at the deadline.
func (c *Cluster) Call(method, url string, body string, hdr ...string) *Response {
	c.t.Helper()
	keyed := false
	for i := 0; i+1 < len(hdr); i += 2 {
		keyed = keyed || http.CanonicalHeaderKey(hdr[i]) == api.HeaderIdempotencyKey
	}
	var r *Response
	Poll(c.t, 15*time.Second, func() error {
		var err error
		if r, err = c.TryWith(method, url, body, hdr...); err != nil {
			return err
		}
		switch code := r.ErrorCode(); code {
		case api.CodeNoLeader, api.CodeNotLeader, api.CodeLeaderNotReady, api.CodeCatchingUp, api.CodeForwardFailed:
			return fmt.Errorf("retryable: %s", r.Body)
		case api.CodeOutcomeUnknown:
			if keyed {
				return fmt.Errorf("retryable with its Idempotency-Key: %s", r.Body)
			}
		}
		return nil
	})
	return r
}

// Try sends one request and returns the answer or the transport error.
func (c *Cluster) Try(method, url string, body string) (*Response, error) {
	return c.TryWith(method, url, body)
}

// TryWith is Try with extra headers given as name, value pairs.
func (c *Cluster) TryWith(method, url string, body string, hdr ...string) (*Response, error) {
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rb)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Poll calls f until it returns nil or the timeout passes, then fails the
// test with f's last error.
func Poll(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bind reserves the node's two ports by listening on them now.
func (n *Node) bind(t testing.TB) {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		return ln
	}
	n.raftLn, n.httpLn = listen(), listen()
	n.RaftAddr, n.HTTPAddr = n.raftLn.Addr().String(), n.httpLn.Addr().String()
}

// syncBuffer is a goroutine-safe log sink that keeps the last bytes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 {
		rest := b.buf.Bytes()[b.buf.Len()-(1<<20):]
		b.buf = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}
