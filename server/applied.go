package server

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// indexWaiter tracks the highest Raft index known to be applied to the FSM
// and lets readers wait for an index.
//
// Why not raft.AppliedIndex: Raft advances it when it hands entries to the
// FSM goroutine, before they are applied. And why not only the FSM's own
// index: no-op and barrier entries never reach FSM.Apply. So the index
// advances on every Apply, every configuration entry, and after every
// barrier (with the last log index taken before the barrier was issued).
type indexWaiter struct {
	mu  sync.Mutex
	idx uint64
	ch  chan struct{}
}

func newIndexWaiter() *indexWaiter { return &indexWaiter{ch: make(chan struct{})} }

func (w *indexWaiter) advance(idx uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if idx <= w.idx {
		return
	}
	w.idx = idx
	close(w.ch)
	w.ch = make(chan struct{})
}

func (w *indexWaiter) load() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idx
}

// wait returns when the applied index is at least idx or ctx is done.
func (w *indexWaiter) wait(ctx context.Context, idx uint64) error {
	for {
		w.mu.Lock()
		cur, ch := w.idx, w.ch
		w.mu.Unlock()
		if cur >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// trackedFSM wraps the pure FSM to advance the applied index. It also
// implements raft.ConfigurationStore so configuration entries count.
type trackedFSM struct {
	*fsm.FSM
	applied *indexWaiter
	// mu and observe keep the leader's lease clock in step: observe sees
	// every result right after it applied, under mu.
	mu      *sync.Mutex
	observe func(*fsm.Result)
	// stamped, if set, sees the state's stamp and index after each
	// command (the clock skew estimate), outside mu.
	stamped func(stamp int64, index uint64)
	// log records why the node stops when an entry cannot be applied.
	log hclog.Logger
	// digests takes the replica digests at agreed points (digest.go).
	digests *digester
	// logBytes counts the bytes applied since the last snapshot (the
	// size-aware snapshot trigger, snapshots.go).
	logBytes *logBytes
	// releaseKick wakes the leader's releaseDuties when an entry left
	// attachments of dead leases to release (release.go).
	releaseKick chan struct{}
}

// trackedFSM is a raft.BatchingFSM: Raft hands it each run of committed
// entries (up to MaxAppendEntries) at once, and the run shares one radix
// transaction per tree (fsm.Batch). ApplyBatch keeps, for every entry,
// what Apply does: a corrupt entry is logged and stops the node; every
// result is observed; digests are taken at the agreed points.
var _ raft.BatchingFSM = (*trackedFSM)(nil)

// ApplyBatch applies a run of committed entries (commands and
// configuration entries; Raft leaves barriers and no-ops out) and returns
// one response per entry. The state is published once, after the last
// entry; results, digests and the lease clock are exactly as if the
// entries had been applied one by one.
func (t *trackedFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if t.digests != nil && t.digests.perturb != nil {
		// Test builds only: the perturbation applies behind the
		// batch's back, so entries go one by one.
		for i, l := range logs {
			if l.Type == raft.LogCommand {
				out[i] = t.Apply(l)
			} else {
				t.applied.advance(l.Index)
			}
		}
		return out
	}
	var cur *raft.Log
	t.mu.Lock()
	defer func() {
		if p := recover(); p != nil {
			if t.log != nil && cur != nil {
				t.log.Error("stopping: a committed log entry cannot be applied", "index", cur.Index, "term", cur.Term, "error", p)
			}
			panic(p)
		}
	}()
	b := t.FSM.Begin()
	results := make([]*fsm.Result, 0, len(logs))
	var st *fsm.State
	// publish publishes what the batch applied so far and shows the
	// lease clock its results, in order.
	publish := func() {
		st = b.Commit()
		for _, r := range results {
			t.observe(r)
		}
	}
	var lastCmd uint64
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue // a configuration entry: counted in the applied index below
		}
		cur = l
		prev := b.Index()
		t.digests.beforeBatchEntry(b, prev, l.Index)
		r := b.Apply(l)
		t.digests.afterBatchEntry(b, prev, l.Index, r)
		out[i], lastCmd = r, l.Index
		results = append(results, r)
		if r.Reset {
			// A restore finished: the lease clock restarts from the
			// state as of this entry (observeApplied reads it), so the
			// batch is published here and goes on as a new one.
			publish()
			b, results = t.FSM.Begin(), results[:0]
		}
	}
	cur = nil
	publish()
	t.mu.Unlock()
	if t.stamped != nil && lastCmd != 0 {
		t.stamped(st.Stamp(), lastCmd)
	}
	if len(logs) > 0 {
		t.applied.advance(logs[len(logs)-1].Index)
		var n uint64
		for _, l := range logs {
			n += uint64(len(l.Data))
		}
		t.logBytes.applied(uint64(len(logs)), n)
	}
	if st != nil && st.UnreleasedCount() > 0 {
		kickRelease(t.releaseKick)
	}
	return out
}

func (t *trackedFSM) Apply(l *raft.Log) any {
	t.mu.Lock()
	// FSM.Apply panics on an entry it cannot decode or whose checksum
	// fails. Raft does not recover it: the process exits (status 2) before
	// anything derived from the entry is served. Log it first, so that
	// structured logs carry it too; the panic's first line says the same.
	defer func() {
		if p := recover(); p != nil {
			if t.log != nil {
				t.log.Error("stopping: a committed log entry cannot be applied", "index", l.Index, "term", l.Term, "error", p)
			}
			panic(p)
		}
	}()
	prev := t.FSM.State()
	res := t.FSM.Apply(l)
	r, _ := res.(*fsm.Result)
	if r != nil {
		t.observe(r)
	}
	t.digests.afterApply(prev, t.FSM.State(), l.Index, r)
	t.mu.Unlock()
	if t.stamped != nil {
		t.stamped(t.FSM.State().Stamp(), l.Index)
	}
	t.applied.advance(l.Index)
	t.logBytes.applied(1, uint64(len(l.Data)))
	if t.FSM.State().UnreleasedCount() > 0 {
		kickRelease(t.releaseKick)
	}
	return res
}

func (t *trackedFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	t.applied.advance(index)
}
