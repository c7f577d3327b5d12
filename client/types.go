package client

import "time"

// Member is one server of the cluster.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Status is a node's view of the cluster.
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
	// PID is the node's process id.
	PID int `json:"pid"`
}

// KV is one key. Value holds the bytes (decoded from base64 when the
// server had to encode them).
type KV struct {
	Key           string `json:"key"`
	Value         []byte `json:"-"`
	RawValue      string `json:"value"`
	ValueEncoding string `json:"value_encoding,omitempty"`
	CreateIndex   uint64 `json:"create_index"`
	ModifyIndex   uint64 `json:"modify_index"`
	Version       uint64 `json:"version"`
}

// WriteResult is the outcome of a put.
type WriteResult struct {
	Key         string `json:"key"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	Version     uint64 `json:"version"`
	Index       uint64 `json:"index"`
}

// DeleteResult is the outcome of a delete.
type DeleteResult struct {
	Deleted int    `json:"deleted"`
	Index   uint64 `json:"index"`
	Prev    *KV    `json:"prev,omitempty"`
}

// Attachment is something a lease holds.
type Attachment struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Lease is a lease as the leader sees it.
type Lease struct {
	ID          uint64       `json:"id"`
	TTLMs       int64        `json:"ttl_ms"`
	RemainingMs int64        `json:"remaining_ms"`
	Attached    []Attachment `json:"attached,omitempty"`
}

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return time.Duration(l.TTLMs) * time.Millisecond }

// Remaining is the time left according to the leader when it answered.
func (l *Lease) Remaining() time.Duration { return time.Duration(l.RemainingMs) * time.Millisecond }

// Candidate is a holder or waiting candidate of an election or lock.
type Candidate struct {
	Lease    uint64 `json:"lease"`
	Value    string `json:"value,omitempty"`
	Token    uint64 `json:"token,omitempty"`
	Since    string `json:"since,omitempty"`
	Position int    `json:"position"`
}

// ElectionState is an election or lock. Leader is nil when nobody holds it.
type ElectionState struct {
	Name        string      `json:"name"`
	Kind        string      `json:"kind"`
	Leader      *Candidate  `json:"leader"`
	Holders     []Candidate `json:"holders,omitempty"`
	Candidates  []Candidate `json:"candidates"`
	Limit       int         `json:"limit"`
	LockDelayMs int64       `json:"lock_delay_ms,omitempty"`
	Token       uint64      `json:"token"`
	Changes     uint64      `json:"changes"`
	Index       uint64      `json:"index"`
	Coalesced   uint64      `json:"coalesced,omitempty"`
}

// CampaignResult says whether a lease leads (with its fencing token) or
// where it waits.
type CampaignResult struct {
	Name     string        `json:"name"`
	Lease    uint64        `json:"lease"`
	Leader   bool          `json:"leader"`
	Token    uint64        `json:"token,omitempty"`
	Position int           `json:"position"`
	Election ElectionState `json:"election"`
}

// FencingCheck answers whether a token is a current holder's.
type FencingCheck struct {
	Name    string `json:"name"`
	Token   uint64 `json:"token"`
	Current bool   `json:"current"`
	Asked   uint64 `json:"asked"`
}
