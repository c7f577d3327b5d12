package api

import "time"

// LeaseGrantRequest is the body of POST /v1/leases. Give ttl as a duration
// ("10s", "750ms") or ttl_ms in milliseconds.
type LeaseGrantRequest struct {
	TTL   string `json:"ttl,omitempty"`
	TTLMs int64  `json:"ttl_ms,omitempty"`
}

// Lease describes a lease. RemainingMs is the leader's view of the time
// left: a client should count its own deadline from the send time of the
// keepalive that returned it, minus a margin for clock drift.
type Lease struct {
	ID uint64 `json:"id"`
	// TTLText is the TTL as a Go duration ("10s").
	TTLText     string       `json:"ttl"`
	TTLMs       int64        `json:"ttl_ms"`
	RemainingMs int64        `json:"remaining_ms"`
	Attached    []Attachment `json:"attached,omitempty"`
}

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return time.Duration(l.TTLMs) * time.Millisecond }

// Remaining is the time left according to the leader when it answered.
func (l *Lease) Remaining() time.Duration { return time.Duration(l.RemainingMs) * time.Millisecond }

// Attachment is something a lease holds: a key ("key"), an election
// ("election") or a lock ("lock").
type Attachment struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// LeaseRevokeResult is the body of a successful DELETE /v1/leases/{id}.
type LeaseRevokeResult struct {
	ID          uint64 `json:"id"`
	Revoked     bool   `json:"revoked"`
	RemainingMs int64  `json:"remaining_ms"`
	Index       uint64 `json:"index"`
}

// MaxKeepaliveBatch is the most leases one POST /v1/leases/keepalive may
// renew.
const MaxKeepaliveBatch = 10000

// KeepaliveManyRequest is the body of POST /v1/leases/keepalive.
type KeepaliveManyRequest struct {
	IDs []uint64 `json:"ids"`
}

// KeepaliveManyResponse answers POST /v1/leases/keepalive: the leases
// renewed, in the order asked, and the ids that were not found (unknown,
// revoked or already past their deadline: their holders lost them).
type KeepaliveManyResponse struct {
	Leases   []KeepaliveManyLease `json:"leases"`
	NotFound []uint64             `json:"not_found"`
}

// KeepaliveManyLease is one renewed lease of a KeepaliveManyResponse.
type KeepaliveManyLease struct {
	ID          uint64 `json:"id"`
	TTLMs       int64  `json:"ttl_ms"`
	RemainingMs int64  `json:"remaining_ms"`
}

// Remaining is the time left according to the leader when it answered.
func (l *KeepaliveManyLease) Remaining() time.Duration {
	return time.Duration(l.RemainingMs) * time.Millisecond
}
