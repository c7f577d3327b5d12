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
	// Renewed lists the leases a renew batch renewed (the others no
	// longer exist).
	Renewed []uint64
	// Campaign says where a campaigning lease stands.
	Campaign *CampaignResult
	// Election is the election or lock after the command.
	Election *Election
	// Promoted counts the candidates this entry made holders (hand-offs
	// included).
	Promoted int
	// Token is the access token a token command created or deleted.
	Token *ACLToken
	// Txn says which branch of a transaction ran and what its ops did.
	Txn *TxnResult
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
	b := f.Begin()
	res := b.Apply(l)
	b.Commit()
	return res
}

// ApplyBatch applies a run of committed entries as one batch (see Batch)
// and returns one result per entry: a *Result for a command, nil for
// anything else (a configuration entry). It implements raft.BatchingFSM.
// The results and the state reached are exactly those of applying the
// entries one by one with Apply.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	b := f.Begin()
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = b.Apply(l)
		}
	}
	b.Commit()
	return out
}

var _ raft.BatchingFSM = (*FSM)(nil)

// Batch applies a run of committed entries to one working copy of the
// state, whose trees each take one radix transaction for the whole run
// (tree), and publishes the result once, in Commit. Readers see the state
// before the batch until Commit, then the state after it; the watch
// channels of what changed are closed after it is published.
//
// Results are those of applying the entries one by one: every entry reads
// what the entries before it in the batch wrote, and nothing else differs
// (TestBatch_SameAsOneByOne). A Batch is used by one goroutine (Raft's FSM
// goroutine), and no other Apply or Restore may run until it is committed.
type Batch struct {
	f       *FSM
	s       State
	applied bool
	reset   bool
}

// Begin starts a batch on the current state.
func (f *FSM) Begin() *Batch {
	b := &Batch{f: f, s: *f.state.Load()}
	b.s.w = &work{notify: true}
	return b
}

// Apply applies one entry to the batch's state and returns its result. It
// panics on an entry it cannot decode (see FSM.Apply).
func (b *Batch) Apply(l *raft.Log) *Result {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		panic(applyPanic(l.Index, l.Term, err))
	}
	res := applyTo(&b.s, l.Index, l.Term, cmd)
	b.applied, b.reset = true, b.reset || res.Reset
	return res
}

// Index is the index of the last entry applied to the batch (the state's
// before the first).
func (b *Batch) Index() uint64 { return b.s.index }

// State returns the state after the entries applied so far, without
// publishing it (a replica digest at an agreed point within the batch).
// It commits the open transactions: later writes copy what they change.
func (b *Batch) State() *State {
	w := b.s.commit()
	st := b.s
	b.s.w = w
	return &st
}

// Commit publishes the batch's state, then wakes the watchers of what it
// changed (and, after a restore, the readers of ResetCh). It returns the
// state published (the current one if nothing was applied).
func (b *Batch) Commit() *State {
	if !b.applied {
		return b.f.state.Load()
	}
	w := b.s.commit()
	st := b.s
	b.f.state.Store(&st)
	w.notifyAll()
	if b.reset {
		b.f.reset()
	}
	return &st
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

// applier is what a payload's apply works with: the state being worked
// on (a shallow copy of a published one, whose trees take writes through
// open transactions: tree), the result it reports and the entry's stamp.
//
// Invariant (pure): apply changes nothing reachable from a published
// state (persistent trees, cloned records), closes no watch channel
// itself (the FSM does, after publishing: Batch.Commit), and reads
// nothing but the state, the payload, the index and the stamp; so
// ApplyCommand twice on one state gives the same state and result.
type applier struct {
	s     *State
	res   *Result
	stamp int64
	// budget is what the entry may still release of dead leases'
	// attachments: > 0 that many, 0 no limit, < 0 nothing (spent).
	budget int
	// holdersChanged names the elections whose holders this entry changed
	// already: Election.Changes counts an entry once.
	holdersChanged map[string]bool
}

func (a *applier) mark(name string) {
	if a.holdersChanged == nil {
		a.holdersChanged = map[string]bool{}
	}
	a.holdersChanged[name] = true
}

// applyCommand is ApplyCommand; with notify set it also closes the watch
// channels of every part of s that the command changes.
func applyCommand(s *State, index, term uint64, cmd Command, notify bool) (*State, *Result) {
	next := *s
	next.w = &work{notify: notify}
	res := applyTo(&next, index, term, cmd)
	next.commit().notifyAll()
	return &next, res
}

// applyTo applies cmd at the given index and term to s, a state being
// worked on (s.w set: its writes go to open transactions).
func applyTo(s *State, index, term uint64, cmd Command) *Result {
	p, err := DecodePayload(cmd)
	if err != nil {
		panic(applyPanic(index, term, err))
	}
	s.index, s.term = index, term
	s.stamp = max(s.stamp, cmd.Stamp) // never backwards, whatever the leaders' clocks
	a := &applier{s: s, res: &Result{Index: index, Type: cmd.Type}, stamp: s.stamp}
	collectDedup(s)
	collectElections(a)
	if cmd.IdempotencyKey != "" {
		if res, ok := replay(s, index, cmd); ok {
			return res
		}
	}
	p.apply(a)
	if cmd.IdempotencyKey != "" {
		recordDedup(s, cmd, a.res)
	}
	return a.res
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
