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
}

// trackedFSM must not become a raft.BatchingFSM without the same care:
// FSM.Apply is where a corrupt entry stops the node.
var _ raft.FSM = (*trackedFSM)(nil)

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
	return res
}

func (t *trackedFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	t.applied.advance(index)
}
