package fsm

import (
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
)

func init() {
	register(CmdLeaseGrant, "lease-grant", payloadV2, decodeLeaseGrant)
	register(CmdLeaseRevoke, "lease-revoke", payloadV1, func(_ uint8, d *dec) Payload { return LeaseRevoke{ID: d.uvarint()} })
	register(CmdLeaseExpire, "lease-expire", payloadV1, decodeLeaseExpire)
	register(CmdLeaseCheckpoint, "lease-checkpoint", payloadV1, decodeLeaseCheckpoint)
	register(CmdLeaseRenew, "lease-renew", payloadV1, func(_ uint8, d *dec) Payload { return LeaseRenew{ID: d.uvarint()} })
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
	s.leases = put(s.leases, u64key(l.ID), l, a.notify)
	countLease(s, l.Owner, 1, a.notify)
	res.Lease = l
}

// LeaseRevoke is the payload of CmdLeaseRevoke.
type LeaseRevoke struct{ ID uint64 }

// Type implements Payload.
func (LeaseRevoke) Type() CommandType { return CmdLeaseRevoke }

func (p LeaseRevoke) encode(e *enc) uint8 {
	e.uvarint(p.ID)
	return payloadV1
}

func (LeaseRevoke) validate() error { return nil }

func (p LeaseRevoke) apply(a *applier) {
	l, ok := a.s.Lease(p.ID)
	if !ok {
		a.res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.ID)
		return
	}
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
	l, ok := a.s.Lease(p.ID)
	if !ok {
		a.res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.ID)
		return
	}
	n := *l
	n.Epoch, n.Remaining, n.CheckpointStamp = a.s.index, 0, 0
	a.s.leases = put(a.s.leases, u64key(n.ID), &n, a.notify)
	a.res.Lease = &n
}

// LeaseExpiry names a lease and the epoch the proposer saw.
type LeaseExpiry struct{ ID, Epoch uint64 }

// LeaseExpire is the payload of CmdLeaseExpire: a batch of conditional
// expiries proposed by the leader.
type LeaseExpire struct{ Leases []LeaseExpiry }

// Type implements Payload.
func (LeaseExpire) Type() CommandType { return CmdLeaseExpire }

func (p LeaseExpire) encode(e *enc) uint8 {
	e.uvarint(uint64(len(p.Leases)))
	for _, x := range p.Leases {
		e.uvarint(x.ID)
		e.uvarint(x.Epoch)
	}
	return payloadV1
}

func decodeLeaseExpire(_ uint8, d *dec) Payload {
	var p LeaseExpire
	for range batchLen(d, 2) {
		p.Leases = append(p.Leases, LeaseExpiry{ID: d.uvarint(), Epoch: d.uvarint()})
	}
	return p
}

func (p LeaseExpire) validate() error { return checkBatch(len(p.Leases)) }

// checkBatch is the rule of a batch's length.
func checkBatch(n int) error {
	if n > maxBatch {
		return fmt.Errorf("batch of %d, the most is %d", n, maxBatch)
	}
	return nil
}

func (p LeaseExpire) apply(a *applier) {
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
		a.s.leases = put(a.s.leases, u64key(n.ID), &n, a.notify)
		a.res.Checkpointed = append(a.res.Checkpointed, c.ID)
	}
}

// removeLease deletes a lease and, in the same entry, releases every
// election and lock it holds or waits for (promoting the next candidates)
// and deletes the keys attached to it. failed says the holder failed
// (expiry or revoke, as opposed to a resign or unlock): lock-delay applies.
func removeLease(a *applier, l *Lease, failed bool) (promoted int) {
	s := a.s
	var atts [][]byte
	s.attach.Root().WalkPrefix(u64key(l.ID), func(k []byte, _ struct{}) bool {
		atts = append(atts, k)
		return false
	})
	for _, k := range atts {
		name := string(k[u64KeyLen+1:])
		switch k[u64KeyLen] {
		case attachElection:
			if old, ok := s.elections.Get([]byte(name)); ok {
				e := old.clone()
				e.remove(l.ID, failed, a.stamp)
				promoted += e.promote(s.index, a.stamp)
				storeElection(a, old, e)
			}
		case attachKey:
			if cur, ok := s.kv.Get([]byte(name)); ok && cur.Lease == l.ID {
				s.kv, _ = del(s.kv, []byte(name), a.notify)
				s.kvDeleteIndex = s.index
			}
		}
		s.attach, _ = del(s.attach, k, a.notify)
	}
	s.leases, _ = del(s.leases, u64key(l.ID), a.notify)
	countLease(s, l.Owner, -1, a.notify)
	return promoted
}

// LeaseCountOf is the number of leases owner holds.
func (s *State) LeaseCountOf(owner string) int {
	n, _ := s.leaseOwners.Get([]byte(owner))
	return n
}

// countLease adds d to owner's lease count.
func countLease(s *State, owner string, d int, notify bool) {
	n, _ := s.leaseOwners.Get([]byte(owner))
	if n+d <= 0 {
		s.leaseOwners, _ = del(s.leaseOwners, []byte(owner), notify)
		return
	}
	s.leaseOwners = put(s.leaseOwners, []byte(owner), n+d, notify)
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
