package fsm

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

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
	// emptyElections indexes the names nobody holds or waits for (kept
	// while a lock-delay runs) by emptyKey(collectAt, name), for
	// collection.
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
	dedupBytes   int                       // sum of dedupSize; derived, rebuilt on read

	// leaseOwners counts leases per owner; derived, rebuilt on read.
	leaseOwners *iradix.Tree[int]

	aclTokens   *iradix.Tree[*ACLToken] // by accessor id
	aclBySecret *iradix.Tree[string]    // secret hash -> accessor id; derived, rebuilt on read
	// aclBootstrap is the index of the entry that bootstrapped ACLs (0: never).
	aclBootstrap uint64

	// peerSecret authenticates forwarded requests (peer.go); nil: none yet.
	peerSecret []byte

	alarms *iradix.Tree[*Alarm] // by member id (alarm.go)
}

func emptyState() *State {
	return &State{
		kv: iradix.New[*KVEntry](), members: iradix.New[Member](),
		leases: iradix.New[*Lease](), attach: iradix.New[struct{}](), elections: iradix.New[*Election](),
		emptyElections: iradix.New[struct{}](), delayed: iradix.New[int64](),
		dedup: iradix.New[*dedupEntry](), dedupByStamp: iradix.New[string](),
		aclTokens: iradix.New[*ACLToken](), aclBySecret: iradix.New[string](), leaseOwners: iradix.New[int](),
		alarms: iradix.New[*Alarm](),
	}
}

// Stamp is the leader's wall-clock stamp (Unix ns) of the last command.
func (s *State) Stamp() int64 { return s.stamp }

// Index is the Raft index of the last command applied to this state.
func (s *State) Index() uint64 { return s.index }

// Term is the Raft term of the last command applied to this state.
func (s *State) Term() uint64 { return s.term }
