package fsm

import (
	"errors"
	"fmt"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/api"
)

// The lease domain: time-to-live sessions that keys, elections and locks
// attach to.

// Lease command types. Values are part of the log format.
const (
	CmdLeaseGrant      CommandType = 5
	CmdLeaseRevoke     CommandType = 6
	CmdLeaseExpire     CommandType = 7
	CmdLeaseCheckpoint CommandType = 8
	CmdLeaseRenew      CommandType = 9
	CmdLeaseRelease    CommandType = 19
	CmdLeaseRenewMany  CommandType = 20
)

func init() {
	register(CmdLeaseGrant, "lease-grant", payloadV2, decodeLeaseGrant)
	register(CmdLeaseRevoke, "lease-revoke", payloadV2, func(v uint8, d *dec) Payload {
		p := LeaseRevoke{ID: d.uvarint()}
		if v == payloadV2 {
			p.Release = decodeRelease(d)
		}
		return p
	})
	register(CmdLeaseExpire, "lease-expire", payloadV2, decodeLeaseExpire)
	register(CmdLeaseCheckpoint, "lease-checkpoint", payloadV1, decodeLeaseCheckpoint)
	register(CmdLeaseRenew, "lease-renew", payloadV1, func(_ uint8, d *dec) Payload { return LeaseRenew{ID: d.uvarint()} })
	register(CmdLeaseRenewMany, "lease-renew-many", payloadV1, decodeLeaseRenewMany)
	register(CmdLeaseRelease, "lease-release", payloadV1, func(_ uint8, d *dec) Payload {
		return LeaseRelease{ID: d.uvarint(), Release: decodeRelease(d)}
	})
}

// Releasing what a lease held, in bounded entries.
//
// The expiry or revoke of a lease ends the lease in its entry: from that
// entry on it cannot be renewed, checkpointed, campaigned or written
// with, and nobody is released before it. A lease may hold many
// elections, locks and keys (10,000 or more); releasing them all in that
// one entry would hold up every other request for as long as it applies
// (tens of milliseconds). So an expiry or revoke that carries a release
// limit (payload version 2: what the server proposes) releases at most
// that many attachments itself, and the leader releases the rest in
// LeaseRelease entries of at most as many each, one after the other,
// until none is left (any leader: the state says which dead leases still
// hold something). Each election or lock is released exactly as before
// in the entry that releases it: its next candidate is promoted there,
// with that entry's index as fencing token, and the lock-delay (the
// holder failed) starts at that entry's stamp. Until its entry, a lock
// still shows the dead lease as its holder, as it did before the expiry
// was committed: as if its release had been proposed those few
// milliseconds later; but its holder can no longer act through the
// lease (proclaim, resign, a transaction's fence compare fail with
// ErrLeaseNotFound / as not current). A key attached to the lease is
// deleted in the entry that releases it. An entry of version 1 (written
// before limits existed) releases everything, as it always did.

// ReleasePerEntry is the release limit the server proposes: the most
// attachments (elections, locks, keys) one entry releases
// (BenchmarkApply_ExpireLeaseWith10kLocksAndKeys_Bounded, 2 shared cores:
// the longest entry 23 ms [22..29] for 1,000 locks handed over and keys
// deleted; the whole release of 10,000 of each in one entry took 482 ms
// before and 151 ms with one transaction per tree).
const ReleasePerEntry = 1000

// MaxRelease bounds a release limit.
const MaxRelease = 1 << 20

func decodeRelease(d *dec) int {
	n := d.count(MaxRelease)
	if d.err == nil && n == 0 {
		d.fail(errors.New("explicit zero release limit"))
	}
	return n
}

func checkRelease(n int) error {
	if n < 0 || n > MaxRelease {
		return fmt.Errorf("release limit %d out of range 0..%d", n, MaxRelease)
	}
	return nil
}

// LeaseRelease is the payload of CmdLeaseRelease: release at most Release
// (> 0) of what lease ID, expired or revoked, still holds. It changes
// nothing if the lease is alive or holds nothing.
type LeaseRelease struct {
	ID      uint64
	Release int
}

// Type implements Payload.
func (LeaseRelease) Type() CommandType { return CmdLeaseRelease }

func (p LeaseRelease) encode(e *enc) uint8 {
	e.uvarint(p.ID)
	e.uvarint(uint64(p.Release))
	return payloadV1
}

func (p LeaseRelease) validate() error {
	if p.Release < 1 {
		return fmt.Errorf("release limit %d", p.Release)
	}
	return checkRelease(p.Release)
}

func (p LeaseRelease) apply(a *applier) {
	s := a.s
	if _, ok := s.unreleased.Get(u64key(p.ID)); !ok {
		return
	}
	if _, alive := s.Lease(p.ID); alive {
		return // never: a lease's ID is its grant's index, never reused
	}
	a.budget = p.Release
	a.res.Promoted += releaseAttachments(a, p.ID, true)
}

// MaxLeaseTTL is the longest TTL, in milliseconds, a lease command may
// carry (about 34 years): far above what the API grants (a day), far
// below overflowing a time.Duration.
const MaxLeaseTTL = 1 << 40

// Lease is a time-to-live session that elections, locks and keys attach to.
//
// The lease's deadline is not replicated: the leader keeps it in memory
// (package lease) and proposes expiry. What is replicated is what a new
// leader needs to resume safely: the TTL, the checkpointed remainder and the
// epoch that makes expiry proposals conditional.
type Lease struct {
	// ID is the Raft index of the grant: unique and increasing.
	ID uint64
	// TTL in milliseconds.
	TTL int64
	// Epoch is the Raft index of the last grant, checkpoint or renew of this
	// lease. An expiry proposal names the epoch it saw; if the lease was
	// checkpointed or renewed since, the expiry is ignored.
	Epoch uint64
	// Remaining is the remaining TTL in milliseconds recorded by the last
	// checkpoint; 0 means none since the grant or the last renew.
	Remaining int64
	// CheckpointStamp is the stamp of that checkpoint (0 when Remaining is 0).
	CheckpointStamp int64
	// GrantStamp is the leader's wall clock at the grant.
	GrantStamp int64
	// Owner is the accessor id of the token that granted the lease (empty
	// without ACLs): leases are counted per owner against a limit.
	Owner string
}

// LeaseGrant is the payload of CmdLeaseGrant. TTL is in milliseconds; a
// TTL that is not positive is refused when applied (ErrBadTTL).
//
// Owner (the accessor id of the token that asked; empty without ACLs) and
// MaxLeases (the proposing leader's limit of leases per owner; 0: none)
// are stamped by the leader, so that every replica refuses or grants
// alike whatever its own configuration (payload version 2).
type LeaseGrant struct {
	TTL       int64
	Owner     string
	MaxLeases int
}

// Type implements Payload.
func (LeaseGrant) Type() CommandType { return CmdLeaseGrant }

// encode writes ttl, and for version 2 (an owner or a limit) owner
// maxLeases.
func (p LeaseGrant) encode(e *enc) uint8 {
	e.varint(p.TTL)
	if p.Owner == "" && p.MaxLeases == 0 {
		return payloadV1
	}
	e.str(p.Owner)
	e.uvarint(uint64(p.MaxLeases))
	return payloadV2
}

func decodeLeaseGrant(v uint8, d *dec) Payload {
	p := LeaseGrant{TTL: d.varint()}
	if v == payloadV2 {
		p.Owner, p.MaxLeases = d.str(), d.count(MaxLimit)
	}
	return p
}

func (p LeaseGrant) validate() error {
	if p.TTL > MaxLeaseTTL {
		return fmt.Errorf("ttl %d ms above %d", p.TTL, MaxLeaseTTL)
	}
	if err := checkOwner(p.Owner); err != nil {
		return err
	}
	return checkLimit("leases per token", p.MaxLeases)
}

// checkOwner is the rule of a lease owner: none, or an accessor id.
func checkOwner(owner string) error {
	if owner != "" && !acl.ValidAccessorID(owner) {
		return fmt.Errorf("lease owner %q is not an accessor id", owner)
	}
	return nil
}

func (p LeaseGrant) apply(a *applier) { grantLease(a, p.TTL, p.Owner, p.MaxLeases) }

// grantLease creates a lease whose ID is this entry's index (a grant, or a
// campaign that grants its own lease).
func grantLease(a *applier, ttl int64, owner string, maxLeases int) {
	s, res := a.s, a.res
	if ttl <= 0 {
		res.Err = fmt.Errorf("%w: ttl must be positive", ErrBadTTL)
		return
	}
	if err := leaseLimitErr(s, owner, maxLeases); err != nil {
		res.Err = err
		return
	}
	l := &Lease{ID: s.index, TTL: ttl, Epoch: s.index, GrantStamp: a.stamp, Owner: owner}
	s.leases.put(s.w, u64key(l.ID), l)
	countLease(s, l.Owner, 1)
	res.Lease = l
}

// LeaseRevoke is the payload of CmdLeaseRevoke. Release (> 0: payload
// version 2) bounds what this entry releases of what the lease held (see
// LeaseRelease); 0 releases everything.
type LeaseRevoke struct {
	ID      uint64
	Release int
}

// Type implements Payload.
func (LeaseRevoke) Type() CommandType { return CmdLeaseRevoke }

func (p LeaseRevoke) encode(e *enc) uint8 {
	e.uvarint(p.ID)
	if p.Release == 0 {
		return payloadV1
	}
	e.uvarint(uint64(p.Release))
	return payloadV2
}

func (p LeaseRevoke) validate() error { return checkRelease(p.Release) }

func (p LeaseRevoke) apply(a *applier) {
	l, ok := a.s.Lease(p.ID)
	if !ok {
		a.res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.ID)
		return
	}
	a.budget = p.Release
	a.res.Lease = l
	a.res.Promoted += removeLease(a, l, true)
}

// LeaseRenew is the payload of CmdLeaseRenew: the first keepalive after a
// checkpoint, committed before it is acknowledged.
type LeaseRenew struct{ ID uint64 }

// Type implements Payload.
func (LeaseRenew) Type() CommandType { return CmdLeaseRenew }

func (p LeaseRenew) encode(e *enc) uint8 {
	e.uvarint(p.ID)
	return payloadV1
}

func (LeaseRenew) validate() error { return nil }

func (p LeaseRenew) apply(a *applier) {
	n := renewLease(a.s, p.ID)
	if n == nil {
		a.res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.ID)
		return
	}
	a.res.Lease = n
}

// LeaseRenewMany is the payload of CmdLeaseRenewMany: LeaseRenew for many
// leases in one entry, what a keepalive of many leases commits for those
// of them that were checkpointed. A lease that no longer exists is
// skipped; Result.Renewed lists the leases renewed, in the order given.
//
// A node of a build from before this command cannot apply it (it stops,
// asking to be upgraded): upgrade the followers first, as for any new
// entry.
type LeaseRenewMany struct{ IDs []uint64 }

// Type implements Payload.
func (LeaseRenewMany) Type() CommandType { return CmdLeaseRenewMany }

func (p LeaseRenewMany) encode(e *enc) uint8 {
	e.uvarint(uint64(len(p.IDs)))
	for _, id := range p.IDs {
		e.uvarint(id)
	}
	return payloadV1
}

func decodeLeaseRenewMany(_ uint8, d *dec) Payload {
	var p LeaseRenewMany
	for range batchLen(d, 1) {
		p.IDs = append(p.IDs, d.uvarint())
	}
	return p
}

func (p LeaseRenewMany) validate() error { return checkBatch(len(p.IDs)) }

func (p LeaseRenewMany) apply(a *applier) {
	for _, id := range p.IDs {
		if renewLease(a.s, id) != nil {
			a.res.Renewed = append(a.res.Renewed, id)
		}
	}
}

// renewLease clears a lease's checkpointed remainder and starts a new
// epoch at this entry; it returns the renewed lease, or nil if there is
// none of that id.
func renewLease(s *State, id uint64) *Lease {
	l, ok := s.Lease(id)
	if !ok {
		return nil
	}
	n := *l
	n.Epoch, n.Remaining, n.CheckpointStamp = s.index, 0, 0
	s.leases.put(s.w, u64key(n.ID), &n)
	return &n
}

// LeaseExpiry names a lease and the epoch the proposer saw.
type LeaseExpiry struct{ ID, Epoch uint64 }

// LeaseExpire is the payload of CmdLeaseExpire: a batch of conditional
// expiries proposed by the leader. Release (> 0: payload version 2)
// bounds what this entry releases of what the leases held, all together
// (see LeaseRelease); 0 releases everything.
type LeaseExpire struct {
	Leases  []LeaseExpiry
	Release int
}

// Type implements Payload.
func (LeaseExpire) Type() CommandType { return CmdLeaseExpire }

func (p LeaseExpire) encode(e *enc) uint8 {
	e.uvarint(uint64(len(p.Leases)))
	for _, x := range p.Leases {
		e.uvarint(x.ID)
		e.uvarint(x.Epoch)
	}
	if p.Release == 0 {
		return payloadV1
	}
	e.uvarint(uint64(p.Release))
	return payloadV2
}

func decodeLeaseExpire(v uint8, d *dec) Payload {
	var p LeaseExpire
	for range batchLen(d, 2) {
		p.Leases = append(p.Leases, LeaseExpiry{ID: d.uvarint(), Epoch: d.uvarint()})
	}
	if v == payloadV2 {
		p.Release = decodeRelease(d)
	}
	return p
}

func (p LeaseExpire) validate() error {
	if err := checkRelease(p.Release); err != nil {
		return err
	}
	return checkBatch(len(p.Leases))
}

// checkBatch is the rule of a batch's length.
func checkBatch(n int) error {
	if n > maxBatch {
		return fmt.Errorf("batch of %d, the most is %d", n, maxBatch)
	}
	return nil
}

func (p LeaseExpire) apply(a *applier) {
	a.budget = p.Release
	for _, x := range p.Leases {
		l, ok := a.s.Lease(x.ID)
		if !ok || l.Epoch != x.Epoch {
			// Gone already, or checkpointed/renewed since the proposer
			// looked: a stale proposal, ignored.
			continue
		}
		a.res.Promoted += removeLease(a, l, true)
		a.res.Expired = append(a.res.Expired, x.ID)
	}
}

// LeaseRemaining is one checkpointed lease: its remaining TTL in
// milliseconds, conditional on the epoch.
type LeaseRemaining struct {
	ID, Epoch uint64
	Remaining int64
}

// LeaseCheckpoint is the payload of CmdLeaseCheckpoint.
type LeaseCheckpoint struct{ Leases []LeaseRemaining }

// Type implements Payload.
func (LeaseCheckpoint) Type() CommandType { return CmdLeaseCheckpoint }

func (p LeaseCheckpoint) encode(e *enc) uint8 {
	e.uvarint(uint64(len(p.Leases)))
	for _, x := range p.Leases {
		e.uvarint(x.ID)
		e.uvarint(x.Epoch)
		e.varint(x.Remaining)
	}
	return payloadV1
}

func decodeLeaseCheckpoint(_ uint8, d *dec) Payload {
	var p LeaseCheckpoint
	for range batchLen(d, 3) {
		p.Leases = append(p.Leases, LeaseRemaining{ID: d.uvarint(), Epoch: d.uvarint(), Remaining: d.varint()})
	}
	return p
}

func (p LeaseCheckpoint) validate() error {
	for _, x := range p.Leases {
		if x.Remaining < 0 || x.Remaining > MaxLeaseTTL {
			return fmt.Errorf("lease %d: remaining %d ms out of range 0..%d", x.ID, x.Remaining, MaxLeaseTTL)
		}
	}
	return checkBatch(len(p.Leases))
}

func (p LeaseCheckpoint) apply(a *applier) {
	for _, c := range p.Leases {
		l, ok := a.s.Lease(c.ID)
		if !ok || l.Epoch != c.Epoch {
			continue
		}
		n := *l
		n.Epoch, n.Remaining, n.CheckpointStamp = a.s.index, max(c.Remaining, 1), a.stamp
		a.s.leases.put(a.s.w, u64key(n.ID), &n)
		a.res.Checkpointed = append(a.res.Checkpointed, c.ID)
	}
}

// removeLease deletes a lease and releases every election and lock it
// holds or waits for (promoting the next candidates) and deletes the keys
// attached to it: all in this entry, or, when the entry carries a release
// limit (a.budget), as many as the limit leaves, the rest in LeaseRelease
// entries (see ReleasePerEntry). failed says the holder failed (expiry
// or revoke, as opposed to a resign or unlock): lock-delay applies.
func removeLease(a *applier, l *Lease, failed bool) (promoted int) {
	s := a.s
	s.leases.del(s.w, u64key(l.ID))
	countLease(s, l.Owner, -1)
	return releaseAttachments(a, l.ID, failed)
}

// releaseAttachments releases what the dead lease id holds, at most
// a.budget of it when a.budget > 0 (and takes that from the budget), and
// records in the unreleased index whether anything is left.
func releaseAttachments(a *applier, id uint64, failed bool) (promoted int) {
	s := a.s
	var atts [][]byte
	more := false
	s.attach.Root().WalkPrefix(u64key(id), func(k []byte, _ struct{}) bool {
		if a.budget > 0 && len(atts) >= a.budget || a.budget < 0 {
			more = true
			return true
		}
		atts = append(atts, k)
		return false
	})
	if a.budget > 0 {
		if a.budget -= len(atts); a.budget == 0 {
			a.budget = -1 // spent: nothing more in this entry
		}
	}
	for _, k := range atts {
		name := string(k[u64KeyLen+1:])
		switch k[u64KeyLen] {
		case attachElection:
			if old, ok := s.elections.Get([]byte(name)); ok {
				e := old.clone()
				e.remove(id, failed, a.stamp)
				promoted += e.promote(s.index, a.stamp)
				storeElection(a, old, e)
			}
		case attachKey:
			if cur, ok := s.kv.Get([]byte(name)); ok && cur.Lease == id {
				s.kv.del(s.w, []byte(name))
				s.kvDeleteIndex = s.index
			}
		}
		s.attach.del(s.w, k)
	}
	if more {
		s.unreleased.put(s.w, u64key(id), struct{}{})
	} else {
		s.unreleased.del(s.w, u64key(id))
	}
	return promoted
}

// UnreleasedLeases returns up to n IDs, lowest first, of expired or
// revoked leases that still hold something to release (LeaseRelease).
func (s *State) UnreleasedLeases(n int) []uint64 {
	var out []uint64
	s.unreleased.Root().Walk(func(k []byte, _ struct{}) bool {
		if len(out) >= n {
			return true
		}
		out = append(out, keyU64(k))
		return false
	})
	return out
}

// UnreleasedCount is the number of expired or revoked leases that still
// hold something to release.
func (s *State) UnreleasedCount() int { return s.unreleased.Len() }

// LeaseCountOf is the number of leases owner holds.
func (s *State) LeaseCountOf(owner string) int {
	n, _ := s.leaseOwners.Get([]byte(owner))
	return n
}

// countLease adds d to owner's lease count.
func countLease(s *State, owner string, d int) {
	n, _ := s.leaseOwners.Get([]byte(owner))
	if n+d <= 0 {
		s.leaseOwners.del(s.w, []byte(owner))
		return
	}
	s.leaseOwners.put(s.w, []byte(owner), n+d)
}

// leaseLimitErr says whether owner may not be granted another lease under
// the proposer's limit max (0: none).
func leaseLimitErr(s *State, owner string, max int) error {
	if max > 0 && s.LeaseCountOf(owner) >= max {
		return fmt.Errorf("%w: the token holds %d leases, the limit is %d (revoke some, or raise -max-leases-per-token)",
			ErrTooManyLeases, s.LeaseCountOf(owner), max)
	}
	return nil
}

// Attachment kinds, part of the attach index key.
const (
	attachElection = 'e' // an election or a lock
	attachKey      = 'k'
)

// attachKeyOf is the attach index key: lease id (u64KeyLen bytes), kind
// (one byte), name (the rest, possibly empty: "" is a key).
func attachKeyOf(lease uint64, kind byte, name string) []byte {
	k := appendU64Key(make([]byte, 0, u64KeyLen+1+len(name)), lease)
	return append(append(k, kind), name...)
}

// Lease returns the lease with the given id.
func (s *State) Lease(id uint64) (*Lease, bool) { return s.leases.Get(u64key(id)) }

// Leases returns every lease in id order.
func (s *State) Leases() []*Lease {
	out := make([]*Lease, 0, s.leases.Len())
	s.leases.Root().Walk(func(_ []byte, l *Lease) bool {
		out = append(out, l)
		return false
	})
	return out
}

// LeaseCount is the number of leases.
func (s *State) LeaseCount() int { return s.leases.Len() }

// Attachments lists what lease id holds: keys ("key"), elections
// ("election") and locks ("lock").
func (s *State) Attachments(id uint64) []api.Attachment {
	var out []api.Attachment
	s.attach.Root().WalkPrefix(u64key(id), func(k []byte, _ struct{}) bool {
		a := api.Attachment{Name: string(k[u64KeyLen+1:]), Kind: "key"}
		if k[u64KeyLen] == attachElection {
			a.Kind = KindElection.String()
			if e, ok := s.Election(a.Name); ok {
				a.Kind = e.Kind.String()
			}
		}
		out = append(out, a)
		return false
	})
	return out
}

// WatchLease returns the lease (nil if gone) and a channel closed when it
// may have changed or gone.
func (s *State) WatchLease(id uint64) (*Lease, <-chan struct{}) {
	w, l, ok := s.leases.Root().GetWatch(u64key(id))
	if !ok {
		return nil, w
	}
	return l, w
}

// Snapshot records of the lease domain.

// encodeLease writes a lease inside a record: id ttl epoch remaining
// checkpointStamp grantStamp (the lease record adds [owner]).
func encodeLease(e *enc, l *Lease) {
	e.uvarint(l.ID)
	e.varint(l.TTL)
	e.uvarint(l.Epoch)
	e.varint(l.Remaining)
	e.varint(l.CheckpointStamp)
	e.varint(l.GrantStamp)
}

func decodeLease(d *dec) *Lease {
	return &Lease{ID: d.uvarint(), TTL: d.varint(), Epoch: d.uvarint(), Remaining: d.varint(),
		CheckpointStamp: d.varint(), GrantStamp: d.varint()}
}

// validateLease is the rule of a stored lease at state index: granted at
// or before that index with a TTL a grant accepts, an epoch from its grant
// to the index, a remainder within range, an owner that is an accessor id.
func validateLease(l *Lease, index uint64) error {
	switch {
	case l.ID == 0 || l.ID > index || l.Epoch < l.ID || l.Epoch > index:
		return fmt.Errorf("lease %d: epoch %d at state index %d", l.ID, l.Epoch, index)
	case l.TTL <= 0 || l.TTL > MaxLeaseTTL || l.Remaining < 0 || l.Remaining > MaxLeaseTTL:
		return fmt.Errorf("lease %d: ttl %d ms, remaining %d ms", l.ID, l.TTL, l.Remaining)
	}
	return checkOwner(l.Owner)
}

// validateAttach is the rule of an attach index key: a lease id, then a
// known kind, then a name (an election or lock has one; "" is a key).
func validateAttach(k []byte) error {
	if len(k) < u64KeyLen+1 {
		return fmt.Errorf("attach key of %d bytes", len(k))
	}
	for _, c := range k[:u64KeyLen] {
		if c > 0xf {
			return fmt.Errorf("attach key %x: not a lease id", k)
		}
	}
	switch k[u64KeyLen] {
	case attachKey:
	case attachElection:
		if len(k) == u64KeyLen+1 {
			return fmt.Errorf("attach key %x: an election without a name", k)
		}
	default:
		return fmt.Errorf("attach key %x: kind %q", k, k[u64KeyLen])
	}
	return nil
}
