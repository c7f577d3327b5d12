package fsm

import (
	"fmt"

	"github.com/coordd/coordd/api"
)

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
	attachElection = 'e'
	attachKey      = 'k'
)

// attachKeyOf is the attach index key: lease id, kind, name.
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

// Attachments lists what lease id holds.
func (s *State) Attachments(id uint64) []api.Attachment {
	var out []api.Attachment
	s.attach.Root().WalkPrefix(u64key(id), func(k []byte, _ struct{}) bool {
		a := api.Attachment{Name: string(k[u64KeyLen+1:]), Kind: "key"}
		if k[u64KeyLen] == attachElection {
			a.Kind = "election"
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

func applyLeaseGrant(s *State, res *Result, p LeaseGrant, stamp int64, notify bool) {
	if p.TTL <= 0 {
		res.Err = fmt.Errorf("%w: ttl must be positive", ErrBadTTL)
		return
	}
	if err := leaseLimitErr(s, p.Owner, p.MaxLeases); err != nil {
		res.Err = err
		return
	}
	l := &Lease{ID: s.index, TTL: p.TTL, Epoch: s.index, GrantStamp: stamp, Owner: p.Owner}
	s.leases = put(s.leases, u64key(l.ID), l, notify)
	countLease(s, l.Owner, 1, notify)
	res.Lease = l
}

func applyLeaseRevoke(s *State, res *Result, id uint64, stamp int64, notify bool) {
	l, ok := s.Lease(id)
	if !ok {
		res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
		return
	}
	res.Lease = l
	res.Promoted += removeLease(s, l, true, stamp, notify)
}

// removeLease deletes a lease and, in the same entry, releases every
// election and lock it holds or waits for (promoting the next candidates)
// and deletes the keys attached to it. failed says the holder failed
// (expiry or revoke, as opposed to a resign or unlock): lock-delay applies.
func removeLease(s *State, l *Lease, failed bool, stamp int64, notify bool) (promoted int) {
	var atts [][]byte
	s.attach.Root().WalkPrefix(u64key(l.ID), func(k []byte, _ struct{}) bool {
		atts = append(atts, k)
		return false
	})
	for _, k := range atts {
		name := string(k[u64KeyLen+1:])
		switch k[u64KeyLen] {
		case attachElection:
			if e, ok := s.elections.Get([]byte(name)); ok {
				e = e.clone()
				e.remove(l.ID, failed, stamp)
				promoted += e.promote(s.index, stamp)
				storeElection(s, e, notify)
			}
		case attachKey:
			if cur, ok := s.kv.Get([]byte(name)); ok && cur.Lease == l.ID {
				s.kv, _ = del(s.kv, []byte(name), notify)
				s.kvDeleteIndex = s.index
			}
		}
		s.attach, _ = del(s.attach, k, notify)
	}
	s.leases, _ = del(s.leases, u64key(l.ID), notify)
	countLease(s, l.Owner, -1, notify)
	return promoted
}

func applyLeaseExpire(s *State, res *Result, p LeaseExpire, stamp int64, notify bool) {
	for _, x := range p.Leases {
		l, ok := s.Lease(x.ID)
		if !ok || l.Epoch != x.Epoch {
			// Gone already, or checkpointed/renewed since the proposer
			// looked: a stale proposal, ignored.
			continue
		}
		res.Promoted += removeLease(s, l, true, stamp, notify)
		res.Expired = append(res.Expired, x.ID)
	}
}

func applyLeaseCheckpoint(s *State, res *Result, p LeaseCheckpoint, stamp int64, notify bool) {
	for _, c := range p.Leases {
		l, ok := s.Lease(c.ID)
		if !ok || l.Epoch != c.Epoch {
			continue
		}
		n := *l
		n.Epoch, n.Remaining, n.CheckpointStamp = s.index, max(c.Remaining, 1), stamp
		s.leases = put(s.leases, u64key(n.ID), &n, notify)
		res.Checkpointed = append(res.Checkpointed, c.ID)
	}
}

func applyLeaseRenew(s *State, res *Result, id uint64, notify bool) {
	l, ok := s.Lease(id)
	if !ok {
		res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
		return
	}
	n := *l
	n.Epoch, n.Remaining, n.CheckpointStamp = s.index, 0, 0
	s.leases = put(s.leases, u64key(n.ID), &n, notify)
	res.Lease = &n
}
