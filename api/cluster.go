package api

import "time"

// Member describes one server of the cluster.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// JoinRequest is the body of POST /v1/cluster/members.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Voter defaults to true when absent.
	Voter *bool `json:"voter,omitempty"`
	// ClusterID is the joiner's cluster id, if it has one: the leader
	// refuses a node of another cluster.
	ClusterID string `json:"cluster_id,omitempty"`
}

// RemoveResult is the body of a successful DELETE /v1/cluster/members/{id}.
type RemoveResult struct {
	Removed string `json:"removed"`
}

// TransferRequest is the optional body of POST
// /v1/cluster/transfer-leadership.
type TransferRequest struct {
	// ID is the voter to hand leadership to; empty picks the most
	// up-to-date voter.
	ID string `json:"id,omitempty"`
}

// TransferResult answers POST /v1/cluster/transfer-leadership.
type TransferResult struct {
	Previous string `json:"previous"`
	// Leader is the new leader, when known.
	Leader string `json:"leader,omitempty"`
}

// Health is the body of GET /healthz and of a ready GET /readyz.
type Health struct {
	Status string `json:"status"`
	ID     string `json:"id"`
}

// Status is the body of GET /v1/status.
type Status struct {
	ID           string   `json:"id"`
	State        string   `json:"state"`
	Leader       *Member  `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_index"`
	LastContact  string   `json:"last_contact,omitempty"`
	Ready        bool     `json:"ready"`
	Members      []Member `json:"members"`
	// FirstLogIndex is the oldest entry still in the log: everything
	// before it was compacted into a snapshot.
	FirstLogIndex uint64 `json:"first_log_index"`
	// Snapshot is the latest snapshot on this node (nil: none yet).
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`
	// LastRestore is the last restore of a backup (nil: none).
	LastRestore *RestoreStatus `json:"last_restore,omitempty"`
	// PID is the node's process id (for benchmarks and operators that
	// read its CPU use or signal it on the same host).
	PID int `json:"pid"`
	// ClusterID is the id of the cluster this node belongs to ("" before
	// a new node learns it). Always present: its presence tells a build
	// that knows cluster ids.
	ClusterID string `json:"cluster_id"`
	// Integrity is this node's digest and alarm state; Alarms the
	// cluster's alarms (replicated: the same on every member).
	Integrity *IntegrityStatus `json:"integrity,omitempty"`
	Alarms    []Alarm          `json:"alarms,omitempty"`
}

// SnapshotStatus describes a node's latest snapshot.
type SnapshotStatus struct {
	Index      uint64  `json:"index"`
	Term       uint64  `json:"term"`
	SizeBytes  int64   `json:"size_bytes"`
	AgeSeconds float64 `json:"age_seconds"`
	// DurationMS is how long it took to write (0 when found at startup).
	DurationMS int64 `json:"duration_ms"`
}

// RestoreStatus describes the last restore of a backup.
type RestoreStatus struct {
	// Pending is true while a restore is installed but not finished.
	Pending     bool   `json:"pending"`
	BackupIndex uint64 `json:"backup_index"`
	Index       uint64 `json:"index,omitempty"`
}

// RestoreResult is the answer to POST /v1/snapshot.
type RestoreResult struct {
	// BackupIndex is the index the backup was taken at.
	BackupIndex uint64 `json:"backup_index"`
	// Index is the Raft index of the entry that finished the restore: every
	// token issued from now on, the restored holders' included, is at
	// least this.
	Index uint64 `json:"index"`
	// Bump is how far the index was raised above the backup's and the
	// cluster's (?bump, or the automatic bump of a restore into a cluster
	// whose history is behind the backup).
	Bump      uint64 `json:"bump"`
	Keys      int    `json:"keys"`
	Leases    int    `json:"leases"`
	Elections int    `json:"elections"`
	// Digest identifies the restored data (keys, leases, elections): the
	// same backup always gives the same digest.
	Digest string        `json:"digest"`
	Took   time.Duration `json:"-"`
	// TookMS is Took in milliseconds.
	TookMS int64 `json:"took_ms"`
}
