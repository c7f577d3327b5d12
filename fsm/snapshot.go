package fsm

import (
	"bytes"
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
	recMeta     = 1 // see encodeMeta
	recKV       = 2 // one KVEntry [lease]
	recMember   = 3 // one Member
	recLease    = 4 // one Lease
	recAttach   = 5 // one attach index key
	recElection = 6 // one Election
	recDedup    = 7 // one idempotency record
	recACLToken = 8 // one access token (secret hash, never the secret)
)

// walkRecords writes one record per value of t.
func walkRecords[T any](sw *snapshot.Writer, typ byte, t *tree[T], f func(e *enc, k []byte, v T)) error {
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
	if s.peerSecret != nil {
		counts[recPeerSecret] = 1 // only when set, as for tokens
	}
	if n := s.aclTokens.Len(); n > 0 {
		// Only when there are tokens: snapshots without ACLs stay
		// readable by builds that know no token records.
		counts[recACLToken] = uint64(n)
	}
	if n := s.alarmTree().Len(); n > 0 {
		counts[recAlarm] = uint64(n) // likewise (alarm.go)
	}
	sw, err := snapshot.NewWriter(w, snapshot.Header{Index: s.index, Term: s.term, Counts: counts})
	if err != nil {
		return err
	}
	e := enc{}
	encodeMeta(&e, s)
	if err := sw.Record(recMeta, e.b); err != nil {
		return err
	}
	steps := []func() error{
		func() error {
			return walkRecords(sw, recKV, &s.kv, func(e *enc, _ []byte, kv *KVEntry) { encodeKV(e, kv) })
		},
		func() error {
			return walkRecords(sw, recMember, &s.members, func(e *enc, _ []byte, m Member) { encodeMember(e, m) })
		},
		func() error {
			return walkRecords(sw, recLease, &s.leases, func(e *enc, _ []byte, l *Lease) {
				encodeLease(e, l)
				if l.Owner != "" {
					e.str(l.Owner) // optional trailing field of the lease record
				}
			})
		},
		func() error {
			return walkRecords(sw, recAttach, &s.attach, func(e *enc, k []byte, _ struct{}) { e.bytes(k) })
		},
		func() error {
			return walkRecords(sw, recElection, &s.elections, func(e *enc, _ []byte, el *Election) { encodeElection(e, el) })
		},
		func() error {
			return walkRecords(sw, recDedup, &s.dedup, func(e *enc, _ []byte, d *dedupEntry) { encodeDedup(e, d) })
		},
		func() error {
			return walkRecords(sw, recACLToken, &s.aclTokens, func(e *enc, _ []byte, t *ACLToken) { encodeToken(e, t) })
		},
		func() error {
			if s.peerSecret == nil {
				return nil
			}
			e := enc{}
			e.bytes(s.peerSecret)
			return sw.Record(recPeerSecret, e.b)
		},
		func() error {
			return walkRecords(sw, recAlarm, s.alarmTree(), func(e *enc, _ []byte, a *Alarm) { encodeAlarm(e, a) })
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return sw.Close()
}

// ReadState reads a state written by WriteState, verifying the whole
// stream: its framing and checksum (package snapshot), every record with
// the validate of its domain, and the references between records (see
// checkRefs). A file is input: nothing in it may make a later Apply panic.
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
	alarms := s.alarmTree().Txn()
	// dup reports a second record with the same key.
	dup := func(d *dec, what string, found bool, key any) {
		if found && d.err == nil {
			d.fail(fmt.Errorf("%s %v twice", what, key))
		}
	}
	for {
		typ, data, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		d := dec{b: data}
		var verr error
		switch typ {
		case recMeta:
			decodeMeta(&d, s, h.Version)
		case recKV:
			e := decodeKV(&d)
			_, found := kv.Insert([]byte(e.Key), e)
			dup(&d, "key", found, e.Key)
			verr = validateKV(e, s.index)
		case recMember:
			m := decodeMember(&d)
			_, found := members.Insert([]byte(m.ID), m)
			dup(&d, "member", found, m.ID)
		case recLease:
			l := decodeLease(&d)
			if d.more() {
				if l.Owner = d.str(); d.err == nil && l.Owner == "" {
					d.fail(errors.New("explicit empty lease owner"))
				}
			}
			_, found := leases.Insert(u64key(l.ID), l)
			dup(&d, "lease", found, l.ID)
			owners[l.Owner]++
			verr = validateLease(l, s.index)
		case recAttach:
			k := d.bytes()
			_, found := attach.Insert(k, struct{}{})
			dup(&d, "attach key", found, k)
			verr = validateAttach(k)
		case recElection:
			el := decodeElection(&d)
			_, found := elections.Insert([]byte(el.Name), el)
			dup(&d, "election", found, el.Name)
			if el.EmptySince != 0 {
				empties.Insert(emptyKey(el.collectAt(), el.Name), struct{}{})
			}
			if el.delayedNow() {
				delayed.Insert([]byte(el.Name), el.DelayUntil)
			}
			verr = validateElection(el, s.index)
		case recDedup:
			de := decodeDedup(&d)
			_, found := dedup.Insert([]byte(de.Key), de)
			dup(&d, "idempotency key", found, de.Key)
			byStamp.Insert(dedupStampKey(de.Stamp, de.Index), de.Key)
			s.dedupBytes += dedupSize(de)
			verr = validateDedup(de, s.index)
		case recACLToken:
			t := decodeToken(&d)
			_, found := tokens.Insert([]byte(t.AccessorID), t)
			dup(&d, "token", found, t.AccessorID)
			verr = ValidateToken(t)
		case recPeerSecret:
			if s.peerSecret != nil && d.err == nil {
				d.fail(errors.New("peer secret twice"))
			}
			s.peerSecret = d.bytes()
			verr = validatePeerSecret(s.peerSecret)
		case recAlarm:
			verr = readAlarm(&d, alarms, s.index)
		default:
			// Unknown record types come from a newer build; skipping them
			// would silently lose state, so refuse.
			return nil, fmt.Errorf("fsm: snapshot record type %d not known to this build", typ)
		}
		if err := d.done(); err != nil {
			return nil, fmt.Errorf("fsm: snapshot record type %d: %w", typ, err)
		}
		if verr != nil {
			return nil, fmt.Errorf("fsm: snapshot record type %d: %w", typ, verr)
		}
	}
	s.kv, s.members, s.leases, s.attach = committed(kv.CommitOnly()), committed(members.CommitOnly()), committed(leases.CommitOnly()), committed(attach.CommitOnly())
	s.elections, s.dedup, s.dedupByStamp = committed(elections.CommitOnly()), committed(dedup.CommitOnly()), committed(byStamp.CommitOnly())
	s.emptyElections, s.delayed = committed(empties.CommitOnly()), committed(delayed.CommitOnly())
	s.aclTokens = committed(tokens.CommitOnly())
	s.alarms = committed(alarms.CommitOnly())
	ot := s.leaseOwners.Txn()
	for o, n := range owners {
		ot.Insert([]byte(o), n)
	}
	s.leaseOwners = committed(ot.CommitOnly())
	secrets, err := secretIndex(s.aclTokens.t)
	if err != nil {
		return nil, err
	}
	s.aclBySecret = committed(secrets)
	s.unreleased = committed(unreleasedIndex(s))
	if err := checkRefs(s); err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return s, nil
}

// encodeMeta writes the meta record: in format version 1, kvDeleteIndex
// [stamp electionDeleteIndex]; from version 2, kvDeleteIndex stamp
// electionDeleteIndex restorePending restoreSource restoreIndex
// [aclBootstrap].
func encodeMeta(e *enc, s *State) {
	e.uvarint(s.kvDeleteIndex)
	e.varint(s.stamp)
	e.uvarint(s.electionDeleteIndex)
	e.bool(s.restore.Pending)
	e.uvarint(s.restore.SourceIndex)
	e.uvarint(s.restore.Index)
	if s.aclBootstrap != 0 {
		e.uvarint(s.aclBootstrap) // optional trailing field
	}
}

func decodeMeta(d *dec, s *State, version uint16) {
	s.kvDeleteIndex = d.uvarint()
	if version >= 2 {
		s.stamp, s.electionDeleteIndex = d.varint(), d.uvarint()
		s.restore = RestoreInfo{Pending: d.bool(), SourceIndex: d.uvarint(), Index: d.uvarint()}
		s.aclBootstrap = d.optional("acl bootstrap index")
	} else if d.more() {
		s.stamp, s.electionDeleteIndex = d.varint(), d.uvarint()
		if d.err == nil && s.stamp == 0 && s.electionDeleteIndex == 0 {
			d.fail(errors.New("explicit zero stamp and election delete index"))
		}
	}
}

// unreleasedIndex rebuilds the index of dead leases that still hold
// something: the lease ids of attach keys without a lease.
func unreleasedIndex(s *State) *iradix.Tree[struct{}] {
	txn := iradix.New[struct{}]().Txn()
	var last []byte
	s.attach.Root().Walk(func(k []byte, _ struct{}) bool {
		if id := k[:u64KeyLen]; !bytes.Equal(id, last) {
			last = id
			if _, ok := s.leases.Get(id); !ok {
				txn.Insert(id, struct{}{})
			}
		}
		return false
	})
	return txn.CommitOnly()
}

// checkRefs checks what records say of each other, so that a state read
// from a file is one that applying commands could have built: every attach
// key names an existing lease and, for a key, a key attached to that lease,
// for an election or lock, one where that lease holds or waits; every key
// attached to a lease, and every holder and waiting candidate, has its
// attach key; the restore record and the ACL bootstrap index are not past
// the state's index.
func checkRefs(s *State) error {
	var err error
	fail := func(format string, args ...any) bool {
		err = fmt.Errorf(format, args...)
		return true
	}
	s.attach.Root().Walk(func(k []byte, _ struct{}) bool {
		id, name := keyU64(k), string(k[u64KeyLen+1:])
		if _, ok := s.Lease(id); !ok {
			// An expired or revoked lease whose attachments are not all
			// released yet (lease.go: LeaseRelease).
			if _, ok := s.unreleased.Get(u64key(id)); !ok {
				return fail("attach key %x: lease %d does not exist", k, id)
			}
		}
		if k[u64KeyLen] == attachKey {
			if e, ok := s.Get(name); !ok || e.Lease != id {
				return fail("attach key %x: key %q is not attached to lease %d", k, name, id)
			}
		} else if e, ok := s.Election(name); !ok || e.Position(id) < 0 {
			return fail("attach key %x: lease %d neither holds nor waits for %q", k, id, name)
		}
		return false
	})
	if err != nil {
		return err
	}
	s.kv.Root().Walk(func(_ []byte, e *KVEntry) bool {
		if _, ok := s.attach.Get(attachKeyOf(e.Lease, attachKey, e.Key)); e.Lease != 0 && !ok {
			return fail("key %q: attached to lease %d without an attach key", e.Key, e.Lease)
		}
		return false
	})
	if err != nil {
		return err
	}
	s.elections.Root().Walk(func(_ []byte, el *Election) bool {
		for _, c := range el.Holders {
			if _, ok := s.attach.Get(attachKeyOf(c.Lease, attachElection, el.Name)); !ok {
				return fail("election %q: lease %d without an attach key", el.Name, c.Lease)
			}
		}
		for _, c := range el.Waiting {
			if _, ok := s.attach.Get(attachKeyOf(c.Lease, attachElection, el.Name)); !ok {
				return fail("election %q: lease %d without an attach key", el.Name, c.Lease)
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	if r := s.restore; r.Index > s.index || r.SourceIndex > s.index || r.Pending && r.Index != 0 || s.aclBootstrap > s.index {
		return fmt.Errorf("restore record %+v, acl bootstrap index %d at state index %d", r, s.aclBootstrap, s.index)
	}
	return nil
}
