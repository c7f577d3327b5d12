package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// Cluster id.
//
// Every node of a cluster shares one cluster id, kept in the data dir
// (file cluster-id, written atomically, read at every start). A node
// refuses Raft traffic from a node with another id (clusterStreamLayer),
// and a leader refuses to add a node that belongs to another cluster
// (Server.Join), so that a node pointed at the wrong cluster, or a peer
// address reused by another cluster, can neither join nor disturb it.
//
// Where the id comes from:
//   - -bootstrap: derived from the bootstrap list and -cluster-name, as
//     etcd derives its cluster id from --initial-cluster and
//     --initial-cluster-token: every bootstrap peer, given the same list,
//     computes the same id with no message exchanged. Two clusters
//     bootstrapped with identical lists (same ids and addresses, e.g. the
//     same compose file on two hosts) get the same id unless they are
//     given different -cluster-name values.
//   - -join (or added through the members API): the node starts without an
//     id and adopts the id of the first cluster that talks to it: the join
//     answer (header X-Coordd-Cluster-Id) or the first Raft connection it
//     accepts, whichever comes first. A node with no id has no state to
//     protect.
//   - data dirs from before cluster ids (upgrade): no node has an id, and a
//     node without one sends no preamble and accepts connections without
//     one, exactly as older builds do, so a rolling upgrade works in both
//     directions. Once every member's HTTP answers show the new build (an
//     X-Coordd-Cluster-Id header), the leader generates a random id (giveClusterID)
//     and its followers adopt it from its next connection. Should that
//     leader die after storing its id and before any follower adopted it,
//     the next leader generates another, and the first, when it comes
//     back, is refused by the others: remove its cluster-id file and
//     restart it, and it adopts the cluster's.
const clusterIDFile = "cluster-id"

// ClusterIDHeader carries the cluster id on the answer to a join.
const ClusterIDHeader = api.HeaderClusterID

// ErrClusterMismatch means a node of another cluster tried to join or talk
// to this one.
var ErrClusterMismatch = httpapi.ErrClusterMismatch

// DeriveClusterID is the id of a cluster bootstrapped with peers and name:
// the first 16 hex digits of a SHA-256 of the name and the sorted peer
// list (id, Raft address, HTTP address).
func DeriveClusterID(name string, peers []Peer) string {
	lines := make([]string, 0, len(peers))
	for _, p := range peers {
		lines = append(lines, p.ID+"="+p.RaftAddr+","+p.HTTPAddr)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte("coordd cluster\n" + name + "\n" + strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:8])
}

// clusterID is this node's cluster id, persisted in its data dir.
type clusterID struct {
	path string
	log  hclog.Logger

	mu sync.Mutex
	id string
}

func loadClusterID(dir string, log hclog.Logger) (*clusterID, error) {
	c := &clusterID{path: filepath.Join(dir, clusterIDFile), log: log}
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("server: read cluster id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if !validClusterID(id) {
		return nil, corrupt("%s holds %q, not a cluster id", c.path, b)
	}
	c.id = id
	return c, nil
}

func validClusterID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// get returns the id, "" if this node has none yet.
func (c *clusterID) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// adopt sets the id if the node has none, and reports ErrClusterMismatch
// if it has another one. how says where the id came from, for the log.
func (c *clusterID) adopt(id, how string) error {
	if !validClusterID(id) {
		return fmt.Errorf("%w: %q is not a cluster id", ErrClusterMismatch, id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.id {
	case id:
		return nil
	case "":
	default:
		return fmt.Errorf("%w: this node belongs to cluster %s, not %s", ErrClusterMismatch, c.id, id)
	}
	if err := writeFileAtomic(c.path, []byte(id+"\n")); err != nil {
		return fmt.Errorf("server: store cluster id: %w", err)
	}
	c.id = id
	c.log.Info("cluster id set", "cluster_id", id, "from", how)
	return nil
}

// generate gives a node without an id a random one.
func (c *clusterID) generate() error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("server: generate cluster id: %w", err)
	}
	err := c.adopt(hex.EncodeToString(b[:]), "generated by this leader (data dir from before cluster ids)")
	if errors.Is(err, ErrClusterMismatch) {
		return nil // adopted one meanwhile
	}
	return err
}

// writeFileAtomic writes path through a synced temporary file and a rename,
// then syncs the directory: a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// The Raft preamble: magic, one length byte, the id (empty if the dialer
// has none). It is written once per connection, right after the dial:
// NetworkTransport dials through the stream layer for every new pooled
// connection and never reuses a net.Conn across dials, so each connection
// carries exactly one preamble.
const preambleMagic = "coordd-cluster\x01"

// preambleTimeout bounds how long an accepted connection may take to send
// its preamble.
const preambleTimeout = 10 * time.Second

func encodePreamble(id string) []byte {
	b := make([]byte, 0, len(preambleMagic)+1+len(id))
	b = append(b, preambleMagic...)
	b = append(b, byte(len(id)))
	return append(b, id...)
}

// clusterStreamLayer wraps the Raft stream layer: Dial sends this node's
// cluster id, and a connection it accepts must send a matching one before
// its first byte reaches Raft.
type clusterStreamLayer struct {
	raft.StreamLayer
	id  *clusterID
	log hclog.Logger

	mu      sync.Mutex
	lastLog map[string]time.Time // refusals logged per remote, rate-limited
	// inbound are the accepted connections Raft has not closed yet.
	inbound map[*clusterConn]struct{}
	handled sync.WaitGroup
	closing bool // closeInbound was called: accept no more
}

func newClusterStreamLayer(inner raft.StreamLayer, id *clusterID, log hclog.Logger) *clusterStreamLayer {
	return &clusterStreamLayer{StreamLayer: inner, id: id, log: log, lastLog: map[string]time.Time{}, inbound: map[*clusterConn]struct{}{}}
}

// closeInbound closes every accepted connection and waits, at most d,
// until Raft's handler of each has closed it too, i.e. has returned.
// hashicorp/raft does not stop those handlers on Shutdown, and a handler
// inside a heartbeat writes to the stable store: the store may be closed
// only after this (else Raft panics: "failed to save current term:
// database not open").
func (l *clusterStreamLayer) closeInbound(d time.Duration) {
	l.mu.Lock()
	l.closing = true
	for c := range l.inbound {
		c.shut.Store(true)
		c.Conn.Close()
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.handled.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		l.log.Warn("raft connection handlers still running at shutdown", "waited", d)
	}
}

// Dial implements raft.StreamLayer.
func (l *clusterStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := l.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	id := l.id.get()
	if id == "" {
		// A node without an id (a data dir from before cluster ids) talks
		// as builds without cluster ids do, so that a rolling upgrade keeps
		// working in both directions. Once it has an id, the connection
		// is dropped, so that Raft redials with the id.
		return &idlessConn{Conn: conn, id: l.id}, nil
	}
	if timeout > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	if _, err := conn.Write(encodePreamble(id)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("server: send cluster id to %s: %w", address, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// idlessConn is a connection dialed before this node had a cluster id.
// NetworkTransport pools connections and keeps them as long as they work,
// so the peer would never see the id: once the node has one, the next
// write fails and closes the connection, and Raft dials a new one, which
// carries the id.
type idlessConn struct {
	net.Conn
	id *clusterID
}

func (c *idlessConn) Write(p []byte) (int, error) {
	if c.id.get() != "" {
		c.Conn.Close()
		return 0, errors.New("server: this node has a cluster id since this raft connection was made: reconnecting")
	}
	return c.Conn.Write(p)
}

// Accept implements raft.StreamLayer. It does not read: the preamble is
// checked on the connection's first Read, on Raft's goroutine for that
// connection, so a slow peer never blocks the accept loop.
func (l *clusterStreamLayer) Accept() (net.Conn, error) {
	conn, err := l.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	c := &clusterConn{Conn: conn, layer: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		conn.Close()
		return nil, net.ErrClosed
	}
	l.inbound[c] = struct{}{}
	l.handled.Add(1)
	return c, nil
}

// clusterConn checks the peer's preamble before its first Read returns.
type clusterConn struct {
	net.Conn
	layer   *clusterStreamLayer
	once    sync.Once
	checked error
	// replay holds bytes read while looking for the preamble that turned
	// out to be the peer's first Raft bytes (a peer without an id).
	replay []byte
	closed sync.Once
	// shut: closeInbound closed the connection, so its reads end with
	// io.EOF itself, which Raft does not log as an error.
	shut atomic.Bool
}

// Close implements net.Conn: Raft's handler calls it when it returns.
func (c *clusterConn) Close() error {
	c.closed.Do(func() {
		c.layer.mu.Lock()
		delete(c.layer.inbound, c)
		c.layer.mu.Unlock()
		c.layer.handled.Done()
	})
	return c.Conn.Close()
}

func (c *clusterConn) Read(p []byte) (int, error) {
	c.once.Do(func() { c.checked = c.check() })
	if c.checked != nil {
		if c.shut.Load() {
			return 0, io.EOF
		}
		return 0, c.checked
	}
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.shut.Load() {
		err = io.EOF
	}
	return n, err
}

func (c *clusterConn) check() error {
	_ = c.Conn.SetReadDeadline(time.Now().Add(preambleTimeout))
	defer c.Conn.SetReadDeadline(time.Time{})
	// Read the magic a byte at a time, and stop at the first byte that
	// differs: a peer without an id sends a Raft RPC straight away, whose
	// first byte (the RPC type) is never the magic's, and may then wait
	// for the answer.
	head := make([]byte, 0, len(preambleMagic)+1)
	one := make([]byte, 1)
	for len(head) < len(preambleMagic) {
		if _, err := io.ReadFull(c.Conn, one); err != nil {
			c.Conn.Close()
			if len(head) == 0 && err == io.EOF {
				// Closed without a word (a port probe, a peer that hung
				// up): io.EOF itself, which Raft does not log as an error.
				return io.EOF
			}
			return fmt.Errorf("server: raft connection from %s: %w", c.RemoteAddr(), err)
		}
		head = append(head, one[0])
		if one[0] != preambleMagic[len(head)-1] {
			break
		}
	}
	if string(head) != preambleMagic {
		// No cluster id. Only a node that has none either (a cluster
		// upgraded from a build without cluster ids, not yet given one)
		// talks to such a peer.
		if c.layer.id.get() == "" {
			c.replay = head
			return nil
		}
		c.Conn.Close()
		err := fmt.Errorf("%w: raft connection from %s sent no cluster id (a coordd without one: an older build, or a node not yet "+
			"given one, or not coordd), and this node belongs to cluster %s: refused", ErrClusterMismatch, c.RemoteAddr(), c.layer.id.get())
		c.layer.refused(c.RemoteAddr(), err)
		return err
	}
	if _, err := io.ReadFull(c.Conn, one); err != nil {
		c.Conn.Close()
		return fmt.Errorf("server: raft connection from %s: short cluster id preamble: %w", c.RemoteAddr(), err)
	}
	id := make([]byte, one[0])
	if _, err := io.ReadFull(c.Conn, id); err != nil {
		c.Conn.Close()
		return fmt.Errorf("server: raft connection from %s: short cluster id preamble: %w", c.RemoteAddr(), err)
	}
	if err := c.layer.admit(string(id)); err != nil {
		c.Conn.Close()
		err = fmt.Errorf("raft connection from %s refused: %w", c.RemoteAddr(), err)
		c.layer.refused(c.RemoteAddr(), err)
		return err
	}
	return nil
}

// admit decides on a peer's cluster id: equal ids pass; a node without an
// id adopts the first one it is sent; a peer without an id is refused by a
// node that has one.
func (l *clusterStreamLayer) admit(remote string) error {
	local := l.id.get()
	switch {
	case remote == local:
		return nil
	case remote == "":
		return fmt.Errorf("%w: the peer has no cluster id and this node belongs to cluster %s", ErrClusterMismatch, local)
	case local == "":
		return l.id.adopt(remote, "first raft connection")
	default:
		return fmt.Errorf("%w: the peer belongs to cluster %s, this node to cluster %s", ErrClusterMismatch, remote, local)
	}
}

// refused logs a refusal, at most every 10 s per remote host.
func (l *clusterStreamLayer) refused(addr net.Addr, err error) {
	host := addr.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	l.mu.Lock()
	last, now := l.lastLog[host], time.Now()
	log := now.Sub(last) > 10*time.Second
	if log {
		l.lastLog[host] = now
	}
	l.mu.Unlock()
	if log {
		l.log.Error("refused a raft connection from another cluster (is a node of another cluster configured with this node's address?)", "error", err)
	}
}

// ClusterID is the id of the cluster this node belongs to, "" until a new
// node learns it.
func (s *Server) ClusterID() string { return s.clusterID.get() }

// checkJoiner refuses a joiner of another cluster: by the id its request
// carries, or else by the id its HTTP answers carry (a node added through
// the members API by an operator sends nothing). A joiner whose status
// cannot be read is let in: it may not be up yet, and its Raft
// connections are checked anyway.
func (s *Server) checkJoiner(ctx context.Context, req api.JoinRequest) error {
	local := s.clusterID.get()
	if local == "" {
		return nil
	}
	remote := req.ClusterID
	if remote == "" && req.HTTPAddr != "" {
		var err error
		if remote, _, err = s.peerClusterID(ctx, req.HTTPAddr); err != nil {
			s.log.Warn("cannot read the cluster id of a joining node; adding it anyway (its raft connections are checked)",
				"http", req.HTTPAddr, "error", err)
		}
	}
	if remote != "" && remote != local {
		return fmt.Errorf("%w: node %q (%s) belongs to cluster %s, this cluster is %s: refusing to add it "+
			"(to move it here, stop it, empty its data dir and start it with -join)", ErrClusterMismatch, req.ID, req.HTTPAddr, remote, local)
	}
	return nil
}

// withClusterID names this node's cluster id on every HTTP answer (empty
// before it has one), so that a peer can read it without credentials.
func withClusterID(h http.Handler, id *clusterID) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[ClusterIDHeader] = []string{id.get()}
		h.ServeHTTP(w, r)
	})
}

// peerClusterID asks a node's HTTP API (within 2 s) for its cluster id, from
// the header on its /healthz answer (any answer carries it, so ACLs do not
// get in the way); known is false if the header is absent (a build without
// cluster ids).
func (s *Server) peerClusterID(ctx context.Context, httpAddr string) (id string, known bool, err error) {
	h, err := s.peerHealthzHeader(ctx, httpAddr)
	if err != nil {
		return "", false, err
	}
	vs, known := h[http.CanonicalHeaderKey(ClusterIDHeader)]
	if !known || len(vs) == 0 {
		return "", false, nil
	}
	return vs[0], true, nil
}

// peerHealthzHeader asks a node's HTTP API (within 2 s) for /healthz and
// returns the headers of its answer, which say what its build knows
// without credentials.
func (s *Server) peerHealthzHeader(ctx context.Context, httpAddr string) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	url := httpAddr
	if !strings.Contains(url, "://") {
		url = s.httpScheme() + "://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.peerHTTPClient(2 * time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.Header, nil
}

// otherMembers calls f with the id and HTTP address of every other
// member of the Raft configuration, in order, until f returns done or an
// error.
func (s *Server) otherMembers(ctx context.Context, f func(id, httpAddr string) (done bool, err error)) error {
	cf := s.raft.GetConfiguration()
	if err := waitFuture(ctx, cf); err != nil {
		return err
	}
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) == s.cfg.NodeID {
			continue
		}
		addr := s.httpAddrOf(string(srv.ID))
		if addr == "" {
			return fmt.Errorf("no HTTP address for member %s", srv.ID)
		}
		if done, err := f(string(srv.ID), addr); done || err != nil {
			return err
		}
	}
	return nil
}

// giveClusterID runs on a leader that has no cluster id (a cluster whose
// data dirs predate cluster ids). A node with an id sends it on every Raft
// connection, which a build without cluster ids cannot read: so the id is
// generated only once every member's HTTP answers show a build that knows
// cluster ids (the X-Coordd-Cluster-Id header). If a member has one already, the leader adopts it. It
// retries every 5 s until done or ctx ends.
func (s *Server) giveClusterID(ctx context.Context) {
	for s.clusterID.get() == "" {
		if err := s.tryGiveClusterID(ctx); err != nil {
			s.log.Debug("no cluster id yet", "reason", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func (s *Server) tryGiveClusterID(ctx context.Context) error {
	adopted := false
	err := s.otherMembers(ctx, func(member, addr string) (bool, error) {
		id, known, err := s.peerClusterID(ctx, addr)
		switch {
		case err != nil:
			return false, fmt.Errorf("member %s: %w", member, err)
		case !known:
			return false, fmt.Errorf("member %s runs a build without cluster ids", member)
		case id != "":
			adopted = true
			return true, s.clusterID.adopt(id, "member "+member)
		}
		return false, nil
	})
	if err != nil || adopted {
		return err
	}
	return s.clusterID.generate()
}
