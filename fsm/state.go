package fsm

// State is an immutable view of the replicated state at one applied index.
// Readers get it from FSM.State and may keep it as long as they like: the FSM
// never mutates a State it has published (persistent radix trees make the
// copy cheap), which is what makes Snapshot O(1).
type State struct {
	index uint64
	term  uint64

	kv tree[*KVEntry]
	// kvDeleteIndex is the Raft index of the last entry that deleted a key.
	// Blocking queries on a missing key or a prefix use it so that a delete
	// is never missed even though deleted keys leave no tombstone.
	kvDeleteIndex uint64

	members tree[Member]

	// stamp is the leader stamp of the last applied command.
	stamp int64

	leases    tree[*Lease]    // by u64key(id)
	attach    tree[struct{}]  // attachKeyOf(lease, kind, name)
	elections tree[*Election] // by name
	// emptyElections indexes the names nobody holds or waits for (kept
	// while a lock-delay runs) by emptyKey(collectAt, name), for
	// collection.
	emptyElections tree[struct{}]
	// delayed indexes names whose lock-delay holds candidates back (name ->
	// DelayUntil). Derived from elections; rebuilt on restore.
	delayed tree[int64]
	// electionDeleteIndex is the index of the last entry that removed an
	// election (for blocking queries on a missing name).
	electionDeleteIndex uint64

	// restore describes the last restore of a backup (see PrepareRestore).
	restore RestoreInfo

	dedup        tree[*dedupEntry] // by idempotency key
	dedupByStamp tree[string]      // u64key(stamp)+u64key(index) -> key, for collection
	dedupBytes   int               // sum of dedupSize; derived, rebuilt on read

	// unreleased indexes the expired or revoked leases that still hold
	// something to release (lease.go: LeaseRelease), by u64key(id);
	// derived from attach and leases, rebuilt on read.
	unreleased tree[struct{}]

	// leaseOwners counts leases per owner; derived, rebuilt on read.
	leaseOwners tree[int]

	aclTokens   tree[*ACLToken] // by accessor id
	aclBySecret tree[string]    // secret hash -> accessor id; derived, rebuilt on read
	// aclBootstrap is the index of the entry that bootstrapped ACLs (0: never).
	aclBootstrap uint64

	// peerSecret authenticates forwarded requests (peer.go); nil: none yet.
	peerSecret []byte

	alarms tree[*Alarm] // by member id (alarm.go)

	// w is set only while entries apply to this state (see tree); a
	// published State has none.
	w *work
}

func emptyState() *State {
	return &State{
		kv: newTree[*KVEntry](), members: newTree[Member](),
		leases: newTree[*Lease](), attach: newTree[struct{}](), elections: newTree[*Election](),
		emptyElections: newTree[struct{}](), delayed: newTree[int64](),
		dedup: newTree[*dedupEntry](), dedupByStamp: newTree[string](),
		aclTokens: newTree[*ACLToken](), aclBySecret: newTree[string](), leaseOwners: newTree[int](),
		alarms: newTree[*Alarm](), unreleased: newTree[struct{}](),
	}
}

// Stamp is the leader's wall-clock stamp (Unix ns) of the last command.
func (s *State) Stamp() int64 { return s.stamp }

// Index is the Raft index of the last command applied to this state.
func (s *State) Index() uint64 { return s.index }

// Term is the Raft term of the last command applied to this state.
func (s *State) Term() uint64 { return s.term }
