package fsm

import (
	"errors"
	"fmt"
	"io"

	"github.com/coordd/coordd/snapshot"
)

// Snapshot record types. Values are part of the file format.
const (
	recMeta   = 1 // kvDeleteIndex
	recKV     = 2 // one KVEntry
	recMember = 3 // one Member
)

// WriteState writes s in the snapshot format of package snapshot.
func WriteState(w io.Writer, s *State) error {
	sw, err := snapshot.NewWriter(w, snapshot.Header{Index: s.index, Term: s.term})
	if err != nil {
		return err
	}
	e := enc{}
	e.uvarint(s.kvDeleteIndex)
	if err := sw.Record(recMeta, e.b); err != nil {
		return err
	}
	var werr error
	s.kv.Root().Walk(func(_ []byte, kv *KVEntry) bool {
		e := enc{b: make([]byte, 0, 32+len(kv.Key)+len(kv.Value))}
		e.str(kv.Key)
		e.bytes(kv.Value)
		e.uvarint(kv.CreateIndex)
		e.uvarint(kv.ModifyIndex)
		e.uvarint(kv.Version)
		werr = sw.Record(recKV, e.b)
		return werr != nil
	})
	if werr != nil {
		return werr
	}
	s.members.Root().Walk(func(_ []byte, m Member) bool {
		e := enc{}
		e.str(m.ID)
		e.str(m.RaftAddr)
		e.str(m.HTTPAddr)
		werr = sw.Record(recMember, e.b)
		return werr != nil
	})
	if werr != nil {
		return werr
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
	kv := s.kv.Txn()
	members := s.members.Txn()
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
		case recKV:
			e := &KVEntry{Key: d.str(), Value: d.bytes(), CreateIndex: d.uvarint(), ModifyIndex: d.uvarint(), Version: d.uvarint()}
			kv.Insert([]byte(e.Key), e)
		case recMember:
			m := Member{ID: d.str(), RaftAddr: d.str(), HTTPAddr: d.str()}
			members.Insert([]byte(m.ID), m)
		default:
			// Unknown record types come from a newer build; skipping them
			// would silently lose state, so refuse.
			return nil, fmt.Errorf("fsm: snapshot record type %d not known to this build", typ)
		}
		if err := d.done(); err != nil {
			return nil, fmt.Errorf("fsm: snapshot record type %d: %w", typ, err)
		}
	}
	s.kv, s.members = kv.CommitOnly(), members.CommitOnly()
	return s, nil
}
