package fsm

import (
	"errors"
	"fmt"
	"io"

	iradix "github.com/hashicorp/go-immutable-radix/v2"

	"github.com/coordd/coordd/snapshot"
)

// Snapshot record types. Values are part of the file format. Fields added
// later are appended to a record and read only when present, so older files
// stay readable.
const (
	// recMeta: in format version 1, kvDeleteIndex [stamp
	// electionDeleteIndex]; from version 2, kvDeleteIndex stamp
	// electionDeleteIndex restorePending restoreSource restoreIndex.
	recMeta     = 1
	recKV       = 2 // one KVEntry [lease]
	recMember   = 3 // one Member
	recLease    = 4 // one Lease
	recAttach   = 5 // one attach index key
	recElection = 6 // one Election
	recDedup    = 7 // one idempotency record
	recACLToken = 8 // one access token (secret hash, never the secret)
)

// walkRecords writes one record per value of t.
func walkRecords[T any](sw *snapshot.Writer, typ byte, t *iradix.Tree[T], f func(e *enc, k []byte, v T)) error {
	var werr error
	e := enc{b: make([]byte, 0, 256)}
	t.Root().Walk(func(k []byte, v T) bool {
		e.b = e.b[:0] // Record copies the bytes out: one buffer serves every record
		f(&e, k, v)
		werr = sw.Record(typ, e.b)
		return werr != nil
	})
	return werr
}

// WriteState writes s in the snapshot format of package snapshot.
func WriteState(w io.Writer, s *State) error {
	counts := map[byte]uint64{
		recMeta: 1, recKV: uint64(s.kv.Len()), recMember: uint64(s.members.Len()),
		recLease: uint64(s.leases.Len()), recAttach: uint64(s.attach.Len()),
		recElection: uint64(s.elections.Len()), recDedup: uint64(s.dedup.Len()),
	}
	if n := s.aclTokens.Len(); n > 0 {
		// Only when there are tokens: snapshots without ACLs stay
		// readable by builds that know no token records.
		counts[recACLToken] = uint64(n)
	}
	sw, err := snapshot.NewWriter(w, snapshot.Header{Index: s.index, Term: s.term, Counts: counts})
	if err != nil {
		return err
	}
	e := enc{}
	e.uvarint(s.kvDeleteIndex)
	e.varint(s.stamp)
	e.uvarint(s.electionDeleteIndex)
	e.bool(s.restore.Pending)
	e.uvarint(s.restore.SourceIndex)
	e.uvarint(s.restore.Index)
	if s.aclBootstrap != 0 {
		e.uvarint(s.aclBootstrap) // optional trailing field
	}
	if err := sw.Record(recMeta, e.b); err != nil {
		return err
	}
	steps := []func() error{
		func() error {
			return walkRecords(sw, recKV, s.kv, func(e *enc, _ []byte, kv *KVEntry) { encodeKV(e, kv) })
		},
		func() error {
			return walkRecords(sw, recMember, s.members, func(e *enc, _ []byte, m Member) {
				e.str(m.ID)
				e.str(m.RaftAddr)
				e.str(m.HTTPAddr)
			})
		},
		func() error {
			return walkRecords(sw, recLease, s.leases, func(e *enc, _ []byte, l *Lease) {
				encodeLease(e, l)
				if l.Owner != "" {
					e.str(l.Owner) // optional trailing field of the lease record
				}
			})
		},
		func() error {
			return walkRecords(sw, recAttach, s.attach, func(e *enc, k []byte, _ struct{}) { e.bytes(k) })
		},
		func() error {
			return walkRecords(sw, recElection, s.elections, func(e *enc, _ []byte, el *Election) { encodeElection(e, el) })
		},
		func() error {
			return walkRecords(sw, recDedup, s.dedup, func(e *enc, _ []byte, d *dedupEntry) {
				e.str(d.Key)
				e.uvarint(uint64(d.Type))
				e.varint(d.Stamp)
				e.uvarint(d.Index)
				encodeResult(e, d.Result)
			})
		},
		func() error {
			return walkRecords(sw, recACLToken, s.aclTokens, func(e *enc, _ []byte, t *ACLToken) { encodeToken(e, t) })
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return sw.Close()
}

// ReadState reads a state written by WriteState, verifying the whole stream.
func ReadState(r io.Reader) (*State, error) {
	sr, err := snapshot.NewReader(r)
	if err != nil {
		return nil, err
	}
	h := sr.Header()
	s := emptyState()
	s.index, s.term = h.Index, h.Term
	kv, members, leases, attach := s.kv.Txn(), s.members.Txn(), s.leases.Txn(), s.attach.Txn()
	elections, dedup, byStamp := s.elections.Txn(), s.dedup.Txn(), s.dedupByStamp.Txn()
	empties, delayed := s.emptyElections.Txn(), s.delayed.Txn()
	tokens, owners := s.aclTokens.Txn(), map[string]int{}
	for {
		typ, data, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		d := dec{b: data}
		switch typ {
		case recMeta:
			s.kvDeleteIndex = d.uvarint()
			if h.Version >= 2 {
				s.stamp, s.electionDeleteIndex = d.varint(), d.uvarint()
				s.restore = RestoreInfo{Pending: d.bool(), SourceIndex: d.uvarint(), Index: d.uvarint()}
				if d.err == nil && len(d.b) > 0 {
					if s.aclBootstrap = d.uvarint(); d.err == nil && s.aclBootstrap == 0 {
						d.fail(errors.New("explicit zero acl bootstrap index"))
					}
				}
			} else if d.err == nil && len(d.b) > 0 {
				s.stamp, s.electionDeleteIndex = d.varint(), d.uvarint()
				if d.err == nil && s.stamp == 0 && s.electionDeleteIndex == 0 {
					d.fail(errors.New("explicit zero stamp and election delete index"))
				}
			}
		case recKV:
			e := decodeKV(&d)
			kv.Insert([]byte(e.Key), e)
		case recMember:
			m := Member{ID: d.str(), RaftAddr: d.str(), HTTPAddr: d.str()}
			members.Insert([]byte(m.ID), m)
		case recLease:
			l := decodeLease(&d)
			if d.err == nil && len(d.b) > 0 {
				if l.Owner = d.str(); d.err == nil && l.Owner == "" {
					d.fail(errors.New("explicit empty lease owner"))
				}
			}
			leases.Insert(u64key(l.ID), l)
			owners[l.Owner]++
		case recAttach:
			k := d.bytes()
			if d.err == nil && len(k) < 9 {
				d.fail(fmt.Errorf("attach key of %d bytes", len(k)))
			}
			attach.Insert(k, struct{}{})
		case recElection:
			el := decodeElection(&d)
			elections.Insert([]byte(el.Name), el)
			if el.EmptySince != 0 {
				empties.Insert(emptyKey(el.EmptySince, el.Name), struct{}{})
			}
			if el.delayedNow() {
				delayed.Insert([]byte(el.Name), el.DelayUntil)
			}
		case recDedup:
			de := &dedupEntry{Key: d.str(), Type: CommandType(d.uvarint()), Stamp: d.varint(), Index: d.uvarint()}
			de.Result = decodeResult(&d)
			de.Result.Type = de.Type
			dedup.Insert([]byte(de.Key), de)
			byStamp.Insert(dedupStampKey(de.Stamp, de.Index), de.Key)
		case recACLToken:
			t := decodeToken(&d)
			if d.err == nil {
				if _, dup := tokens.Get([]byte(t.AccessorID)); dup {
					d.fail(fmt.Errorf("token %s twice", t.AccessorID))
				}
			}
			tokens.Insert([]byte(t.AccessorID), t)
		default:
			// Unknown record types come from a newer build; skipping them
			// would silently lose state, so refuse.
			return nil, fmt.Errorf("fsm: snapshot record type %d not known to this build", typ)
		}
		if err := d.done(); err != nil {
			return nil, fmt.Errorf("fsm: snapshot record type %d: %w", typ, err)
		}
	}
	s.kv, s.members, s.leases, s.attach = kv.CommitOnly(), members.CommitOnly(), leases.CommitOnly(), attach.CommitOnly()
	s.elections, s.dedup, s.dedupByStamp = elections.CommitOnly(), dedup.CommitOnly(), byStamp.CommitOnly()
	s.emptyElections, s.delayed = empties.CommitOnly(), delayed.CommitOnly()
	s.aclTokens = tokens.CommitOnly()
	ot := s.leaseOwners.Txn()
	for o, n := range owners {
		ot.Insert([]byte(o), n)
	}
	s.leaseOwners = ot.CommitOnly()
	if s.aclBySecret, err = secretIndex(s.aclTokens); err != nil {
		return nil, err
	}
	return s, nil
}

func encodeKV(e *enc, kv *KVEntry) {
	e.str(kv.Key)
	e.bytes(kv.Value)
	e.uvarint(kv.CreateIndex)
	e.uvarint(kv.ModifyIndex)
	e.uvarint(kv.Version)
	if kv.Lease != 0 {
		e.uvarint(kv.Lease)
	}
}

func decodeKV(d *dec) *KVEntry {
	kv := &KVEntry{Key: d.str(), Value: d.bytes(), CreateIndex: d.uvarint(), ModifyIndex: d.uvarint(), Version: d.uvarint()}
	if d.err == nil && len(d.b) > 0 {
		if kv.Lease = d.uvarint(); d.err == nil && kv.Lease == 0 {
			d.fail(errors.New("explicit zero lease"))
		}
	}
	return kv
}

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

func encodeCandidates(e *enc, cs []Candidate) {
	e.uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.uvarint(c.Lease)
		e.bytes(c.Value)
		e.uvarint(c.Token)
		e.varint(c.Since)
		e.uvarint(c.QueuedIndex)
	}
}

func decodeCandidates(d *dec) []Candidate {
	n := batchLen(d, 5)
	var cs []Candidate
	for range n {
		cs = append(cs, Candidate{Lease: d.uvarint(), Value: d.bytes(), Token: d.uvarint(), Since: d.varint(), QueuedIndex: d.uvarint()})
	}
	return cs
}

func encodeElection(e *enc, el *Election) {
	e.str(el.Name)
	e.uvarint(uint64(el.Kind))
	e.uvarint(uint64(el.Limit))
	e.varint(el.LockDelay)
	e.varint(el.DelayUntil)
	encodeCandidates(e, el.Holders)
	encodeCandidates(e, el.Waiting)
	e.uvarint(el.LastToken)
	e.uvarint(el.Changes)
	e.uvarint(el.ModifyIndex)
	e.varint(el.EmptySince)
}

func decodeElection(d *dec) *Election {
	el := &Election{Name: d.str(), Kind: ElectionKind(d.uvarint()), Limit: int(d.uvarint()), LockDelay: d.varint(), DelayUntil: d.varint()}
	el.Holders, el.Waiting = decodeCandidates(d), decodeCandidates(d)
	el.LastToken, el.Changes, el.ModifyIndex, el.EmptySince = d.uvarint(), d.uvarint(), d.uvarint(), d.varint()
	return el
}

// encodeResult writes the parts of a recorded result that a retry is
// answered with (recordDedup keeps only those).
func encodeResult(e *enc, r *Result) {
	e.uvarint(r.Index)
	e.uvarint(uint64(r.Deleted))
	opt := func(present bool, f func()) {
		e.bool(present)
		if present {
			f()
		}
	}
	opt(r.Entry != nil, func() { encodeKVFixed(e, r.Entry) })
	opt(r.Prev != nil, func() { encodeKVFixed(e, r.Prev) })
	opt(r.Lease != nil, func() { encodeLease(e, r.Lease) })
	opt(r.Campaign != nil, func() {
		e.bool(r.Campaign.Holder)
		e.uvarint(r.Campaign.Token)
		e.varint(int64(r.Campaign.Position))
	})
	e.uvarint(errorCode(r.Err))
	if r.Err != nil {
		e.str(r.Err.Error())
		var cas *CASConflictError
		var st *StaleTokenError
		switch {
		case errors.As(r.Err, &cas):
			e.uvarint(1)
			e.str(cas.Key)
			e.uvarint(cas.CurrentIndex)
		case errors.As(r.Err, &st):
			e.uvarint(2)
			e.str(st.Name)
			e.uvarint(st.Token)
			e.uvarint(st.Current)
		default:
			e.uvarint(0)
		}
	}
}

// encodeKVFixed writes a KVEntry inside a larger record, where an optional
// trailing field could not be told apart: the lease is always written.
func encodeKVFixed(e *enc, kv *KVEntry) {
	e.str(kv.Key)
	e.bytes(kv.Value)
	e.uvarint(kv.CreateIndex)
	e.uvarint(kv.ModifyIndex)
	e.uvarint(kv.Version)
	e.uvarint(kv.Lease)
}

func decodeKVFixed(d *dec) *KVEntry {
	return &KVEntry{Key: d.str(), Value: d.bytes(), CreateIndex: d.uvarint(), ModifyIndex: d.uvarint(), Version: d.uvarint(), Lease: d.uvarint()}
}

// decodeResult reads what encodeResult wrote.
func decodeResult(d *dec) *Result {
	r := &Result{Index: d.uvarint(), Deleted: int(d.uvarint())}
	if d.bool() {
		r.Entry = decodeKVFixed(d)
	}
	if d.bool() {
		r.Prev = decodeKVFixed(d)
	}
	if d.bool() {
		r.Lease = decodeLease(d)
	}
	if d.bool() {
		r.Campaign = &CampaignResult{Holder: d.bool(), Token: d.uvarint(), Position: int(d.varint())}
	}
	code := d.uvarint()
	if code == 0 || d.err != nil {
		return r
	}
	msg := d.str()
	switch d.uvarint() {
	case 1:
		r.Err = &CASConflictError{Key: d.str(), CurrentIndex: d.uvarint()}
	case 2:
		r.Err = &StaleTokenError{Name: d.str(), Token: d.uvarint(), Current: d.uvarint()}
	default:
		var sentinel error = errors.New("fsm: recorded error")
		if code >= 1 && code <= uint64(len(domainErrors)) {
			sentinel = domainErrors[code-1]
		}
		r.Err = &recordedError{sentinel: sentinel, msg: msg}
	}
	return r
}
