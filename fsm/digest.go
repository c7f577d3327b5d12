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
