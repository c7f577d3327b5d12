package fsm

import "fmt"

// The KV domain: keys with create and modify indexes, conditional writes,
// keys attached to leases.

// KV command types. Values are part of the log format.
const (
	CmdKVPut    CommandType = 1
	CmdKVDelete CommandType = 2
)

func init() {
	register(CmdKVPut, "kv-put", payloadV1, decodeKVPut)
	register(CmdKVDelete, "kv-delete", payloadV1, decodeKVDelete)
}

// KVEntry is one key of the replicated KV store. Entries are immutable once
// stored: a write stores a new entry.
type KVEntry struct {
	Key   string
	Value []byte
	// Lease is the lease the key is attached to (0: none).
	Lease uint64
	// CreateIndex is the Raft index of the entry that created the key.
	CreateIndex uint64
	// ModifyIndex is the Raft index of the last write to the key.
	ModifyIndex uint64
	// Version counts writes since the key was created (1 after creation).
	Version uint64
}

// PutMode selects the condition of a KV put.
type PutMode uint8

// Put modes. Values are part of the log format.
const (
	// PutAlways writes the key whatever its state.
	PutAlways PutMode = 0
	// PutCreate writes only if the key does not exist.
	PutCreate PutMode = 1
	// PutCAS writes only if the key's ModifyIndex equals CASIndex.
	PutCAS PutMode = 2
)

// KVPut is the payload of CmdKVPut.
type KVPut struct {
	Key      string
	Value    []byte
	Mode     PutMode
	CASIndex uint64
	// Lease, when non-zero, attaches the key to a lease: the key is deleted
	// when the lease expires or is revoked.
	Lease uint64
}

// Type implements Payload.
func (KVPut) Type() CommandType { return CmdKVPut }

// encode writes key value mode casIndex [lease]: a put without a lease
// keeps the original layout.
func (p KVPut) encode(e *enc) uint8 {
	e.str(p.Key)
	e.bytes(p.Value)
	e.uvarint(uint64(p.Mode))
	e.uvarint(p.CASIndex)
	if p.Lease != 0 {
		e.uvarint(p.Lease)
	}
	return payloadV1
}

func decodeKVPut(_ uint8, d *dec) Payload {
	p := KVPut{Key: d.str(), Value: d.bytes(), Mode: PutMode(d.u8()), CASIndex: d.uvarint()}
	p.Lease = d.optional("lease")
	return p
}

func (p KVPut) validate() error {
	if p.Mode > PutCAS {
		return fmt.Errorf("put mode %d", p.Mode)
	}
	return nil
}

// KVDelete is the payload of CmdKVDelete. With Prefix set, every key that
// starts with Key is deleted (CAS does not apply then).
type KVDelete struct {
	Key      string
	Prefix   bool
	CAS      bool
	CASIndex uint64
}

// Type implements Payload.
func (KVDelete) Type() CommandType { return CmdKVDelete }

func (p KVDelete) encode(e *enc) uint8 {
	e.str(p.Key)
	e.bool(p.Prefix)
	e.bool(p.CAS)
	e.uvarint(p.CASIndex)
	return payloadV1
}

func decodeKVDelete(_ uint8, d *dec) Payload {
	return KVDelete{Key: d.str(), Prefix: d.bool(), CAS: d.bool(), CASIndex: d.uvarint()}
}

func (KVDelete) validate() error { return nil }

func (p KVPut) apply(a *applier) {
	s, res := a.s, a.res
	key := []byte(p.Key)
	cur, exists := s.kv.Get(key)
	switch p.Mode {
	case PutCreate:
		if exists {
			res.Err = &CASConflictError{Key: p.Key, CurrentIndex: cur.ModifyIndex}
			return
		}
	case PutCAS:
		if !exists || cur.ModifyIndex != p.CASIndex {
			var ci uint64
			if exists {
				ci = cur.ModifyIndex
			}
			res.Err = &CASConflictError{Key: p.Key, CurrentIndex: ci}
			return
		}
	}
	if p.Lease != 0 {
		if _, ok := s.Lease(p.Lease); !ok {
			res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.Lease)
			return
		}
	}
	e := &KVEntry{Key: p.Key, Value: p.Value, Lease: p.Lease, CreateIndex: s.index, ModifyIndex: s.index, Version: 1}
	if exists {
		e.CreateIndex, e.Version = cur.CreateIndex, cur.Version+1
		if cur.Lease != 0 && cur.Lease != p.Lease {
			s.attach.del(s.w, attachKeyOf(cur.Lease, attachKey, p.Key))
		}
	}
	if p.Lease != 0 {
		s.attach.put(s.w, attachKeyOf(p.Lease, attachKey, p.Key), struct{}{})
	}
	s.kv.put(s.w, key, e)
	res.Entry = e
}

func (p KVDelete) apply(a *applier) {
	s, res := a.s, a.res
	if p.Prefix {
		n := 0
		s.kv.Root().WalkPrefix([]byte(p.Key), func([]byte, *KVEntry) bool { n++; return false })
		if n == 0 {
			return
		}
		s.kv.Root().WalkPrefix([]byte(p.Key), func(k []byte, e *KVEntry) bool {
			if e.Lease != 0 {
				s.attach.del(s.w, attachKeyOf(e.Lease, attachKey, string(k)))
			}
			return false
		})
		s.kv.deletePrefix(s.w, []byte(p.Key), n)
		s.kvDeleteIndex = s.index
		res.Deleted = n
		return
	}
	key := []byte(p.Key)
	cur, exists := s.kv.Get(key)
	if p.CAS && (!exists || cur.ModifyIndex != p.CASIndex) {
		var ci uint64
		if exists {
			ci = cur.ModifyIndex
		}
		res.Err = &CASConflictError{Key: p.Key, CurrentIndex: ci}
		return
	}
	if !exists {
		res.Err = fmt.Errorf("%w: %q", ErrKeyNotFound, p.Key)
		return
	}
	s.kv.del(s.w, key)
	if cur.Lease != 0 {
		s.attach.del(s.w, attachKeyOf(cur.Lease, attachKey, p.Key))
	}
	s.kvDeleteIndex = s.index
	res.Prev, res.Deleted = cur, 1
}

// KVLen is the number of keys.
func (s *State) KVLen() int { return s.kv.Len() }

// Get returns the entry for key.
func (s *State) Get(key string) (*KVEntry, bool) {
	return s.kv.Get([]byte(key))
}

// WatchKey returns the key's entry (nil if missing), its change index, and a
// channel that is closed when the key may have changed after this state.
//
// The change index is the ModifyIndex of an existing key, or for a missing
// key the index of the last delete anywhere; it is never below 1, so that a
// client looping on it always blocks.
func (s *State) WatchKey(key string) (entry *KVEntry, index uint64, watch <-chan struct{}) {
	watch, e, ok := s.kv.Root().GetWatch([]byte(key))
	if ok {
		return e, max(e.ModifyIndex, 1), watch
	}
	return nil, max(s.kvDeleteIndex, 1), watch
}

// WatchPrefix returns the entries under prefix in key order, the prefix's
// change index (the highest ModifyIndex among them, or the last delete
// anywhere if later, never below 1), and a channel that is closed when
// anything under the prefix may have changed after this state.
func (s *State) WatchPrefix(prefix string, limit int) (entries []*KVEntry, index uint64, watch <-chan struct{}) {
	it := s.kv.Root().Iterator()
	watch = it.SeekPrefixWatch([]byte(prefix))
	index = max(s.kvDeleteIndex, 1)
	for _, e, ok := it.Next(); ok; _, e, ok = it.Next() {
		index = max(index, e.ModifyIndex)
		if limit <= 0 || len(entries) < limit {
			entries = append(entries, e)
		}
	}
	return entries, index, watch
}

// Snapshot records of the KV domain.

// encodeKV writes a key record: key value create modify version [lease].
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
	kv.Lease = d.optional("lease")
	return kv
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

// validateKV is the rule of a stored key, at state index: written at or
// before that index, created no later than modified, version at least 1.
func validateKV(kv *KVEntry, index uint64) error {
	if kv.Version == 0 || kv.CreateIndex == 0 || kv.CreateIndex > kv.ModifyIndex || kv.ModifyIndex > index {
		return fmt.Errorf("key %q: create index %d, modify index %d, version %d at state index %d",
			kv.Key, kv.CreateIndex, kv.ModifyIndex, kv.Version, index)
	}
	return nil
}
