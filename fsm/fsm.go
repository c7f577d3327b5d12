// Package fsm is coordd's replicated state machine.
//
// Every replica applies the same committed log entries in the same order and
// must reach the same state. Apply therefore never reads a clock, a random
// source, the environment or Go map order; the only time it may use is the
// leader's stamp carried in each Command. It starts no goroutines and does no
// I/O other than writing and reading the snapshot stream.
package fsm

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Result is what applying one command produced. Raft hands it back to the
// proposer as the ApplyFuture's response.
type Result struct {
	// Index is the Raft index of the entry.
	Index uint64
	// Type is the type of the command applied (of the original one for a
	// replayed result).
	Type CommandType
	// Entry is the key as written by a put.
	Entry *KVEntry
	// Prev is the key as it was before a single-key delete.
	Prev *KVEntry
	// Deleted counts the keys a delete removed.
	Deleted int
	// Lease is the lease a grant (or a campaign with NewLeaseTTL) created,
	// or a renew or revoke touched.
	Lease *Lease
	// Expired and Checkpointed list the leases an expiry or checkpoint batch
	// actually changed (stale items are skipped).
	Expired      []uint64
	Checkpointed []uint64
	// Campaign says where a campaigning lease stands.
	Campaign *CampaignResult
	// Election is the election or lock after the command.
	Election *Election
	// Promoted counts the candidates this entry made holders (hand-offs
	// included).
	Promoted int
	// Token is the access token a token command created or deleted.
	Token *ACLToken
	// Reset is true when the command replaced state wholesale (finishing a
	// restore): watchers of the old state are woken through ResetCh.
	Reset bool
	// Duplicate is true when the result was recorded earlier under the same
	// idempotency key and nothing was applied now.
	Duplicate bool
	// Err is a domain failure (CAS conflict, key not found). It is part of
	// the replicated outcome, identical on every replica.
	Err error
}

// FSM implements raft.FSM over an immutable State.
//
// Concurrency: Raft calls Apply, Snapshot and Restore from one goroutine.
// State may be called from any goroutine at any time; Persist of a snapshot
// runs concurrently with Apply, which is safe because published States are
// never modified.
type FSM struct {
	state atomic.Pointer[State]

	mu      sync.Mutex
	resetCh chan struct{} // closed and replaced when Restore swaps the state
}

// New returns an FSM with empty state.
func New() *FSM {
	f := &FSM{resetCh: make(chan struct{})}
	f.state.Store(emptyState())
	return f
}

// State returns the current immutable state.
func (f *FSM) State() *State { return f.state.Load() }

// ResetCh returns a channel that is closed the next time Restore replaces the
// whole state. Watch channels taken from the old state never fire after a
// restore, so blocking readers wait on this too.
func (f *FSM) ResetCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resetCh
}

// Apply applies one committed log entry. It panics on an entry that cannot
// be decoded or fails its checksum: carrying on would let this replica
// diverge from the others, and the panic stops the node (Raft does not
// recover it) before it serves anything derived from the entry.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		panic(applyPanic(l.Index, l.Term, err))
	}
	// Only the live state's watchers are notified, exactly once per change:
	// closing the channels of a state twice would panic.
	next, res := applyCommand(f.state.Load(), l.Index, l.Term, cmd, true)
	f.state.Store(next)
	if res.Reset {
		f.reset()
	}
	return res
}

// ApplyCommand is the pure transition function: it returns the state after
// applying cmd at the given index and term, and the command's result. s is
// not modified and its watch channels are not closed (FSM.Apply does that
// for the live state). It panics on a command it cannot decode (see
// FSM.Apply).
func ApplyCommand(s *State, index, term uint64, cmd Command) (*State, *Result) {
	return applyCommand(s, index, term, cmd, false)
}

// applyPanic is the message a node stops with on an entry it cannot apply.
// Its first words name the entry; the rest tells the operator what to do.
func applyPanic(index, term uint64, err error) string {
	return fmt.Sprintf("coordd: cannot apply log entry %d (term %d): %v. "+
		"This node stops rather than serve a state that may differ from the other nodes'. "+
		"If the entry is corrupt on this node: stop it, remove its data dir and rejoin it to the cluster "+
		"(or restore the cluster from a snapshot backup if no healthy node is left); "+
		"if it was written by a newer coordd, upgrade this node", index, term, err)
}

// applyCommand is ApplyCommand; with notify set it also closes the watch
// channels of every part of s that the command changes.
func applyCommand(s *State, index, term uint64, cmd Command, notify bool) (*State, *Result) {
	next := *s
	next.index, next.term = index, term
	next.stamp = max(s.stamp, cmd.Stamp) // never backwards, whatever the leaders' clocks
	collectDedup(&next)
	collectElections(&next)
	if cmd.IdempotencyKey != "" {
		if d, ok := next.dedup.Get([]byte(cmd.IdempotencyKey)); ok {
			if d.Type != cmd.Type {
				return &next, &Result{Index: index, Type: cmd.Type, Err: ErrIdempotencyKeyReused}
			}
			dup := *d.Result
			dup.Duplicate = true
			return &next, &dup
		}
	}
	res := &Result{Index: index, Type: cmd.Type}
	stamp := next.stamp
	var err error
	switch cmd.Type {
	case CmdKVPut:
		var p KVPut
		if p, err = decodeKVPut(cmd); err == nil {
			applyKVPut(&next, res, p, notify)
		}
	case CmdKVDelete:
		var p KVDelete
		if p, err = decodeKVDelete(cmd); err == nil {
			applyKVDelete(&next, res, p, notify)
		}
	case CmdMemberSet:
		var m Member
		if m, err = decodeMemberSet(cmd); err == nil {
			next.members, _, _ = next.members.Insert([]byte(m.ID), m)
		}
	case CmdMemberRemove:
		var m MemberRemove
		if m, err = decodeMemberRemove(cmd); err == nil {
			var ok bool
			if next.members, _, ok = next.members.Delete([]byte(m.ID)); !ok {
				res.Err = fmt.Errorf("%w: %q", ErrMemberNotFound, m.ID)
			}
		}
	case CmdLeaseGrant:
		var p LeaseGrant
		if p, err = decodeLeaseGrant(cmd); err == nil {
			applyLeaseGrant(&next, res, p, stamp, notify)
		}
	case CmdLeaseRevoke:
		var id uint64
		if id, err = decodeID(cmd); err == nil {
			applyLeaseRevoke(&next, res, id, stamp, notify)
		}
	case CmdLeaseRenew:
		var id uint64
		if id, err = decodeID(cmd); err == nil {
			applyLeaseRenew(&next, res, id, notify)
		}
	case CmdLeaseExpire:
		var p LeaseExpire
		if p, err = decodeLeaseExpire(cmd); err == nil {
			applyLeaseExpire(&next, res, p, stamp, notify)
		}
	case CmdLeaseCheckpoint:
		var p LeaseCheckpoint
		if p, err = decodeLeaseCheckpoint(cmd); err == nil {
			applyLeaseCheckpoint(&next, res, p, stamp, notify)
		}
	case CmdCampaign:
		var p Campaign
		if p, err = decodeCampaign(cmd); err == nil {
			applyCampaign(&next, res, p, stamp, notify)
		}
	case CmdResign:
		var p Resign
		if p, err = decodeResign(cmd); err == nil {
			applyResign(&next, res, p, stamp, notify)
		}
	case CmdProclaim:
		var p Proclaim
		if p, err = decodeProclaim(cmd); err == nil {
			applyProclaim(&next, res, p, notify)
		}
	case CmdPromote:
		var name string
		if name, err = decodePromote(cmd); err == nil {
			applyPromote(&next, res, name, stamp, notify)
		}
	case CmdACLBootstrap, CmdACLTokenCreate:
		var t *ACLToken
		if t, err = decodeACLTokenDef(cmd); err == nil {
			applyACLTokenCreate(&next, res, t, cmd.Type == CmdACLBootstrap, stamp, notify)
		}
	case CmdACLTokenDelete:
		var accessor string
		if accessor, err = decodeACLTokenDelete(cmd); err == nil {
			applyACLTokenDelete(&next, res, accessor, notify)
		}
	case CmdRestored:
		if err = decodeRestored(cmd); err == nil {
			applyRestored(&next, res, index)
		}
	default:
		err = fmt.Errorf("fsm: command type %s not known to this build: %w", cmd.Type, ErrBadCommand)
	}
	if err != nil {
		panic(applyPanic(index, term, err))
	}
	if cmd.IdempotencyKey != "" {
		recordDedup(&next, cmd.IdempotencyKey, cmd.Type, res)
	}
	return &next, res
}

func applyKVPut(s *State, res *Result, p KVPut, notify bool) {
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
			s.attach, _ = del(s.attach, attachKeyOf(cur.Lease, attachKey, p.Key), notify)
		}
	}
	if p.Lease != 0 {
		s.attach = put(s.attach, attachKeyOf(p.Lease, attachKey, p.Key), struct{}{}, notify)
	}
	s.kv = put(s.kv, key, e, notify)
	res.Entry = e
}

func applyKVDelete(s *State, res *Result, p KVDelete, notify bool) {
	txn := s.kv.Txn()
	txn.TrackMutate(notify)
	if p.Prefix {
		n := 0
		s.kv.Root().WalkPrefix([]byte(p.Key), func([]byte, *KVEntry) bool { n++; return false })
		if n == 0 {
			return
		}
		s.kv.Root().WalkPrefix([]byte(p.Key), func(k []byte, e *KVEntry) bool {
			if e.Lease != 0 {
				s.attach, _ = del(s.attach, attachKeyOf(e.Lease, attachKey, string(k)), notify)
			}
			return false
		})
		txn.DeletePrefix([]byte(p.Key))
		s.kv = txn.Commit()
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
	txn.Delete(key)
	s.kv = txn.Commit()
	if cur.Lease != 0 {
		s.attach, _ = del(s.attach, attachKeyOf(cur.Lease, attachKey, p.Key), notify)
	}
	s.kvDeleteIndex = s.index
	res.Prev, res.Deleted = cur, 1
}

// Snapshot captures the current state in O(1); the returned snapshot
// streams it in Persist while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.state.Load()}, nil
}

// Restore replaces the state with the one read from rc. The new state is
// built on the side and swapped in only after the whole stream, trailer and
// checksum included, has been verified: a bad file changes nothing.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadState(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.state.Store(s)
	f.reset()
	return nil
}

// reset wakes every reader waiting on ResetCh.
func (f *FSM) reset() {
	f.mu.Lock()
	close(f.resetCh)
	f.resetCh = make(chan struct{})
	f.mu.Unlock()
}

type fsmSnapshot struct{ state *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteState(sink, s.state); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
