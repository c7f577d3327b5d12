package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// Errors a Node returns. Handlers branch on them with errors.Is; the server
// package aliases them so that errors.Is works whichever layer made them.
//
// Retry safety: ErrNotLeader, ErrNoLeader and ErrLeaderNotReady mean nothing
// was proposed, so a retry is always safe. ErrOutcomeUnknown means the
// command may or may not have been committed: retry it only with the same
// Idempotency-Key.
var (
	// ErrNotLeader means this node is not the Raft leader.
	ErrNotLeader = errors.New("coordd: not the leader")
	// ErrNoLeader means the cluster has no known leader right now.
	ErrNoLeader = errors.New("coordd: no leader")
	// ErrLeaderNotReady means this node just became leader and has not yet
	// applied its first entry of the term.
	ErrLeaderNotReady = errors.New("coordd: leader not ready")
	// ErrOutcomeUnknown means leadership was lost or the deadline passed
	// after the command was proposed.
	ErrOutcomeUnknown = errors.New("coordd: outcome unknown")
	// ErrShutdown means the node is shutting down.
	ErrShutdown = errors.New("coordd: shutting down")
	// ErrUnknownMember means no cluster member has the given id.
	ErrUnknownMember = errors.New("coordd: unknown member")
	// ErrCatchingUp means this node has not yet applied what was committed
	// when it started.
	ErrCatchingUp = errors.New("coordd: catching up")
	// ErrClusterMismatch means a node of another cluster asked to join
	// (409 cluster_mismatch).
	ErrClusterMismatch = errors.New("coordd: cluster id mismatch")
	// ErrRestoreInProgress means a restore is already running.
	ErrRestoreInProgress = errors.New("coordd: a restore is already in progress")
	// ErrBadRequest wraps a Node-side validation failure of caller input.
	ErrBadRequest = errors.New("coordd: bad request")
)

// Node is what the HTTP API needs from a coordd node. The server package
// implements it over Raft; tests of this package use a fake.
type Node interface {
	// ID is this node's Raft server id.
	ID() string
	// IsLeader reports whether this node currently believes it leads.
	IsLeader() bool
	// Leader returns the current leader as far as this node knows; ok is
	// false when there is none. HTTPAddr may be empty if not yet known.
	Leader() (leader api.Member, ok bool)
	// LeaderView is Leader with the moment the view began and a channel
	// closed as soon as it changes: another leader, or none (Raft lost it,
	// or this node has had no contact with it for longer than Raft allows).
	// A forward to the leader follows it: it is cancelled when the view
	// changes.
	LeaderView() LeaderView
	// Apply proposes cmd on this node, which must be the leader, and returns
	// its result once applied here.
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	// ReadBarrier returns once this node's state reflects every write that
	// was committed before the call (a linearizable read point). Only the
	// leader can do this; others return ErrNotLeader.
	ReadBarrier(ctx context.Context) error
	// State returns the current local state.
	State() *fsm.State
	// ResetCh is closed when the whole state is replaced by a snapshot.
	ResetCh() <-chan struct{}
	// Staleness describes how far behind the leader a local read may be.
	Staleness() Staleness
	// Status reports this node's view of the cluster.
	Status() api.Status
	// Members lists the Raft configuration with HTTP addresses.
	Members(ctx context.Context) ([]api.Member, error)
	// Join adds a server; this node must be the leader.
	Join(ctx context.Context, req api.JoinRequest) error
	// Remove removes a server; this node must be the leader.
	Remove(ctx context.Context, id string) error
	// TransferLeadership hands leadership to id, or to the most up-to-date
	// voter when id is empty; this node must be the leader.
	TransferLeadership(ctx context.Context, id string) error
	// Keepalive renews lease id on the leader (in memory, or through Raft
	// when it is the first keepalive after a checkpoint) and returns its
	// remaining TTL. ErrNotLeader on a follower; fsm.ErrLeaseNotFound when
	// the lease is unknown or already past its deadline.
	Keepalive(ctx context.Context, id uint64) (remaining time.Duration, err error)
	// KeepaliveMany renews many leases at once, as Keepalive does each:
	// remaining[i] is ids[i]'s time left, which right after its renewal is
	// its TTL, or negative when that lease is unknown or already past its
	// deadline. Any other error fails the call.
	KeepaliveMany(ctx context.Context, ids []uint64) (remaining []time.Duration, err error)
	// LeaseRemaining is the leader's view of a lease's remaining TTL.
	LeaseRemaining(id uint64) (time.Duration, error)
	// LeaseTTLRange is the range of TTLs a grant may ask for.
	LeaseTTLRange() (min, max time.Duration)
	// Restore replaces the replicated state with backup (a verified state
	// read from a snapshot file); this node must be the leader.
	Restore(ctx context.Context, backup *fsm.State, opts RestoreOptions) (api.RestoreResult, error)
	// PeerSecret is the cluster's peer secret, which authenticates the
	// requests nodes forward to each other (peerauth.go); nil while the
	// cluster has none yet.
	PeerSecret() []byte
	// Ready returns nil when the node can serve: it knows a leader and has
	// applied what was committed when it started (and, as leader, its first
	// entry of the term).
	Ready() error
}

// LeaderView is what a node knows of the leader at one moment.
type LeaderView struct {
	// Leader is the leader (HTTPAddr may be empty if not yet known);
	// meaningful only when Known.
	Leader api.Member
	// Known is false while the node knows of no leader.
	Known bool
	// Term is the Raft term in which the view began (0 if unknown).
	Term uint64
	// Since is when the view began: when this leader was first seen, or
	// when the last one was lost.
	Since time.Time
	// Changed is closed when the view is replaced by a newer one. Never
	// nil for a real node; a nil channel never fires.
	Changed <-chan struct{}
}

// RestoreOptions adjust a restore. The zero value is the safe default.
type RestoreOptions struct {
	// Bump raises the restored index by this much above the backup's and
	// the log's last index.
	Bump uint64
	// ExplicitBump says Bump was given (?bump=N, 0 included): without it,
	// a restore into a cluster whose history is behind the backup (a new
	// or wiped cluster) bumps by fsm.DefaultRestoreBump, so that no token
	// issued later is lower than one the backup's cluster issued.
	ExplicitBump bool
}

// Staleness describes a local read.
type Staleness struct {
	KnownLeader  bool
	LastContact  time.Duration // 0 on the leader
	AppliedIndex uint64
	CommitIndex  uint64
}
