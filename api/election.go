package api

// MaxNameBytes bounds an election or lock name.
const MaxNameBytes = 256

// Candidate is one holder or waiting candidate of an election or lock.
type Candidate struct {
	Lease    uint64 `json:"lease"`
	Value    string `json:"value,omitempty"`
	Token    uint64 `json:"token,omitempty"`
	Since    string `json:"since,omitempty"`
	Position int    `json:"position"`
}

// Election describes an election or lock ("kind" says which). Leader is
// null when nobody holds it: "no leader" is always explicit. Changes counts
// holder changes since the name was created; a jump of more than one
// between two answers means intermediate changes were coalesced.
type Election struct {
	Name        string      `json:"name"`
	Kind        string      `json:"kind"`
	Leader      *Candidate  `json:"leader"`
	Holders     []Candidate `json:"holders,omitempty"`
	Candidates  []Candidate `json:"candidates"`
	Limit       int         `json:"limit"`
	LockDelayMs int64       `json:"lock_delay_ms,omitempty"`
	DelayUntil  string      `json:"delay_until,omitempty"`
	Token       uint64      `json:"token"`
	Changes     uint64      `json:"changes"`
	Index       uint64      `json:"index"`
	// Coalesced, on a stream event or when ?changes=N was given, counts the
	// holder changes that happened between the previous answer and this one
	// but were not reported one by one.
	Coalesced uint64 `json:"coalesced,omitempty"`
}

// StreamEvent is the data of one Server-Sent Event about an election: its
// state, whether the serving node knows a Raft leader (if not, the state may
// be stale), and how many holder changes were coalesced into this event.
type StreamEvent struct {
	Election
	KnownLeader bool `json:"known_leader"`
}

// CampaignRequest is the body of POST /v1/elections/{name}/campaign and of
// POST /v1/locks/{name}.
type CampaignRequest struct {
	// Lease is the candidate's lease. Leave it out and give TTL (or TTLMs)
	// instead to grant a new lease and campaign with it in one Raft entry:
	// the answer's lease is the new lease's ID.
	Lease uint64 `json:"lease,omitempty"`
	TTL   string `json:"ttl,omitempty"`
	TTLMs int64  `json:"ttl_ms,omitempty"`
	Value string `json:"value,omitempty"`
	// Wait is how long to wait to become leader ("30s"); empty or "0s"
	// returns at once with the queue position.
	Wait string `json:"wait,omitempty"`
	// Limit (locks only) makes a counting semaphore of that many holders.
	Limit int `json:"limit,omitempty"`
	// LockDelay (locks and elections): after a holder fails, no new holder
	// for this long ("5s").
	LockDelay string `json:"lock_delay,omitempty"`
}

// CampaignResponse says whether the lease leads, with its fencing token, or
// where it waits.
type CampaignResponse struct {
	Name  string `json:"name"`
	Lease uint64 `json:"lease"`
	// LeaseTTLMs is the TTL of a lease granted by this campaign (ttl in the
	// request); 0 when the request named an existing lease.
	LeaseTTLMs int64    `json:"lease_ttl_ms,omitempty"`
	Leader     bool     `json:"leader"`
	Token      uint64   `json:"token,omitempty"`
	Position   int      `json:"position"`
	Election   Election `json:"election"`
}

// HolderRequest is the body of resign, proclaim and lock release. Token 0
// (resign, release) withdraws a waiting candidacy.
type HolderRequest struct {
	Lease uint64 `json:"lease"`
	Token uint64 `json:"token"`
	Value string `json:"value,omitempty"`
}

// FencingCheck is the answer of GET /v1/fencing/{name}?token=T (Chubby's
// CheckSequencer): whether T is a current holder's token, and the name's
// current token (0 when nobody holds it).
type FencingCheck struct {
	Name    string `json:"name"`
	Token   uint64 `json:"token"`
	Current bool   `json:"current"`
	Asked   uint64 `json:"asked"`
}
