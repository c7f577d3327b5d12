package fsm

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// tree is one of the state's persistent radix trees.
//
// In a published State it is only the committed tree (txn is nil). While
// entries apply (one entry, or a batch of them: Batch), every write goes
// to one radix transaction opened at the tree's first write and committed
// once, at the end (State.commit): the nodes on the path of a key are
// copied once per batch instead of once per write, and the transaction's
// bookkeeping (its writable-node cache, the watch channels to close) is
// paid once. Reads during the batch see the batch's own writes (they go
// through the open transaction).
//
// Invariant (pure): an open transaction only ever modifies nodes it
// created itself; the nodes of a published tree are never written, so
// States already published (and snapshots being persisted) do not change.
type tree[T any] struct {
	t   *iradix.Tree[T]
	txn *iradix.Txn[T]
	// size is the number of keys while txn is open (a transaction does
	// not report it), and writes the writes made through txn.
	size, writes int
}

// treeFlushWrites is how many writes one transaction takes before it is
// committed and a new one opened. A radix transaction tracks at most 8,192
// watch channels to close; past that it compares the whole old and new
// trees at commit, O(size of the tree). A few channels per write (the
// nodes on its path not yet copied in this transaction) keep 512 writes
// well under the limit.
const treeFlushWrites = 512

func newTree[T any]() tree[T] { return tree[T]{t: iradix.New[T]()} }

// committed wraps a committed tree.
func committed[T any](t *iradix.Tree[T]) tree[T] { return tree[T]{t: t} }

// base is the committed tree (an empty one for a zero tree).
func (x *tree[T]) base() *iradix.Tree[T] {
	if x.t == nil {
		return iradix.New[T]()
	}
	return x.t
}

// Get returns the value of k.
func (x *tree[T]) Get(k []byte) (T, bool) {
	if x.txn != nil {
		return x.txn.Get(k)
	}
	return x.base().Get(k)
}

// Root is the root node to walk or iterate. It must not be held across a
// write.
func (x *tree[T]) Root() *iradix.Node[T] {
	if x.txn != nil {
		return x.txn.Root()
	}
	return x.base().Root()
}

// Len is the number of keys.
func (x *tree[T]) Len() int {
	if x.txn != nil {
		return x.size
	}
	return x.base().Len()
}

// Txn starts a transaction on the committed tree (building a state on the
// side: restore, snapshot read).
func (x *tree[T]) Txn() *iradix.Txn[T] {
	if x.txn != nil {
		panic("fsm: tree.Txn with a batch transaction open")
	}
	return x.base().Txn()
}

// open returns the tree's transaction, opening it on w's terms.
func (x *tree[T]) open(w *work) *iradix.Txn[T] {
	if w == nil {
		panic("fsm: write to a published state")
	}
	if x.txn == nil {
		x.t = x.base()
		x.txn = x.t.Txn()
		x.txn.TrackMutate(w.notify)
		x.size, x.writes = x.t.Len(), 0
	}
	return x.txn
}

// wrote counts a write and commits the transaction when it has taken its
// share (see treeFlushWrites).
func (x *tree[T]) wrote(w *work) {
	if x.writes++; x.writes >= treeFlushWrites {
		x.commit(w)
	}
}

// put sets k to v.
func (x *tree[T]) put(w *work, k []byte, v T) {
	if _, updated := x.open(w).Insert(k, v); !updated {
		x.size++
	}
	x.wrote(w)
}

// del removes k and reports whether it was there. Deleting a missing key
// writes nothing.
func (x *tree[T]) del(w *work, k []byte) (T, bool) {
	if _, ok := x.Get(k); !ok {
		var zero T
		return zero, false
	}
	v, ok := x.open(w).Delete(k)
	if ok {
		x.size--
	}
	x.wrote(w)
	return v, ok
}

// deletePrefix removes the n keys under prefix (n counted by the caller).
func (x *tree[T]) deletePrefix(w *work, prefix []byte, n int) {
	if n == 0 {
		return
	}
	// A transaction's DeletePrefix miscounts (and so its tree's Len is
	// wrong) when the subtree's top node was already copied in that
	// transaction: it clears the node's edges before counting its leaves
	// (go-immutable-radix v2.1.0). So it runs in a fresh transaction.
	x.commit(w)
	x.open(w).DeletePrefix(prefix)
	x.size -= n
	x.wrote(w)
}

// commit commits the open transaction, if any, and hands it to w to
// notify its watchers once the state is published.
func (x *tree[T]) commit(w *work) {
	if x.txn == nil {
		return
	}
	x.t = x.txn.CommitOnly()
	if w.notify {
		w.pending = append(w.pending, x.txn)
	}
	x.txn = nil
}

// work is what an unpublished State being applied to carries: whether
// watchers are notified (only for the live state: FSM), and the committed
// transactions whose watchers are to be notified once it is published.
type work struct {
	notify  bool
	pending []interface{ Notify() }
}

// notifyAll closes the watch channels of everything the committed
// transactions changed.
func (w *work) notifyAll() {
	for _, t := range w.pending {
		t.Notify()
	}
	w.pending = nil
}

// commit commits every open transaction of s and detaches its work: s is
// then an immutable State that may be published. The work (its pending
// notifications) is returned.
func (s *State) commit() *work {
	w := s.w
	if w == nil {
		return &work{}
	}
	s.kv.commit(w)
	s.members.commit(w)
	s.leases.commit(w)
	s.attach.commit(w)
	s.elections.commit(w)
	s.emptyElections.commit(w)
	s.delayed.commit(w)
	s.dedup.commit(w)
	s.dedupByStamp.commit(w)
	s.leaseOwners.commit(w)
	s.aclTokens.commit(w)
	s.aclBySecret.commit(w)
	s.alarms.commit(w)
	s.unreleased.commit(w)
	s.w = nil
	return w
}

// u64key is v as u64KeyLen bytes, one per 4-bit nibble, most significant
// first: it sorts like the number.
//
// Why nibbles and not the 8 big-endian bytes: an immutable radix tree
// copies every node on the path of a write, with its edge list, and
// numbers that grow one by one (lease IDs, Raft indexes, stamps) fill a
// node with up to 256 edges at the last byte — 4 KiB copied per write, for
// every write. With nibbles a node has at most 16 edges
// (BenchmarkApply_*: less than half the bytes allocated per entry).
func u64key(v uint64) []byte { return appendU64Key(make([]byte, 0, u64KeyLen), v) }

// u64KeyLen is the length of a u64key.
const u64KeyLen = 16

func appendU64Key(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, byte(v>>uint(shift))&0xf)
	}
	return b
}

// keyU64 reads the number a u64key at the start of k holds.
func keyU64(k []byte) uint64 {
	var v uint64
	for _, c := range k[:u64KeyLen] {
		v = v<<4 | uint64(c)
	}
	return v
}
