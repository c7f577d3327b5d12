package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// The dedup domain. Idempotency: a mutating request may carry a key; the
// FSM records the result per key and answers a retry with the recorded
// result instead of applying it twice (Raft thesis §6.3). A retry must be
// the same request: the record keeps a digest of the command's payload, and
// the same key with another payload is refused (ErrIdempotencyKeyReused).
//
// Invariant (bounded and deterministic): records are collected by the
// leader's stamp (DedupTTL), by count (DedupMax) and by size
// (DedupMaxBytes), oldest first, never by a local clock or by memory
// pressure, so every replica keeps exactly the same records.
const (
	// DedupTTL is how long a key is remembered after its request.
	DedupTTL = 10 * time.Minute
	// DedupMax bounds the number of keys remembered.
	DedupMax = 100_000
	// DedupMaxBytes bounds the size of the records kept (dedupSize).
	DedupMaxBytes = 32 << 20
	// dedupGCPerApply bounds the collection work of one entry.
	dedupGCPerApply = 64
	// requestDigestSize is the length of a request digest.
	requestDigestSize = 16
)

type dedupEntry struct {
	Key    string
	Type   CommandType
	Stamp  int64
	Index  uint64
	Result *Result
	// Request is the digest of the request's payload (requestDigest); nil
	// in records written before digests were kept, which are matched on
	// the type alone.
	Request []byte
}

// requestDigest identifies a command's request: its type, payload version
// and payload.
func requestDigest(c Command) []byte {
	var sum [sha256.Size]byte
	if len(c.Payload) <= 254 {
		// The common case, hashed from a stack buffer: one allocation (the
		// digest kept) instead of the hasher's three.
		var buf [256]byte
		sum = sha256.Sum256(append(append(buf[:0], byte(c.Type), c.Version), c.Payload...))
	} else {
		h := sha256.New()
		h.Write([]byte{byte(c.Type), c.Version})
		h.Write(c.Payload)
		h.Sum(sum[:0])
	}
	return append(make([]byte, 0, requestDigestSize), sum[:requestDigestSize]...)
}

// dedupSize is what a record counts against DedupMaxBytes: its key, the
// bytes of the result it keeps, and a fixed overhead.
func dedupSize(d *dedupEntry) int {
	n := 128 + len(d.Key) + len(d.Request)
	for _, e := range []*KVEntry{d.Result.Entry, d.Result.Prev} {
		if e != nil {
			n += len(e.Key) + len(e.Value)
		}
	}
	if d.Result.Err != nil {
		n += len(d.Result.Err.Error())
	}
	return n + txnResultSize(d.Result.Txn)
}

func dedupStampKey(stamp int64, index uint64) []byte {
	return append(u64key(uint64(stamp)), u64key(index)...)
}

// replay answers cmd from its key's record, if there is one: the recorded
// result for a retry of the same request, ErrIdempotencyKeyReused for
// another request under the same key.
func replay(s *State, index uint64, cmd Command) (*Result, bool) {
	d, ok := s.dedup.Get([]byte(cmd.IdempotencyKey))
	if !ok {
		return nil, false
	}
	if d.Type != cmd.Type || d.Request != nil && !bytes.Equal(d.Request, requestDigest(cmd)) {
		return &Result{Index: index, Type: cmd.Type, Err: fmt.Errorf("%w: key %q was used for a %s request with another body at index %d",
			ErrIdempotencyKeyReused, cmd.IdempotencyKey, d.Type, d.Index)}, true
	}
	dup := *d.Result
	dup.Duplicate = true
	return &dup, true
}

// collectDedup drops, oldest first and at most dedupGCPerApply, the
// records older than DedupTTL by the current stamp and those beyond
// DedupMax or DedupMaxBytes.
func collectDedup(s *State) {
	cutoff := s.stamp - int64(DedupTTL)
	count, size := s.dedup.Len(), s.dedupBytes
	if count <= DedupMax && size <= DedupMaxBytes {
		// The common case, nothing due: decided on the oldest record
		// alone, without an iterator.
		_, key, ok := s.dedupByStamp.Root().Minimum()
		if !ok {
			return
		}
		if e, found := s.dedup.Get([]byte(key)); found && e.Stamp >= cutoff {
			return
		}
	}
	it := s.dedupByStamp.Root().Iterator()
	var drop [][]byte
	for k, key, ok := it.Next(); ok && len(drop) < dedupGCPerApply; k, key, ok = it.Next() {
		e, found := s.dedup.Get([]byte(key))
		if found && e.Stamp >= cutoff && count <= DedupMax && size <= DedupMaxBytes {
			break
		}
		drop = append(drop, k)
		if found {
			count, size = count-1, size-dedupSize(e)
		}
	}
	if len(drop) == 0 {
		return
	}
	for _, k := range drop {
		key, _ := s.dedupByStamp.del(s.w, k)
		s.dedup.del(s.w, []byte(key))
	}
	s.dedupBytes = size
}

// recordDedup records cmd's result under its idempotency key.
func recordDedup(s *State, cmd Command, res *Result) {
	if old, ok := s.dedup.Get([]byte(cmd.IdempotencyKey)); ok {
		s.dedupByStamp.del(s.w, dedupStampKey(old.Stamp, old.Index))
		s.dedupBytes -= dedupSize(old)
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
		Lease: res.Lease, Campaign: res.Campaign, Txn: keptTxn(res.Txn), Err: res.Err}
	e := &dedupEntry{Key: cmd.IdempotencyKey, Type: cmd.Type, Stamp: s.stamp, Index: s.index, Result: kept, Request: requestDigest(cmd)}
	s.dedup.put(s.w, []byte(e.Key), e)
	s.dedupByStamp.put(s.w, dedupStampKey(e.Stamp, e.Index), e.Key)
	s.dedupBytes += dedupSize(e)
}

// DedupLen is the number of remembered idempotency keys.
func (s *State) DedupLen() int { return s.dedup.Len() }

// DedupBytes is the size of the remembered records, as counted against
// DedupMaxBytes.
func (s *State) DedupBytes() int { return s.dedupBytes }

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

// Snapshot records of the dedup domain.

// encodeDedup writes a record: key type stamp index result [request
// [txn]]. A transaction's result follows the request digest, which every
// record written since transactions exist carries.
func encodeDedup(e *enc, d *dedupEntry) {
	e.str(d.Key)
	e.uvarint(uint64(d.Type))
	e.varint(d.Stamp)
	e.uvarint(d.Index)
	encodeResult(e, d.Result)
	if d.Request != nil {
		e.bytes(d.Request) // optional trailing field
		if d.Result.Txn != nil {
			encodeTxnResult(e, d.Result.Txn) // optional trailing field
		}
	}
}

func decodeDedup(d *dec) *dedupEntry {
	de := &dedupEntry{Key: d.str(), Type: CommandType(d.u8()), Stamp: d.varint(), Index: d.uvarint()}
	de.Result = decodeResult(d)
	de.Result.Type = de.Type
	if d.more() {
		if de.Request = d.bytes(); d.err == nil && len(de.Request) != requestDigestSize {
			d.fail(fmt.Errorf("request digest of %d bytes", len(de.Request)))
		}
		if d.more() {
			de.Result.Txn = decodeTxnResult(d)
		}
	}
	if d.err == nil && (de.Result.Txn != nil) != (de.Type == CmdTxn && de.Result.Err == nil) && de.Request != nil {
		d.fail(fmt.Errorf("idempotency record of a %s with a transaction result: %t", de.Type, de.Result.Txn != nil))
	}
	return de
}

// validateDedup is the rule of a stored record at state index: a key, a
// command type this build knows, recorded at or before the index.
func validateDedup(d *dedupEntry, index uint64) error {
	if _, known := codecs[d.Type]; !known || d.Key == "" || d.Index > index || d.Result.Index > index {
		return fmt.Errorf("idempotency record %q: type %s at index %d (result %d), state index %d",
			d.Key, d.Type, d.Index, d.Result.Index, index)
	}
	return nil
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

// decodeResult reads what encodeResult wrote.
func decodeResult(d *dec) *Result {
	r := &Result{Index: d.uvarint(), Deleted: d.count(1 << 40)}
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
