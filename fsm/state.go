package fsm

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

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

// State is an immutable view of the replicated state at one applied index.
// Readers get it from FSM.State and may keep it as long as they like: the FSM
// never mutates a State it has published (persistent radix trees make the
// copy cheap), which is what makes Snapshot O(1).
type State struct {
	index uint64
	term  uint64

	kv *iradix.Tree[*KVEntry]
	// kvDeleteIndex is the Raft index of the last entry that deleted a key.
	// Blocking queries on a missing key or a prefix use it so that a delete
	// is never missed even though deleted keys leave no tombstone.
	kvDeleteIndex uint64

	members *iradix.Tree[Member]

	// stamp is the leader stamp of the last applied command.
	stamp int64

	leases    *iradix.Tree[*Lease]    // by u64key(id)
	attach    *iradix.Tree[struct{}]  // attachKeyOf(lease, kind, name)
	elections *iradix.Tree[*Election] // by name
	// emptyElections indexes names nobody holds or waits for by
	// emptyKey(since, name), for collection.
	emptyElections *iradix.Tree[struct{}]
	// delayed indexes names whose lock-delay holds candidates back (name ->
	// DelayUntil). Derived from elections; rebuilt on restore.
	delayed *iradix.Tree[int64]
	// electionDeleteIndex is the index of the last entry that removed an
	// election (for blocking queries on a missing name).
	electionDeleteIndex uint64

	// restore describes the last restore of a backup (see PrepareRestore).
	restore RestoreInfo

	dedup        *iradix.Tree[*dedupEntry] // by idempotency key
	dedupByStamp *iradix.Tree[string]      // u64key(stamp)+u64key(index) -> key, for collection

	// leaseOwners counts leases per owner; derived, rebuilt on read.
	leaseOwners *iradix.Tree[int]

	aclTokens   *iradix.Tree[*ACLToken] // by accessor id
	aclBySecret *iradix.Tree[string]    // secret hash -> accessor id; derived, rebuilt on read
	// aclBootstrap is the index of the entry that bootstrapped ACLs (0: never).
	aclBootstrap uint64
}

func emptyState() *State {
	return &State{
		kv: iradix.New[*KVEntry](), members: iradix.New[Member](),
		leases: iradix.New[*Lease](), attach: iradix.New[struct{}](), elections: iradix.New[*Election](),
		emptyElections: iradix.New[struct{}](), delayed: iradix.New[int64](),
		dedup: iradix.New[*dedupEntry](), dedupByStamp: iradix.New[string](),
		aclTokens: iradix.New[*ACLToken](), aclBySecret: iradix.New[string](), leaseOwners: iradix.New[int](),
	}
}

// Stamp is the leader's wall-clock stamp (Unix ns) of the last command.
func (s *State) Stamp() int64 { return s.stamp }

// Index is the Raft index of the last command applied to this state.
func (s *State) Index() uint64 { return s.index }

// Term is the Raft term of the last command applied to this state.
func (s *State) Term() uint64 { return s.term }

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

// Members returns the known members in id order.
func (s *State) Members() []Member {
	out := make([]Member, 0, s.members.Len())
	s.members.Root().Walk(func(_ []byte, m Member) bool {
		out = append(out, m)
		return false
	})
	return out
}

// Member returns the member with the given id.
func (s *State) Member(id string) (Member, bool) {
	return s.members.Get([]byte(id))
}
