package fsm

import (
	"errors"
	"time"
)

// Idempotency: a mutating request may carry a key; the FSM records the
// result per key and answers a retry with the recorded result instead of
// applying it twice (Raft thesis §6.3). Entries are collected by the
// leader's stamp, never by a local clock, so every replica collects the same
// ones at the same index.
const (
	// DedupTTL is how long a key is remembered after its request.
	DedupTTL = 10 * time.Minute
	// DedupMax bounds the number of keys remembered.
	DedupMax = 100_000
	// dedupGCPerApply bounds the collection work of one entry.
	dedupGCPerApply = 64
)

type dedupEntry struct {
	Key    string
	Type   CommandType
	Stamp  int64
	Index  uint64
	Result *Result
}

func dedupStampKey(stamp int64, index uint64) []byte {
	return append(u64key(uint64(stamp)), u64key(index)...)
}

// collectDedup drops entries older than DedupTTL by the current stamp, and
// the oldest while there are more than DedupMax, at most dedupGCPerApply.
func collectDedup(s *State) {
	cutoff := s.stamp - int64(DedupTTL)
	it := s.dedupByStamp.Root().Iterator()
	var drop [][]byte
	for k, key, ok := it.Next(); ok && len(drop) < dedupGCPerApply; k, key, ok = it.Next() {
		over := s.dedup.Len()-len(drop) > DedupMax
		if e, found := s.dedup.Get([]byte(key)); found && e.Stamp >= cutoff && !over {
			break
		}
		drop = append(drop, k)
	}
	if len(drop) == 0 {
		return
	}
	byStamp, dedup := s.dedupByStamp.Txn(), s.dedup.Txn()
	for _, k := range drop {
		key, _ := byStamp.Delete(k)
		dedup.Delete([]byte(key))
	}
	s.dedupByStamp, s.dedup = byStamp.CommitOnly(), dedup.CommitOnly()
}

func recordDedup(s *State, key string, t CommandType, res *Result) {
	if old, ok := s.dedup.Get([]byte(key)); ok {
		s.dedupByStamp, _, _ = s.dedupByStamp.Delete(dedupStampKey(old.Stamp, old.Index))
	}
	// Keep only what a retry is answered with, so that a replica that
	// restored the table from a snapshot answers exactly the same. A put is
	// answered with the key's indexes and version, never its value: the
	// value is dropped, or every write would be held twice for DedupTTL
	// (snapshots of KV state were twice its size).
	entry := res.Entry
	if entry != nil && entry.Value != nil {
		e := *entry
		e.Value = nil
		entry = &e
	}
	kept := &Result{Index: res.Index, Type: res.Type, Entry: entry, Prev: res.Prev, Deleted: res.Deleted,
		Lease: res.Lease, Campaign: res.Campaign, Err: res.Err}
	e := &dedupEntry{Key: key, Type: t, Stamp: s.stamp, Index: s.index, Result: kept}
	s.dedup, _, _ = s.dedup.Insert([]byte(key), e)
	s.dedupByStamp, _, _ = s.dedupByStamp.Insert(dedupStampKey(e.Stamp, e.Index), key)
}

// DedupLen is the number of remembered idempotency keys.
func (s *State) DedupLen() int { return s.dedup.Len() }

// errorCode returns the snapshot code of a domain error (0: none).
func errorCode(err error) uint64 {
	if err == nil {
		return 0
	}
	for i, s := range domainErrors {
		if errors.Is(err, s) {
			return uint64(i + 1)
		}
	}
	return uint64(len(domainErrors) + 1) // unknown: kept as a message only
}
