package fsm

import (
	"crypto/sha256"
	"encoding/hex"
)

// Digest is a SHA-256 over the application data of s, in a canonical
// encoding: every key (value, lease, create and modify index, version),
// every lease (id, TTL, grant stamp, attachments), and every election and
// lock (kind, limit, lock-delay, holders' and waiters' leases and values,
// queue order).
//
// It leaves out what a restore of the same data legitimately changes: the
// index, term and stamp, the member table, the access tokens (a restore
// keeps the running cluster's), the idempotency table, fencing
// tokens and lease countdowns (re-issued by a restore) and the restore
// record. Two states with equal digests hold the same data; a backup and
// the cluster it was restored into have equal digests until the next write.
func (s *State) Digest() string {
	h := sha256.New()
	e := enc{}
	flush := func() {
		h.Write(e.b)
		e.b = e.b[:0]
	}
	e.str("kv")
	s.kv.Root().Walk(func(_ []byte, kv *KVEntry) bool {
		encodeKVFixed(&e, kv)
		flush()
		return false
	})
	e.str("leases")
	s.leases.Root().Walk(func(_ []byte, l *Lease) bool {
		e.uvarint(l.ID)
		e.varint(l.TTL)
		e.varint(l.GrantStamp)
		flush()
		return false
	})
	e.str("attach")
	s.attach.Root().Walk(func(k []byte, _ struct{}) bool {
		e.bytes(k)
		flush()
		return false
	})
	e.str("elections")
	candidates := func(cs []Candidate) {
		e.uvarint(uint64(len(cs)))
		for _, c := range cs {
			e.uvarint(c.Lease)
			e.bytes(c.Value)
		}
	}
	s.elections.Root().Walk(func(_ []byte, el *Election) bool {
		e.str(el.Name)
		e.uvarint(uint64(el.Kind))
		e.uvarint(uint64(el.Limit))
		e.varint(el.LockDelay)
		candidates(el.Holders)
		candidates(el.Waiting)
		flush()
		return false
	})
	flush()
	return hex.EncodeToString(h.Sum(nil))
}

// ReplicaDigest is a SHA-256 over everything this state replicates, in the
// canonical encoding of the snapshot records (see WriteState): the meta
// record (stamp, delete indexes, restore record, ACL bootstrap), every
// key, member, lease (owner included), attach key, election, idempotency
// record, access token and alarm, each framed by its record type and
// length. It leaves out only the state's own index and term: a state
// read from a snapshot taken at index S carries S, while a replica that
// applied the log carries the index of its last command, and both hold
// the same data.
//
// Two replicas that applied the same entries up to the same point have
// equal replica digests; members compare them at agreed indexes (every N
// applied entries, at digest points committed through the log, and at
// snapshots) to catch a replica that diverged silently. Unlike Digest, it
// is not meant to compare a backup with the cluster it was restored into.
//
// It reads only s (immutable), so it may run on any goroutine, off the
// apply path. Its cost is linear in the state's size.
func (s *State) ReplicaDigest() string {
	h := sha256.New()
	e := enc{b: make([]byte, 0, 512)}
	rec := enc{b: make([]byte, 0, 512)}
	record := func(typ byte) {
		rec.b = append(rec.b[:0], typ)
		rec.uvarint(uint64(len(e.b)))
		h.Write(rec.b)
		h.Write(e.b)
		e.b = e.b[:0]
	}
	encodeMeta(&e, s)
	record(recMeta)
	s.kv.Root().Walk(func(_ []byte, kv *KVEntry) bool {
		encodeKV(&e, kv)
		record(recKV)
		return false
	})
	s.members.Root().Walk(func(_ []byte, m Member) bool {
		encodeMember(&e, m)
		record(recMember)
		return false
	})
	s.leases.Root().Walk(func(_ []byte, l *Lease) bool {
		encodeLease(&e, l)
		e.str(l.Owner)
		record(recLease)
		return false
	})
	s.attach.Root().Walk(func(k []byte, _ struct{}) bool {
		e.bytes(k)
		record(recAttach)
		return false
	})
	s.elections.Root().Walk(func(_ []byte, el *Election) bool {
		encodeElection(&e, el)
		record(recElection)
		return false
	})
	s.dedup.Root().Walk(func(_ []byte, d *dedupEntry) bool {
		encodeDedup(&e, d)
		record(recDedup)
		return false
	})
	s.aclTokens.Root().Walk(func(_ []byte, t *ACLToken) bool {
		encodeToken(&e, t)
		record(recACLToken)
		return false
	})
	if s.alarms.t != nil || s.alarms.txn != nil {
		s.alarms.Root().Walk(func(_ []byte, a *Alarm) bool {
			encodeAlarm(&e, a)
			record(recAlarm)
			return false
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Records is the number of records a replica digest hashes: keys,
// members, leases, lease attachments, elections, idempotency records,
// tokens and alarms. It is part of the replicated state, the same on every
// replica at one index.
func (s *State) Records() int {
	n := s.kv.Len() + s.members.Len() + s.leases.Len() + s.attach.Len() +
		s.elections.Len() + s.dedup.Len() + s.aclTokens.Len()
	if s.alarms.t != nil || s.alarms.txn != nil {
		n += s.alarms.Len()
	}
	return n
}

// DigestEvery is the spacing of the agreed digest points for a state of
// records records: every, doubled until it is at least records. A digest
// walks the whole state, so with a fixed spacing its cost per applied
// entry grew with the state (at 130k records and every 10,000, 13 records
// walked per entry: a third of a follower's CPU under write load). Scaled,
// one digest costs at most about one record walked per applied entry.
//
// Invariant (agreed points): whether an index b is an agreed point is a
// pure function of b and the state at b (its record count), so every
// replica picks the same points. The spacings are every times powers of
// two, so a replica whose state at b is smaller (it digests more often)
// still digests every point of a larger one: replicas that disagree on
// the count, a sign of the divergence the digests look for, still share
// points to compare.
func DigestEvery(every uint64, records int) uint64 {
	n := every
	for n > 0 && n < uint64(records) && n < 1<<62 {
		n *= 2
	}
	return n
}

// DigestAgreed reports whether b, a multiple of every, is an agreed
// digest point of st, the state at b (see DigestEvery).
func DigestAgreed(b, every uint64, st *State) bool {
	e := DigestEvery(every, st.Records())
	return e > 0 && b%e == 0
}

// DigestBoundary says whether applying the entry at index, to a state
// whose index was prev, passes a digest boundary of interval every
// (every > 0): the multiples of every are the agreed points. It returns
// the boundary b and whether the digest at b is of the state after the
// entry (index == b) or of the state before it (prev < b < index: the
// entries in between were not commands, so the state before the entry is
// the state at b). A replica whose state was read from a snapshot at or
// past b has no digest at b (ok is false).
func DigestBoundary(prev, index, every uint64) (b uint64, after, ok bool) {
	if every == 0 || index == 0 {
		return 0, false, false
	}
	b = index / every * every
	switch {
	case b == index:
		return b, true, true
	case b > prev && b > 0:
		return b, false, true
	}
	return 0, false, false
}
