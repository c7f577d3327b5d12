package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/httpapi"
	"github.com/coordd/coordd/lease"
)

// LAN defaults, chosen for fast failover on loopback and LANs: a follower
// starts an election 150–300 ms after it last heard from the leader (Raft
// sends heartbeats every 15 ms), and a leader that cannot reach a quorum for
// 150 ms steps down. With 300 ms timeouts the longest write gap after a
// leader was SIGKILLed was 0.66–1.0 s on 2 cores (coordbench leader-kill,
// split votes included); these halve it.
const (
	DefaultHeartbeatTimeout   = 150 * time.Millisecond
	DefaultElectionTimeout    = 150 * time.Millisecond
	DefaultLeaderLeaseTimeout = 150 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultSnapshotInterval   = 10 * time.Minute
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 2048
	// DefaultSnapshotRetain is 1: a node starts only from its newest
	// snapshot (snapshotGuard: the log behind an older one is compacted
	// away), so an older one is only a copy for an operator, and with it
	// a member needs twice its state on disk.
	DefaultSnapshotRetain = 1
	// DefaultSnapshotThresholdCheck is how often Raft checks the log-size
	// threshold (plus a random stagger of up to as much again).
	DefaultSnapshotThresholdCheck = 5 * time.Second
	// DefaultMaxSnapshotBytes bounds a backup uploaded for restore.
	DefaultMaxSnapshotBytes = 4 << 30
	DefaultMaxRequestBytes  = 1 << 20
	DefaultMaxValueBytes    = 512 << 10
	// DefaultRateLimit and DefaultRateBurst: requests per second allowed
	// per client, and the burst above that rate.
	DefaultRateLimit = httpapi.DefaultRateLimit
	DefaultRateBurst = httpapi.DefaultRateBurst
	// DefaultMaxWatchers bounds the blocking queries and Server-Sent
	// Events streams one node serves at once.
	DefaultMaxWatchers = httpapi.DefaultMaxWatchers
	// DefaultMaxHeaderBytes bounds the size of a request's headers (Go's
	// default is 1 MiB).
	DefaultMaxHeaderBytes = 64 << 10
	// HTTP server timeouts: to receive a request's headers, and to keep
	// an idle keep-alive connection open.
	HTTPReadHeaderTimeout = 10 * time.Second
	HTTPIdleTimeout       = 2 * time.Minute
)

// Peer is one member of a bootstrap list.
type Peer struct {
	ID       string
	RaftAddr string
	HTTPAddr string
}

// Config configures a coordd node. Zero fields take the defaults above.
type Config struct {
	// NodeID is this node's unique, stable Raft server id.
	NodeID string
	// DataDir holds the Raft log (bbolt), stable store and snapshots.
	DataDir string

	// RaftAddr is the address the Raft transport binds to.
	RaftAddr string
	// RaftAdvertise is the address peers dial; defaults to RaftAddr.
	RaftAdvertise string
	// HTTPAddr is the address the HTTP API binds to.
	HTTPAddr string
	// HTTPAdvertise is the address other nodes forward requests to;
	// defaults to HTTPAddr.
	HTTPAdvertise string

	// RaftListener and HTTPListener, when set, are used instead of binding
	// RaftAddr and HTTPAddr (tests pre-bind port 0). The server closes them.
	RaftListener net.Listener
	HTTPListener net.Listener

	// TLSCertFile, TLSKeyFile and TLSCAFile (PEM; all three or none) turn
	// on TLS: mutual TLS between nodes on Raft (both sides present a node
	// certificate of the CA) and https on the HTTP API, whose calls to
	// other nodes (forwarding, joining) also present the node certificate.
	// ReloadTLS re-reads the files.
	TLSCertFile string
	TLSKeyFile  string
	TLSCAFile   string
	// TLSRequireClientCert makes the HTTP API require a client
	// certificate of the CA (mutual TLS). Without it a client certificate
	// is verified if one is presented.
	TLSRequireClientCert bool

	// Bootstrap, when non-empty and the data dir holds no Raft state, forms a
	// new cluster of exactly these peers. Every peer must be given the same
	// list. It must include this node.
	Bootstrap []Peer
	// Join is the HTTP address of a running member to join through when the
	// data dir holds no Raft state.
	Join string
	// NonVoter joins as a non-voting member.
	NonVoter bool
	// ClusterName enters the cluster id derived from Bootstrap (like
	// etcd's --initial-cluster-token): give clusters bootstrapped with
	// identical peer lists different names. See clusterid.go.
	ClusterName string

	// Raft timing.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// Snapshot policy (see snapshots.go): a snapshot every
	// SnapshotInterval when anything changed, and whenever
	// SnapshotThreshold entries were appended since the last one (checked
	// every SnapshotThresholdCheck). TrailingLogs entries stay in the log
	// behind a snapshot; SnapshotRetain snapshots stay on disk.
	SnapshotInterval       time.Duration
	SnapshotThreshold      uint64
	SnapshotThresholdCheck time.Duration
	TrailingLogs           uint64
	SnapshotRetain         int
	// MaxSnapshotBytes bounds a backup uploaded to POST /v1/snapshot.
	MaxSnapshotBytes int64

	// Lease timing (see leases.go): zero fields take 2×ElectionTimeout and
	// DefaultLeaseCheckpointInterval. LeaseClock is the lease deadlines'
	// monotonic clock (tests move it); nil uses the system clock.
	LeaseExtension          time.Duration
	LeaseCheckpointInterval time.Duration
	LeaseClock              lease.Clock
	// Pprof serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// the HTTP listener. Off by default: profiles reveal internals and
	// cost CPU while they run.
	Pprof bool
	// NoEncodedForwarding makes a follower forward every write as the
	// client's whole HTTP request, instead of the validated, encoded
	// command (httpapi.Options.NoEncodedForwarding): for comparison and
	// as a way back should the encoded path misbehave.
	NoEncodedForwarding bool
	// NoWriteCoalescing makes a follower send each encoded command in a
	// peer request of its own instead of batching those that arrive while
	// a batch is in flight (httpapi.Options.NoWriteCoalescing).
	NoWriteCoalescing bool
	// UnsafeLeaseClockControl wraps the lease clock in a lease.SkewClock
	// that POST /v1/debug/lease-clock can jump or speed up: fault
	// injection only. Never set it in production.
	UnsafeLeaseClockControl bool
	// UnsafeClockOffset shifts this node's wall clock, as a clock that is
	// wrong by that much would: the stamps it starts its term with as
	// leader, and its skew estimate. Tests only; never in production.
	UnsafeClockOffset time.Duration

	// ACL turns access control on (see package acl): every request but
	// health checks and the one-time bootstrap needs a token. Every node
	// of a cluster must have the same setting.
	ACL bool
	// ACLToken is the token this node sends on its own requests to other
	// nodes (joining the cluster); it needs operator write.
	ACLToken string
	// MaxLeasesPerToken and MaxCandidates: see httpapi.Options (0: the
	// defaults, negative: no limit). The leader's values apply.
	MaxLeasesPerToken int
	MaxCandidates     int

	// MaxRequestBytes bounds an HTTP request body; MaxValueBytes a KV value.
	MaxRequestBytes int64
	MaxValueBytes   int
	// Request limits (see httpapi.Options and docs/api.md, "Limits"):
	// RateLimit is the requests per second allowed per client (bearer
	// token, else IP address) and RateBurst the burst above it (0: the
	// defaults, twice the rate for the burst; a negative RateLimit: no
	// limit). MaxWatchers bounds the blocking queries and event streams
	// served at once (0: DefaultMaxWatchers, negative: no limit).
	// MaxHeaderBytes bounds a request's headers (0: DefaultMaxHeaderBytes).
	RateLimit      float64
	RateBurst      int
	MaxWatchers    int
	MaxHeaderBytes int

	// PeerRaftAddrs, when set, makes this node dial each named peer's Raft
	// transport at the address given here instead of the one in the Raft
	// configuration: for proxies between nodes (the fault-injection suite
	// puts one on every link). It must name every peer; its own id is
	// ignored.
	PeerRaftAddrs map[string]string

	// State digests and shadow members (see digest.go): a replica digest
	// every DigestInterval applied entries (0: DefaultDigestInterval),
	// compared by the leader every DigestPoll (0: DefaultDigestPoll);
	// DigestsOff turns digests off (to measure their cost). CorruptCheck
	// is "warn" (the default) or "refuse": refuse stops serving and
	// leading while an alarm names this node. Shadow joins as a
	// non-voter that serves only stale reads; ReadShadowRate is the
	// fraction of reads this node mirrors to shadow members to compare
	// the answers (0: none).
	DigestInterval uint64
	DigestPoll     time.Duration
	DigestsOff     bool
	CorruptCheck   string
	Shadow         bool
	ReadShadowRate float64

	// Knobs let tests stop the server at chosen points; nil in production.
	Knobs *Knobs

	// Logger receives all logs, Raft's included. Nil logs to stderr at info.
	Logger hclog.Logger
	// Registry receives coordd's Prometheus metrics and serves /metrics.
	// Nil makes a private registry.
	Registry *prometheus.Registry
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("server: invalid config")

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	c.digestDefaults()
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, DefaultCommitTimeout)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.SnapshotThresholdCheck, DefaultSnapshotThresholdCheck)
	if c.MaxSnapshotBytes == 0 {
		c.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.LeaseExtension == 0 {
		c.LeaseExtension = 2 * c.ElectionTimeout
	}
	if c.LeaseCheckpointInterval == 0 {
		c.LeaseCheckpointInterval = DefaultLeaseCheckpointInterval
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "coordd", Level: hclog.Info})
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.NodeID == "":
		return bad("node id is required")
	case c.DataDir == "":
		return bad("data dir is required")
	case c.RaftAddr == "" && c.RaftListener == nil:
		return bad("raft address is required")
	case c.HTTPAddr == "" && c.HTTPListener == nil:
		return bad("http address is required")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return bad("leader lease timeout (%s) must not exceed heartbeat timeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return bad("election timeout (%s) must be at least the heartbeat timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	case len(c.Bootstrap) > 0 && c.Join != "":
		return bad("bootstrap and join are mutually exclusive")
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.validateDigest(); err != nil {
		return err
	}
	if len(c.Bootstrap) > 0 {
		seen := map[string]bool{}
		self := false
		for _, p := range c.Bootstrap {
			if p.ID == "" || p.RaftAddr == "" || p.HTTPAddr == "" {
				return bad("bootstrap peer %q needs id, raft address and http address", p.ID)
			}
			if seen[p.ID] {
				return bad("bootstrap peer %q listed twice", p.ID)
			}
			seen[p.ID] = true
			self = self || p.ID == c.NodeID
		}
		if !self {
			return bad("bootstrap list does not include this node (%q)", c.NodeID)
		}
	}
	return nil
}

// ParsePeers parses a bootstrap list. Each peer is written
// id=raftaddr,httpaddr; peers are separated by ';', whitespace or ','
// ("n1=127.0.0.1:7201,127.0.0.1:7101;n2=...").
func ParsePeers(s string) ([]Peer, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n'
	})
	var peers []Peer
	for i := 0; i < len(fields); i++ {
		id, raftAddr, ok := strings.Cut(fields[i], "=")
		if !ok || id == "" || raftAddr == "" {
			return nil, fmt.Errorf("%w: bootstrap peer %q: want id=raftaddr,httpaddr", ErrConfig, fields[i])
		}
		if i+1 >= len(fields) || strings.Contains(fields[i+1], "=") {
			return nil, fmt.Errorf("%w: bootstrap peer %q has no http address: want id=raftaddr,httpaddr", ErrConfig, id)
		}
		i++
		for _, a := range []string{raftAddr, fields[i]} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%w: bootstrap peer %q: address %q: %v", ErrConfig, id, a, err)
			}
		}
		peers = append(peers, Peer{ID: id, RaftAddr: raftAddr, HTTPAddr: fields[i]})
	}
	return peers, nil
}

// ParsePeerAddrs parses "id=host:port,id=host:port" (commas, semicolons or
// spaces between entries) for -peer-raft-addrs.
func ParsePeerAddrs(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' }) {
		id, addr, ok := strings.Cut(f, "=")
		if !ok || id == "" {
			return nil, fmt.Errorf("%w: peer address %q: want id=host:port", ErrConfig, f)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: peer %q: address %q: %v", ErrConfig, id, addr, err)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%w: peer %q listed twice", ErrConfig, id)
		}
		out[id] = addr
	}
	return out, nil
}

// Knobs are hooks for tests of failure paths that cannot be reached from
// the outside at a precise moment.
type Knobs struct {
	// AfterRestoreInstall runs once a restore is installed and before it
	// is finished; an error makes Restore return it there, as if the
	// leader had died at that point.
	AfterRestoreInstall func() error
	// FinishRestore runs before the leader's duties commit CmdRestored
	// for an installed restore; an error skips this attempt (they retry),
	// as if the leader could not commit it.
	FinishRestore func() error
}
