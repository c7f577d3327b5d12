package api

import "time"

// Error codes of the integrity checks (see docs/api.md, "State digests and
// alarms").
const (
	// CodeStateCorrupt: this node's state differs from the cluster's (an
	// alarm names it) and it runs with -corrupt-check=refuse: it serves
	// no reads and does not lead until an operator disarms the alarm
	// (503: ask another node).
	CodeStateCorrupt = "state_corrupt"
	// CodeShadowMember: this node is a shadow member (coordd -shadow): it
	// follows the log but serves only stale reads (503: ask a voting
	// member).
	CodeShadowMember = "shadow_member"
	// CodeAlarmNotFound: no alarm names that member.
	CodeAlarmNotFound = "alarm_not_found"
)

// Digest kinds: why a member took a replica digest at an index.
const (
	DigestInterval = "interval" // a multiple of the digest interval
	DigestPoint    = "point"    // a digest point committed through the log
	DigestSnapshot = "snapshot" // the state a snapshot was taken of
	DigestRestore  = "restore"  // the state read from a snapshot
)

// Digest is one member's replica digest of its state after every entry up
// to Index (a SHA-256 of everything replicated but the index itself).
type Digest struct {
	Index  uint64 `json:"index"`
	Digest string `json:"digest"`
	Kind   string `json:"kind"`
}

// Digests is the body of GET /v1/digests: this node's recent digests,
// oldest first.
type Digests struct {
	Member       string   `json:"member"`
	Shadow       bool     `json:"shadow"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	Interval     uint64   `json:"interval"`
	Digests      []Digest `json:"digests"`
	// ApplyErrors counts the entries this node applied whose result was a
	// domain failure (a CAS conflict, a lease not found): the same on every
	// member that applied the same entries.
	ApplyErrors uint64 `json:"apply_errors"`
	// Skipped counts agreed points this node did not digest because its
	// digest worker was behind.
	Skipped uint64 `json:"skipped"`
}

// DigestPointResult answers POST /v1/digests: every member takes a digest
// at Index.
type DigestPointResult struct {
	Index uint64 `json:"index"`
}

// Alarm is a member's alarm (replicated: every member reports the same).
type Alarm struct {
	Member string `json:"member"`
	// Kind is "digest_mismatch".
	Kind string `json:"kind"`
	// Index is the agreed index whose digests differed; Digest the
	// member's, Expected the one most members reported.
	Index    uint64 `json:"index"`
	Digest   string `json:"digest"`
	Expected string `json:"expected"`
	Detail   string `json:"detail,omitempty"`
	// RaisedIndex is the Raft index of the entry that raised the alarm,
	// RaisedAt its leader's stamp.
	RaisedIndex uint64    `json:"raised_index"`
	RaisedAt    time.Time `json:"raised_at"`
}

// AlarmList is the body of GET /v1/alarms.
type AlarmList struct {
	Alarms []Alarm `json:"alarms"`
}

// DisarmRequest is the body of POST /v1/alarms/disarm: the member whose
// alarm to clear, or every alarm when Member is empty and All is true.
type DisarmRequest struct {
	Member string `json:"member,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// DisarmResult answers POST /v1/alarms/disarm.
type DisarmResult struct {
	Disarmed int    `json:"disarmed"`
	Index    uint64 `json:"index"`
}

// IntegrityStatus is the integrity part of GET /v1/status.
type IntegrityStatus struct {
	// CorruptCheck is this node's -corrupt-check ("warn" or "refuse").
	CorruptCheck string `json:"corrupt_check"`
	// Refusing is true while this node refuses to serve (refuse mode and
	// an alarm names it).
	Refusing bool `json:"refusing"`
	// Shadow is true on a shadow member.
	Shadow   bool   `json:"shadow"`
	Interval uint64 `json:"digest_interval"`
	// LastDigest is this node's latest digest.
	LastDigest *Digest `json:"last_digest,omitempty"`
	// Compared and Mismatches count the comparisons this node made as
	// leader (member digests checked against the majority's).
	Compared   uint64 `json:"compared"`
	Mismatches uint64 `json:"mismatches"`
	// LastAgreedIndex is the latest index where every member that
	// reported agreed (on the leader).
	LastAgreedIndex uint64 `json:"last_agreed_index,omitempty"`
}

// ShadowStatus describes one member as the leader's digest comparison
// sees it (GET /v1/shadow/status lists every non-voter, shadows first, or
// every member with ?all).
type ShadowStatus struct {
	Member string `json:"member"`
	Shadow bool   `json:"shadow"`
	Voter  bool   `json:"voter"`
	// Compared counts the agreed points where its digest was compared,
	// Agreed those where it matched, Mismatches those where it did not.
	Compared   uint64 `json:"compared"`
	Agreed     uint64 `json:"agreed"`
	Mismatches uint64 `json:"mismatches"`
	// FirstIndex and LastAgreedIndex bound the agreement: AgreedEntries
	// is LastAgreedIndex-FirstIndex when nothing mismatched since.
	FirstIndex      uint64 `json:"first_index"`
	LastAgreedIndex uint64 `json:"last_agreed_index"`
	AgreedEntries   uint64 `json:"agreed_entries"`
	// AppliedIndex is the member's applied index when last asked;
	// LagEntries the leader's applied index minus it.
	AppliedIndex uint64 `json:"applied_index"`
	LagEntries   uint64 `json:"lag_entries"`
	ApplyErrors  uint64 `json:"apply_errors"`
	// ReadsCompared and ReadsDiffered count the mirrored reads (read
	// shadowing) compared with this member's answers and those that
	// differed.
	ReadsCompared uint64 `json:"reads_compared"`
	ReadsDiffered uint64 `json:"reads_differed"`
	// Error is the last failure to reach the member ("" when fine).
	Error string `json:"error,omitempty"`
}

// ShadowStatusList is the body of GET /v1/shadow/status (served by the
// leader; other nodes forward it).
type ShadowStatusList struct {
	Leader       string         `json:"leader"`
	AppliedIndex uint64         `json:"applied_index"`
	Members      []ShadowStatus `json:"members"`
}
